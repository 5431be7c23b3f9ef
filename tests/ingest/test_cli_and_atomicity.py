"""The CLI edge (flags, errors, pass-through options) and all-or-nothing outputs."""

import argparse
import json
import os

import pytest

from kvid.ingest import IngestConfig, VideoItem, cli, run_ingest
from kvid.ingest import runner
from kvid.video.testing import write_index_video


def parse(*argv):
    parser = cli.configure_parser(argparse.ArgumentParser(prog="kvid ingest"))
    args, extra = parser.parse_known_args(list(argv))
    return args, extra


def test_flags_become_a_config_and_beam_options_pass_through():
    args, extra = parse("videos", "-o", "out", "--fps", "5", "--size", "112x128", "--flow", "dis",
                        "--compression", "gzip", "--split-ratios", "train=0.8,test=0.2",
                        "--workers", "2", "--shard-mb", "64", "--runner", "DirectRunner", "--direct_num_workers=4")
    config = cli.config_from_args(args)
    assert config == IngestConfig(fps=5, size=(112, 128), flow="dis", compression="GZIP",
                                  split_ratios={"train": 0.8, "test": 0.2}, workers=2,
                                  shard_mb=64)
    assert extra == ["--runner", "DirectRunner", "--direct_num_workers=4"]
    assert cli.config_from_args(parse("v", "-o", "o", "--size", "96")[0]).size == (96, 96)
    assert cli.config_from_args(parse("v", "-o", "o", "--split-ratios", "0.5,0.25,0.25")[0]) \
        .ratios == {"train": 0.5, "val": 0.25, "test": 0.25}


@pytest.mark.parametrize("argv,message", [
    (["--size", "abc"], "HxW"),
    (["--split-ratios", "train=x"], "split ratios"),
    (["--flow", "magic"], "invalid choice"),
    (["--short-side", "64", "--size", "64"], "not allowed with"),
])
def test_bad_flags_exit_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        parse(str(tmp_path), "-o", str(tmp_path / "out"), *argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--fps", "-1"], "--fps: must be a finite number > 0"),
    (["--fps", "inf"], "--fps: must be a finite number > 0"),
    (["--group-pattern", "(["], "--group-pattern: pattern is not a valid regular expression"),
    (["--clip-frames", "0"], "--clip-frames: must be an integer >= 1"),
    (["--format", "ucf101"], "--split-files"),
    (["--format", "kinetics"], "--videos"),
    (["stray"], "unexpected argument"),
])
def test_bad_values_are_parser_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli.main([str(tmp_path), "-o", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err


def test_cli_ingests_a_folder_and_refuses_to_overwrite(tmp_path, capsys):
    for label in ("a", "b"):
        os.makedirs(tmp_path / "v" / label)
        write_index_video(str(tmp_path / "v" / label / f"{label}_actor01.mkv"), 8, fps=25,
                          height=32, width=32)
    argv = [str(tmp_path / "v"), "-o", str(tmp_path / "out"), "--clip-frames", "4",
            "--split-ratios", "train=1"]
    assert cli.main(argv) == 0
    with open(tmp_path / "out" / "dataset.json") as f:
        dataset = json.load(f)
    assert dataset["splits"]["train"]["num_clips"] == 4 and dataset["labels"] == ["a", "b"]
    assert "train: 2 videos, 4 clips" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite", "--clip-frames", "8"]) == 0
    with open(tmp_path / "out" / "dataset.json") as f:
        assert json.load(f)["splits"]["train"]["num_clips"] == 2


@pytest.fixture
def one_video(tmp_path):
    path = str(tmp_path / "v.mkv")
    write_index_video(path, 8, fps=25, height=32, width=32)
    return [VideoItem(path, "a", "g", split="train")]


def test_failed_run_leaves_nothing_that_looks_complete(tmp_path, one_video, monkeypatch):
    out = tmp_path / "out"

    def boom(video):
        raise RuntimeError("worker died")

    monkeypatch.setattr(runner, "_count_keys", boom)  # fails inside the pipeline
    with pytest.raises(Exception, match="worker died"):
        run_ingest(one_video, str(out), IngestConfig(clip_frames=4))
    assert os.listdir(out) == []  # no shard, no dataset.json, staging cleaned up


def test_overwrite_replaces_only_the_dataset(tmp_path, one_video):
    out = tmp_path / "out"
    run_ingest(one_video, str(out), IngestConfig(clip_frames=4, split_ratios={"train": 1}))
    (out / "notes.txt").write_text("mine")
    os.makedirs(out / ".incomplete-stale" / "train")  # a killed run's leftovers: its lock
    os.close(runner._lock_stage(str(out / ".incomplete-stale")))  # file, no longer held
    items = [VideoItem(one_video[0].path, "a", "g", split="test")]
    dataset = run_ingest(items, str(out), IngestConfig(clip_frames=2), overwrite=True)
    assert sorted(os.listdir(out)) == ["dataset.json", "dead_letters.jsonl", "notes.txt", "test"]
    assert dataset["shards"] == {"test": ["test/clips-00000-of-00001.tfrecord"]}
    assert dataset["splits"]["test"]["num_clips"] == 4


def test_only_staging_leftovers_do_not_block_a_run(tmp_path, one_video):
    out = tmp_path / "out"
    os.makedirs(out / ".incomplete-0123")
    run_ingest(one_video, str(out), IngestConfig(clip_frames=4))
    assert "dataset.json" in os.listdir(out)


def test_default_shards_are_capped_by_size(tmp_path, one_video):
    """num_shards=0: workers write their own files, a new one once ``shard_mb`` is reached."""
    import tensorflow as tf

    cap = 4_000  # bytes: about two records of this video
    dataset = run_ingest(one_video * 3, str(tmp_path / "o"), IngestConfig(
        clip_frames=4, split_ratios={"train": 1}, shard_mb=cap / 2 ** 20))
    paths = dataset["shards"]["train"]
    n = len(paths)
    assert n >= 3 and paths == [f"train/clips-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
    sizes = [os.path.getsize(tmp_path / "o" / p) for p in paths]
    records = [[r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "o" / p))]
               for p in paths]
    largest = max(len(r) for rs in records for r in rs) + 16  # + TFRecord framing
    assert all(size < cap + largest for size in sizes)
    assert sum(map(len, records)) == dataset["splits"]["train"]["num_clips"]


def test_num_shards(tmp_path, one_video):
    dataset = run_ingest(one_video * 3, str(tmp_path / "o"), IngestConfig(clip_frames=4,
                                                                          num_shards=2))
    assert dataset["shards"]["train"] == ["train/clips-00000-of-00002.tfrecord",
                                          "train/clips-00001-of-00002.tfrecord"]
