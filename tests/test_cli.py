"""The kvid console script: verbs listed, one-line errors, real work through the CLI."""

import json
import os
import subprocess
import sys

import pytest

KVID = os.path.join(os.path.dirname(sys.executable), "kvid")


def _kvid(*args, cwd=None):
    return subprocess.run([KVID, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_lists_every_verb():
    out = _kvid("--help")
    assert out.returncode == 0
    for verb in ("synth", "ingest", "train", "evaluate", "export", "serve", "predict", "demo",
                 "pipeline", "models", "native"):
        assert verb in out.stdout
    for verb in ("synth", "ingest", "train", "evaluate", "export", "serve", "predict", "demo"):
        sub = _kvid(verb, "--help")
        assert sub.returncode == 0 and "usage: kvid " + verb in sub.stdout, verb


@pytest.mark.parametrize("args,needle", [
    (["trian"], "invalid choice"),
    (["train", "--data", "x"], "required: --output"),
    (["synth", "out", "--classes", "many"], "invalid int value"),
    (["train", "--data", "/nonexistent", "--output", "/tmp/x", "--optimizer", "rmsprop"],
     "invalid choice"),
    (["train", "--data", "/nonexistent", "--output", "/tmp/x", "--crop", "corner"],
     "invalid choice"),
])
def test_bad_arguments_give_one_line(args, needle):
    out = _kvid(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_user_errors_give_one_line_not_a_traceback(tmp_path):
    out = _kvid("train", "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "run"))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("kvid train: error:")
    bad = _kvid("synth", str(tmp_path / "v"), "--classes", "12")
    assert bad.returncode == 1 and "num_classes" in bad.stderr and "Traceback" not in bad.stderr


def test_native_builds_the_kernel_or_says_why_in_one_line(tmp_path):
    plain = {k: v for k, v in os.environ.items() if k != "KVID_NATIVE"}

    def native(**env):
        return subprocess.run([KVID, "native"], capture_output=True, text=True,
                              env={**plain, **env}, timeout=600)

    out = native()
    if out.returncode == 0:  # built (or found in the cache): says where
        path = out.stdout.strip().split(": ", 1)[1]
        assert os.path.isfile(path) and path.endswith(".so")
    else:
        assert out.returncode == 1 and "Traceback" not in out.stderr
    off = native(KVID_NATIVE="0")
    assert off.returncode == 0 and "off (KVID_NATIVE=0)" in off.stdout
    bad = native(CXX="false", KVID_CACHE_DIR=str(tmp_path))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "kvid native: error: false failed with exit code 1" in bad.stderr
    assert list(tmp_path.iterdir()) == []


def test_synth_then_ingest_from_the_cli(tmp_path):
    videos, data = str(tmp_path / "videos"), str(tmp_path / "data")
    out = _kvid("synth", videos, "--classes", "2", "--videos-per-class", "3", "--frames", "8",
                "--size", "48")
    assert out.returncode == 0, out.stderr
    assert "wrote 6 videos" in out.stdout
    out = _kvid("ingest", videos, "-o", data, "--clip-frames", "4", "--size", "32x32")
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.load(open(os.path.join(data, "dataset.json")))
    assert info["labels"] == ["move_left", "move_right"]
    assert sum(s["num_videos"] for s in info["splits"].values()) == 6


def test_train_crop_choices_are_the_pipelines():
    """The CLI lists crops without importing TensorFlow; they must stay kvid.data's."""
    import argparse

    from kvid.cli import _add_train_args
    from kvid.data.augment import CROPS

    parser = argparse.ArgumentParser()
    _add_train_args(parser)
    crop = next(a for a in parser._actions if a.dest == "crop")
    assert tuple(crop.choices) == CROPS and crop.default == CROPS[0]
