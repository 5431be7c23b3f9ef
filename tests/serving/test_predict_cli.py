"""``kvid predict`` against the running server: top-k, sliding-window timeline and strip."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from serving_fixtures import MODEL

from kvid.serving.client import configure_predict_parser, predict_command
from kvid.serving.testing import TOY_LABELS
from kvid.video.encode import write_video

FPS = 10


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """3 s of 64x48 frames at 10 fps."""
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    write_video(path, (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(30)),
                fps=FPS)
    return path


def run(argv):
    return predict_command(configure_predict_parser(argparse.ArgumentParser()).parse_args(argv))


def test_prints_top_k_over_rest_and_grpc_alike(server, video, capsys):
    assert run([video, "--server", server.rest_url, "--model", MODEL, "--top-k", "2"]) == 0
    rest_out = capsys.readouterr().out.splitlines()
    assert run([video, "--grpc", server.grpc_target, "--model", MODEL, "--top-k", "2"]) == 0
    grpc_out = capsys.readouterr().out.splitlines()
    assert rest_out == grpc_out and len(rest_out) == 2
    scores = [float(line.split()[0]) for line in rest_out]
    assert scores == sorted(scores, reverse=True)
    assert all(line.split()[1] in TOY_LABELS for line in rest_out)


def test_sliding_window_writes_timeline_and_strip(server, video, tmp_path, capsys):
    common = [video, "--server", server.rest_url, "--model", MODEL, "--sliding-window", "1"]
    out_json, out_csv, png = tmp_path / "t.json", tmp_path / "t.csv", tmp_path / "s.png"
    assert run(common + ["--timeline", str(out_json), "--strip", str(png)]) == 0
    assert run(common + ["--timeline", str(out_csv), "--top-k", "2"]) == 0
    windows = json.loads(out_json.read_text())["windows"]
    assert [round(w["start"], 3) for w in windows] == [0.0, 1.0, 2.0]
    assert all(w["end"] - w["start"] == pytest.approx(1.0) for w in windows)
    assert all(lab in TOY_LABELS for w in windows for lab in w["labels"])
    assert all(len(w["labels"]) == 3 for w in windows)  # --top-k 5, but the model names 3
    rows = list(csv.reader(out_csv.open()))
    assert rows[0] == ["start", "end", "label1", "score1", "label2", "score2"]
    assert len(rows) == 4 and rows[1][2] == windows[0]["labels"][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(capsys.readouterr().out.splitlines()) == 6


def test_unknown_model_is_a_clear_error(server, video, capsys):
    assert run([video, "--server", server.rest_url, "--model", "nope"]) == 1
    assert "Servable not found for request: Latest(nope)" in capsys.readouterr().err
