"""`kvid demo` end to end: real videos, Beam, model.fit, SavedModel, REST on loopback; and on
the same data, a temporal model against a single-frame one."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

KVID = os.path.join(os.path.dirname(sys.executable), "kvid")


def test_demo_beats_chance_and_rest_equals_in_process(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([KVID, "demo", "--output", str(out)], capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.load(open(out / "summary.json"))
    assert summary["dead_letters"] == 0
    assert sum(summary["clips"].values()) >= summary["videos"] > 0
    # Well above chance on held-out actors: the classes differ only by motion.
    assert summary["test_clip_top1"] >= summary["chance"] + 0.25, summary
    # The served model answers exactly as the Keras model in this process.
    assert summary["rest_matches_in_process"], summary
    assert summary["max_abs_diff_rest_vs_in_process"] < 1e-4
    assert summary["rest_prediction"]["predicted"] in summary["classes"]
    assert "kvid demo summary" in proc.stdout and "test accuracy" in proc.stdout
    assert os.path.exists(os.path.join(summary["paths"]["saved_model"], "saved_model.pb"))

    again = subprocess.run([KVID, "demo", "--output", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr

    # Model zoo claim (issue 6): the temporal model learns the motion task, a single-frame
    # model on the same data and budget does not (no single frame tells the class).
    from kvid.train.evaluate import evaluate_run
    from kvid.train.trainer import TrainConfig, train

    single = str(tmp_path / "single_frame")
    train(TrainConfig(data_dir=summary["paths"]["data"], output_dir=single, model="single_frame",
                      model_kwargs={"small_cnn_widths": (16, 32, 64, 128)}, epochs=15,
                      learning_rate=1e-3, flip=False, verbose=0))
    single_top1 = evaluate_run(single, split="test")["clip"]["top1"]
    print("motion task, test clip top-1:", {"early_fusion": summary["test_clip_top1"],
                                            "single_frame": single_top1})
    assert single_top1 <= summary["chance"] + 0.2
    assert summary["test_clip_top1"] - single_top1 >= 0.25
