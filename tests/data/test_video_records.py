"""Video-level records (kvid ingest --layout video): sampling happens at read time over the
whole video. The fixture videos show their frame number as 8 black/white bars, so every
sampled frame says which frame of the video it is."""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.data import make_dataset, make_eval_views, resolve_files
from kvid.ingest import IngestConfig, run_ingest
from kvid.video.encode import write_video

SIZE = 64
LENGTHS = {"long": 60, "short": 24}  # frames at the stored rate; 24 = max_frames
CONFIG = IngestConfig(layout="video", max_frames=24, chunk_overlap=8, size=(SIZE, SIZE),
                      split_ratios=(("train", 1.0),))


def _frame(i: int) -> np.ndarray:
    bits = [(i >> (7 - b)) & 1 for b in range(8)]
    row = np.repeat(np.array(bits, np.uint8) * 255, SIZE // 8)
    return np.repeat(np.tile(row[None, :, None], (SIZE, 1, 1)), 3, axis=2)


def frame_numbers(frames) -> np.ndarray:
    """[..., H, W, C] pixels in [0, 1] or [0, 255] -> [...] frame numbers read from the bars."""
    x = np.asarray(frames, np.float32)
    x = x / 255.0 if x.max() > 1.5 else x
    centres = x[..., SIZE // 2, SIZE // 16::SIZE // 8, 0]  # one pixel in the middle of each bar
    bits = (centres > 0.5).astype(np.int64)
    return (bits * (1 << np.arange(7, -1, -1))).sum(-1)


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("numbered")
    videos = root / "videos"
    for label, n in LENGTHS.items():
        os.makedirs(videos / label)
        write_video(str(videos / label / f"{label}.mp4"), [_frame(i) for i in range(n)],
                    fps=25.0, codec="libx264rgb", options={"crf": "0"})
    info = run_ingest(str(videos), str(root / "data"), CONFIG)
    return {"data": str(root / "data"), "info": info}


def _records(data):
    files, compression = resolve_files(data, "train")
    return [schema.from_example(r.numpy())
            for r in tf.data.TFRecordDataset(files, compression_type=compression)]


def test_long_videos_are_stored_in_overlapping_chunks(video_data):
    info = video_data["info"]
    assert info["layout"] == "video" and info["clip_frames"] is None
    by_video = {}
    for clip in _records(video_data["data"]):
        by_video.setdefault(clip.video_id, []).append(clip)
    long, short = (sorted(by_video[v], key=lambda c: c.clip_index)
                   for v in sorted(by_video, key=lambda v: "short" in v))
    assert [(c.clip_start_frame, len(c.frames)) for c in long] == \
        [(0, 24), (16, 24), (32, 24), (48, 12)]
    assert {(c.video_frames, c.chunk_stride) for c in long} == {(60, 16)}
    assert [(c.clip_start_frame, len(c.frames), c.video_frames, c.chunk_stride)
            for c in short] == [(0, 24, 24, 0)]
    assert info["splits"]["train"] == {**info["splits"]["train"], "num_videos": 2,
                                       "num_clips": 5}


def _numbers(ds):
    out = []
    for x, y in ds:
        out.append((frame_numbers(x.numpy()), y.numpy()))
    return out


def test_training_clips_start_everywhere_in_the_video(video_data):
    """A fresh clip each epoch from anywhere in each video: every start 0..L-4 of the long
    video is drawn (its chunks own disjoint start ranges), and every clip is 4 consecutive
    frames, never one that runs past a chunk's end."""
    ds = make_dataset(video_data["data"], "train", clip_frames=4, image_size=SIZE,
                      batch_size=1, training=True, augment=False, seed=0, repeat=True,
                      shuffle_buffer=0)
    labels = video_data["info"]["labels"]
    starts = {name: [] for name in labels}
    for x, y in ds.take(5 * 250):
        numbers = frame_numbers(x.numpy()[0])
        np.testing.assert_array_equal(numbers, numbers[0] + np.arange(4))
        starts[labels[int(y[0])]].append(int(numbers[0]))
    assert set(starts["long"]) == set(range(LENGTHS["long"] - 3))
    assert set(starts["short"]) == set(range(LENGTHS["short"] - 3))
    # a chunked video is drawn in proportion to its length (4 chunks vs 1 record)
    assert len(starts["long"]) == 4 * len(starts["short"])


def test_tsn_segments_cover_all_parts_of_the_video(video_data):
    ds = make_dataset(video_data["data"], "train", clip_frames=3, image_size=SIZE,
                      sampling="segments", num_segments=3, batch_size=1, training=True,
                      augment=False, seed=1, repeat=True, shuffle_buffer=0)
    labels = video_data["info"]["labels"]
    seen = []
    for x, y in ds.take(5 * 100):  # 100 draws of the short video: each position ~12 times
        if labels[int(y[0])] == "short":
            seen.append(frame_numbers(x.numpy()[0]))
    seen = np.array(seen)
    for k in range(3):  # segment k of the 24 frames is frames 8k..8k+7, all of them drawn
        assert set(seen[:, k]) == set(range(8 * k, 8 * k + 8))


@pytest.mark.parametrize("num_crops", [1, 3])
def test_eval_views_are_evenly_spaced_over_the_whole_video(video_data, num_crops):
    views = make_eval_views(video_data["data"], "train", clip_frames=4, image_size=SIZE,
                            num_clips=5, num_crops=num_crops, batch_size=7)
    got = {}
    for x, _, video in views:
        for clip, vid in zip(frame_numbers(x.numpy()), video.numpy()):
            got.setdefault(vid.decode(), []).append(clip)
    assert len(got) == 2
    for vid, clips in got.items():
        length = LENGTHS["long"] if "long" in vid else LENGTHS["short"]
        expected = [int(np.floor((length - 4) * i / 4 + 1e-4)) for i in range(5)]
        starts = sorted(int(c[0]) for c in clips)
        assert starts == sorted(expected * num_crops), vid  # N views per video, 5 distinct
        for c in clips:
            np.testing.assert_array_equal(c, c[0] + np.arange(4))
    # dataset.json's video count gives the exact number of batches (N x M per video)
    assert views.cardinality().numpy() == math.ceil(2 * 5 * num_crops / 7)


def test_training_needs_a_clip_length_and_a_clip_that_fits_the_overlap(video_data, tmp_path):
    from kvid.train.trainer import TrainConfig, resolve_input

    info = video_data["info"]
    with pytest.raises(ValueError, match="give --clip-frames"):
        resolve_input(TrainConfig(data_dir="d", output_dir="o", model="c3d"), info)
    with pytest.raises(ValueError, match="--chunk-overlap 15"):
        resolve_input(TrainConfig(data_dir="d", output_dir="o", model="c3d",
                                  clip_frames=16), info)
    frames, size, _ = resolve_input(TrainConfig(data_dir="d", output_dir="o", model="c3d",
                                                clip_frames=9), info)
    assert (frames, size) == (9, (SIZE, SIZE))
