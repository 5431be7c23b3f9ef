"""The kvid console script: verbs listed, one-line errors, real work through the CLI."""

import argparse
import json
import os
import re
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
    (["synth", "out", "--classes", "many"], "expected an integer"),
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
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert _own_lines(out.stderr)[-1].startswith("kvid train: error:")
    bad = _kvid("synth", str(tmp_path / "v"), "--classes", "12")
    assert bad.returncode == 2 and "num_classes" in bad.stderr and "Traceback" not in bad.stderr


# TensorFlow's C++ logging at import (CUDA stubs, CPU features): not kvid's lines.
_TF_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d\d"
                     r"|To enable the following instructions)")


def _own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if not _TF_LOG.match(line)]


def _one_error_line(out, verb: str) -> str:
    """The process failed with exit code 2 and said why in one line of its own."""
    lines = _own_lines(out.stderr)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"kvid {verb}: error:"), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return lines[0]


# The arguments each verb needs to reach its numeric flags (positional ones first).
_REQUIRED = {"synth": ["out"], "ingest": ["videos", "-o", "out"],
             "train": ["--data", "d", "--output", "o"], "evaluate": ["run"],
             "export": ["run", "out"], "serve": [], "predict": ["video.mp4"], "demo": []}


def _numeric_flags(verb: str):
    """(flag, type) of every option of ``verb`` whose value is a number."""
    from kvid.cli import build_parser

    parser = build_parser(verb)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in sub.choices[verb]._actions:
        if action.option_strings and getattr(action.type, "__name__", "") in ("int", "float"):
            yield action.option_strings[-1], action.type, action.choices


def test_every_numeric_flag_refuses_0_negative_inf_and_nan_in_one_line(capsys):
    """Walks every verb's numeric flags: each value its type refuses ends in one line and
    exit code 2 at parse time, naming the flag; inf and nan are refused everywhere."""
    from kvid.cli import main
    from kvid.cliargs import number_type

    checked = 0
    for verb, required in _REQUIRED.items():
        flags = list(_numeric_flags(verb))
        assert flags, verb
        for flag, kind, choices in flags:
            assert choices or kind.__module__ == number_type.__module__, (
                f"kvid {verb} {flag} takes an unchecked {kind.__name__}")
            for value in ("0", "-1", "inf", "nan"):
                try:
                    if kind(value) in (choices or [kind(value)]):
                        continue  # a valid value of this flag (a seed of 0, a port of 0...)
                except (argparse.ArgumentTypeError, ValueError):
                    pass
                with pytest.raises(SystemExit) as e:
                    main([verb, *required, f"{flag}={value}"])
                err = capsys.readouterr().err.strip().splitlines()
                assert e.value.code == 2, (verb, flag, value)
                assert len(err) == 1 and f"argument {flag}" in err[0], (verb, flag, value, err)
                assert value in err[0]
                checked += 1
            for value in ("inf", "nan"):
                with pytest.raises((argparse.ArgumentTypeError, ValueError)):
                    kind(value)
    assert checked >= 120  # every verb walked: ~45 numeric flags


@pytest.mark.parametrize("args,needle", [
    (["ingest", "v", "-o", "o", "--group-pattern", "(["], "not a valid regular expression"),
    (["ingest", "v", "-o", "o", "--fps", "inf"], "argument --fps"),
    (["ingest", "v", "-o", "o", "--split-ratios", "train=inf,test=1"], "split ratios"),
    (["train", "--data", "d", "--output", "o", "--model-args", "[1]"], "JSON object"),
    (["train", "--data", "d", "--output", "o", "--model-args", "{nope"], "not valid JSON"),
    (["predict", "v.mp4", "--fps", "inf"], "argument --fps"),
    (["predict", "v.mp4", "--server", "not-a-url"], "expected a URL"),
    (["predict", "v.mp4", "--server", "http://127.0.0.1:99999"], "expected a URL"),
    (["predict", "v.mp4", "--grpc", "localhost"], "HOST:PORT"),
    (["predict", "--camera", "7"], "no camera 7: /dev/video7 does not exist"),
    (["predict", "--camera", "nosuchformat:x"], "no input format 'nosuchformat'"),
    (["predict", "v.mp4", "--camera", "lavfi:testsrc"], "give a video file or --camera"),
    (["predict", "v.mp4", "--duration", "2"], "--duration applies to --camera"),
    (["serve", "--rest_api_port=70000"], "argument --rest_api_port"),
    (["serve", "--port=-1"], "argument --port"),
    (["serve", "--max_body_bytes=-1"], "argument --max_body_bytes"),
    (["serve", "--host=999.1.1.1", "--model_base_path=."], "not an address"),
    (["serve", "--model_base_path=/nonexistent/kvid"], "Could not find base path"),
    (["serve"], "Give --model_base_path"),
    (["serve", "--model_base_path=.", "--stream_max_fps=0"], "argument --stream_max_fps"),
    (["export", "r", "o", "--tflite", "int8", "--top-k", "3"], "--top-k applies to a Saved"),
    (["export", "r", "o", "--tflite", "float32", "--model-name", "m"], "--model-name"),
])
def test_issue_17_arguments_get_one_line_and_exit_2(args, needle):
    """The console script itself (no hang: inf frame rates are refused before decoding)."""
    out = subprocess.run([KVID, *args], capture_output=True, text=True, timeout=120)
    assert needle in _one_error_line(out, args[0])


def test_serve_refuses_base_paths_that_can_never_load(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_error_line(_kvid("serve", f"--model_base_path={afile}"), "serve")
    assert "is not a folder" in line
    line = _one_error_line(_kvid("serve", f"--model_base_path={empty}",
                                 "--file_system_poll_wait_seconds=0"), "serve")
    assert "nothing can load" in line


def test_serve_waits_for_versions_saying_so_and_a_port_in_use_is_one_line(tmp_path):
    """An empty base path that is polled: one line saying so, then the server runs; a REST
    or gRPC port in use: one line and exit code 2, before any model loads."""
    import signal
    import socket

    empty = tmp_path / "kvid"
    empty.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = _kvid("serve", f"--model_base_path={empty}", f"--rest_api_port={port}",
                    "--port=0")
        assert f"127.0.0.1:{port} for REST" in _one_error_line(out, "serve")
        out = _kvid("serve", f"--model_base_path={empty}", "--rest_api_port=0",
                    f"--port={port}")
        assert f"127.0.0.1:{port} for gRPC" in _one_error_line(out, "serve")
    proc = subprocess.Popen([KVID, "serve", f"--model_base_path={empty}", "--rest_api_port=0",
                             "--port=0", "--file_system_poll_wait_seconds=5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # the server prints its addresses once it serves
            if line.startswith("gRPC"):
                break
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    waiting = [line for line in err.splitlines() if "No versions of servable" in line]
    assert len(waiting) == 1 and "looking again every 5 s" in waiting[0]
    assert "Traceback" not in err


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
    assert tuple(crop.choices) == CROPS
    # left out, it is the recipe's (--preset paper) or TrainConfig's default, the first crop
    from kvid.train.trainer import TrainConfig

    assert crop.default is None and TrainConfig.crop == CROPS[0]
