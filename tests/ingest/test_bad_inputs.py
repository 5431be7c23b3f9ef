"""Bad inputs end in dead letters with their reason, next to good videos of every container.

One pipeline run (module fixture) covers: six containers/codecs that must give clips, eight
kinds of bad input that must not, gzip shards and DIS flow; the tests check its outputs.
"""

import os

import numpy as np
import pytest

from kvid.ingest import IngestConfig, VideoItem, run_ingest
from kvid.ingest import runner
from kvid.schema import from_example
from kvid.video.flow import dequantize_flow
from kvid.video.frames import decode_jpeg
from kvid.video.testing import read_index, write_index_video

CONTAINERS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")
CONFIG = IngestConfig(fps=12.5, clip_frames=3, max_clips=2, short_policy="reject",
                      flow="dis", compression="GZIP", split_ratios={"train": 1.0})


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    items, expected = [], {}

    def add(path, label="ok", reason=None):
        name = os.path.basename(str(path))
        items.append(VideoItem(str(path), label, group=name, video_id=name))
        expected[str(path)] = reason

    for ext in CONTAINERS:  # 20 frames at 25 fps -> 10 at 12.5 fps -> 2 clips of 3
        add(root / f"good{ext}")
        write_index_video(str(root / f"good{ext}"), 20, fps=25, height=32, width=32)
    full = root / "full.mkv"
    write_index_video(str(full), 50, fps=25, height=32, width=32)
    data = full.read_bytes()
    add(_write(root / "truncated.mkv", data[: len(data) // 2]), reason="truncated")
    corrupt = bytearray(data)
    corrupt[len(data) // 3: len(data) // 3 + 200] = np.random.default_rng(0).integers(
        0, 256, 200, dtype=np.uint8).tobytes()
    add(_write(root / "corrupt_midstream.mkv", bytes(corrupt)), reason="decode_error")
    mp4 = root / "full.mp4"
    write_index_video(str(mp4), 20, fps=25, height=32, width=32)
    add(_write(root / "truncated.mp4", mp4.read_bytes()[:3000]), reason="invalid_data")
    add(_write(root / "random.mp4", np.random.default_rng(1).bytes(4000)), reason="invalid_data")
    add(_write(root / "zero.mp4", b""), reason="empty")
    add(_write(root / "text.mp4", b"this is not a video\n" * 20), reason="invalid_data")
    add(root / "missing.mp4", reason="missing_file")
    os.mkdir(root / "directory.mp4")
    add(root / "directory.mp4", reason="unreadable")
    short = root / "short.mp4"
    write_index_video(str(short), 3, fps=25, height=32, width=32)
    add(short, reason="too_short")
    add(_write(root / "unlisted.mp4", (root / "good.mp4").read_bytes()), label="unlisted",
        reason="unknown_label")
    if os.geteuid() != 0:  # root reads anything: the directory above stands in for it
        locked = root / "locked.mp4"
        write_index_video(str(locked), 20, fps=25, height=32, width=32)
        os.chmod(locked, 0)
        add(locked, reason="unreadable")
    out = str(tmp_path_factory.mktemp("out") / "ds")
    dataset = run_ingest(items, out, CONFIG, labels=["ok"])
    return out, dataset, expected


def test_every_input_is_a_clip_source_or_a_dead_letter(bad_run, read_jsonl):
    out, dataset, expected = bad_run
    letters = read_jsonl(os.path.join(out, runner.DEAD_LETTERS_JSONL))
    got = {}
    for d in letters:
        assert set(d) == {"path", "reason", "error", "label"} and d["error"]
        assert d["label"] == ("unlisted" if d["reason"] == "unknown_label" else "ok")
        assert d["path"] not in got  # one dead letter per input
        got[d["path"]] = d["reason"]
    assert got == {p: r for p, r in expected.items() if r is not None}
    good = sum(r is None for r in expected.values())
    assert dataset["counters"]["videos_ok"] == dataset["splits"]["train"]["num_videos"] == good
    assert dataset["counters"]["videos_rejected"] == dataset["dead_letters"] == len(letters)
    assert dataset["num_inputs"] == len(expected) == good + len(letters)
    assert sum(dataset["dead_letter_reasons"].values()) == len(letters)


def test_every_container_gives_the_right_frames_and_flow(bad_run, shard_records):
    out, dataset, _ = bad_run
    assert dataset["shards"]["train"][0].endswith(".tfrecord.gz")
    clips = [from_example(r) for r in shard_records(out, dataset, "train")]
    assert sorted((c.video_id, c.clip_index) for c in clips) == sorted(
        (f"good{ext}", k) for ext in CONTAINERS for k in (0, 1))
    for c in clips:
        # 10 frames at 12.5 fps; max_clips=2 spreads two clips over the video: starts 0 and 7.
        assert [read_index(decode_jpeg(f)) for f in c.frames] == \
            [2 * i for i in range(c.clip_start_frame, c.clip_start_frame + 3)]
        assert c.clip_start_frame in (0, 7) and (c.height, c.width) == (32, 32)
        assert len(c.flow) == 2
        flow = dequantize_flow(decode_jpeg(c.flow[0]))
        assert flow.shape == (32, 32, 2) and np.isfinite(flow).all()
