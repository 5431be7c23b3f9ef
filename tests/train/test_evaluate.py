"""Evaluation report: metrics computed right, files written, clip and video level."""

import json
import os

import numpy as np
import pytest

from kvid.train.evaluate import classification_report, evaluate_run


def test_classification_report_values():
    labels = ["a", "b", "c"]
    y = [0, 0, 1, 2, 2, 2]
    probs = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .2, .7], [.5, .1, .4],
                      [.1, .1, .8]])
    r = classification_report(y, probs, labels)
    assert r["top1"] == pytest.approx(4 / 6)
    assert r["top3"] == 1.0
    assert r["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": pytest.approx(2 / 3)}
    assert r["mean_class_accuracy"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError, match="probs"):
        classification_report([0], np.ones((1, 2)), labels)


def test_evaluate_run_writes_report_and_pngs(trained_run, tmp_path):
    report = evaluate_run(trained_run["dir"], split="test", num_clips=2, num_crops=3,
                          output_dir=str(tmp_path))
    test_clips = trained_run["info"]["splits"]["test"]["num_clips"]
    test_videos = trained_run["info"]["splits"]["test"]["num_videos"]
    assert report["clip"]["count"] == test_clips
    assert report["video"]["count"] == test_videos
    assert report["video"]["num_crops"] == 3
    # the cost-vs-views table: 1x1, Nx1, NxM, GFLOPs per video growing with the views
    rows = report["views"]["rows"]
    assert [(r["clips"], r["crops"], r["views"]) for r in rows] == [(1, 1, 1), (2, 1, 2),
                                                                     (2, 3, 6)]
    per_clip = report["views"]["gflops_per_clip"]
    assert per_clip > 0 and [r["gflops_per_video"] for r in rows] == \
        pytest.approx([per_clip, 2 * per_clip, 6 * per_clip])
    assert all(r["videos"] == test_videos and r["clips_per_s"] > 0 for r in rows)
    assert rows[-1]["top1"] == report["video"]["top1"]
    cm = np.array(report["clip"]["confusion_matrix"])
    assert cm.sum() == test_clips and cm.shape == (3, 3)
    for key in ("report", "confusion_matrix_clip_png", "confusion_matrix_video_png",
                "confusion_matrix_clip_json", "training_curves", "view_costs_png"):
        assert os.path.exists(report["files"][key]), key
    for png in ("confusion_matrix_clip_png", "view_costs_png"):
        with open(report["files"][png], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(report["files"]["report"]))
    assert saved["clip"]["top1"] == report["clip"]["top1"]
