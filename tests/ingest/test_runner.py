"""run_ingest end to end on DirectRunner: shards, dataset.json, dead letters, atomicity."""

import dataclasses
import json
import os

import numpy as np
import pytest

from kvid.ingest import IngestConfig, VideoItem, run_ingest
from kvid.dataset import FILE as DATASET_JSON
from kvid.ingest.runner import DEAD_LETTERS_JSONL, pipeline_options
from kvid.schema import from_example
from kvid.video.frames import decode_jpeg, resize_frame
from kvid.video.testing import read_index, write_index_video

CONFIG = IngestConfig(fps=10, clip_frames=4, size=(24, 24), jpeg_quality=90)


@pytest.fixture(scope="module")
def synth_run(synth_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ingest") / "ds")
    dataset = run_ingest(synth_root, out, CONFIG)
    return out, dataset


def test_synth_dataset_layout_and_counts(synth_run):
    out, dataset = synth_run
    with open(os.path.join(out, DATASET_JSON)) as f:
        assert json.load(f) == dataset
    assert dataset["labels"] == ["move_left", "move_right", "move_up"]
    assert list(dataset["splits"]) == ["train", "val", "test"]  # 6 actors fill all three
    # 16 frames at 25 fps = 0.64 s -> 7 frames at 10 fps -> one clip of 4 per video.
    assert dataset["counters"] == {"videos_ok": 18, "videos_rejected": 0, "clips": 18,
                                   "frames": 18 * 7}
    for split, s in dataset["splits"].items():
        assert set(s["videos"]) == set(dataset["labels"])
        assert s["num_videos"] == sum(s["videos"].values()) > 0
        assert s["num_clips"] == sum(s["clips"].values())
        assert dataset["shards"][split] == [f"{split}/clips-00000-of-00001.tfrecord"]
    assert sum(s["num_videos"] for s in dataset["splits"].values()) == 18
    assert (dataset["clip_frames"], dataset["fps"], dataset["image_size"]) == (4, 10, [24, 24])
    assert dataset["compression"] == "" and dataset["dead_letters"] == 0
    assert dataset["params"]["split_ratios"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert {"apache_beam", "tensorflow", "av", "opencv"} <= set(dataset["versions"])
    assert os.path.getsize(os.path.join(out, DEAD_LETTERS_JSONL)) == 0
    assert sorted(os.listdir(out)) == [DATASET_JSON, DEAD_LETTERS_JSONL, "test", "train", "val"]


def test_records_parse_back_and_groups_stay_in_one_split(synth_run, shard_records):
    out, dataset = synth_run
    split_of_group = {}
    for split in dataset["splits"]:
        clips = [from_example(r) for r in shard_records(out, dataset, split)]
        assert len(clips) == dataset["splits"][split]["num_clips"]
        for clip in clips:
            assert split_of_group.setdefault(clip.group, split) == split
            assert clip.label == dataset["labels"].index(clip.label_name)
            assert (len(clip.frames), clip.height, clip.width, clip.fps) == (4, 24, 24, 10.0)
            assert decode_jpeg(clip.frames[0]).shape == (24, 24, 3)
            assert clip.group.startswith("actor") and clip.video_id.startswith(clip.label_name)
    assert len(split_of_group) == 6


def test_rerun_into_non_empty_output_refuses_unless_overwrite(synth_run, synth_root):
    out, dataset = synth_run
    with pytest.raises(FileExistsError, match="overwrite"):
        run_ingest(synth_root, out, CONFIG)
    assert os.listdir(os.path.join(out, "train")) == ["clips-00000-of-00001.tfrecord"]


def test_frames_in_records_are_the_resampled_frames(tmp_path, shard_records):
    """Frame i of the source shows i: at 5 of 25 fps the clips hold frames 0, 5, 10, ..."""
    video = str(tmp_path / "v" / "a" / "idx.mp4")
    os.makedirs(os.path.dirname(video))
    written = write_index_video(video, 40, fps=25, height=48, width=48)
    items = [VideoItem(video, "a", "g1", split="train"),
             VideoItem(video, "a", "g1", split="train", start_sec=0.4, end_sec=1.2,
                       video_id="ranged")]
    out = str(tmp_path / "out")
    dataset = run_ingest(items, out, IngestConfig(fps=5, clip_frames=2, short_side=32))
    clips = sorted((from_example(r) for r in shard_records(out, dataset, "train")),
                   key=lambda c: (c.video_id, c.clip_index))
    got = {(c.video_id, c.clip_start_frame): [read_index(decode_jpeg(f)) for f in c.frames]
           for c in clips}
    assert got == {("idx.mp4", 0): [0, 5], ("idx.mp4", 2): [10, 15], ("idx.mp4", 4): [20, 25],
                   ("idx.mp4", 6): [30, 35], ("ranged", 0): [10, 15], ("ranged", 2): [20, 25]}
    stored = decode_jpeg(clips[0].frames[1]).astype(int)  # within JPEG error of what went in
    expected = resize_frame(written[5], short_side=32).astype(int)
    assert stored.shape == expected.shape == (32, 32, 3)
    assert np.abs(stored - expected).mean() < 6


def test_pipeline_options_default_to_local_runner_with_workers():
    opts = pipeline_options([], workers=2).get_all_options()
    assert opts["runner"] == "FnApiRunner"
    assert (opts["direct_num_workers"], opts["direct_running_mode"]) == (2, "multi_processing")
    opts = pipeline_options(["--runner=DirectRunner", "--direct_num_workers=3"], workers=2)
    assert opts.get_all_options()["direct_num_workers"] == 3
    assert pipeline_options(None).get_all_options()["direct_running_mode"] == "in_memory"


@pytest.mark.slow
def test_two_worker_processes_write_the_same_records(synth_run, synth_root, tmp_path, shard_records):
    """--workers 2: DirectRunner multi-processing; start-up of the worker processes is slow."""
    out1, dataset1 = synth_run
    out2 = str(tmp_path / "w2")
    dataset2 = run_ingest(synth_root, out2, dataclasses.replace(CONFIG, workers=2))
    assert dataset2["counters"] == dataset1["counters"]
    assert dataset2["params"]["workers"] == 2
    for split in dataset1["splits"]:
        assert dataset2["splits"][split] == dataset1["splits"][split]
        def clips(out, dataset):  # records, not bytes: proto map order differs by process
            return sorted((from_example(r) for r in shard_records(out, dataset, split)),
                          key=lambda c: (c.video_id, c.clip_index))
        assert clips(out2, dataset2) == clips(out1, dataset1)
