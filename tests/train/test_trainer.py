"""kvid.train: config checks, the files a run writes, and resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kvid.train.trainer import RunPaths, TrainConfig, config_from_dict, train

KVID = os.path.join(os.path.dirname(sys.executable), "kvid")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(data_dir="d", output_dir="o", optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(data_dir="d", output_dir="o", epochs=0)
    with pytest.raises(ValueError, match="crop"):
        TrainConfig(data_dir="d", output_dir="o", crop="corner")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(data_dir="d", output_dir="o", label_smoothing=1.5)
    cfg = config_from_dict({"data_dir": "d", "output_dir": "o", "epochs": 3, "unknown": 1})
    assert cfg.epochs == 3


def test_run_writes_checkpoints_logs_and_curves(trained_run):
    paths = RunPaths(trained_run["dir"])
    for path in (paths.best, paths.last, paths.csv_log, paths.config, paths.curves):
        assert os.path.exists(path), path
    assert os.listdir(paths.tensorboard)
    rows = list(csv.DictReader(open(paths.csv_log)))
    assert [r["epoch"] for r in rows] == ["0"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])
    assert json.load(open(paths.config))["model"] == "cnn_gru"
    result = trained_run["result"]
    assert result.labels == trained_run["info"]["labels"]
    assert result.clip_frames == 4 and result.image_size == (32, 32)
    assert not os.path.exists(paths.backup), "the backup is removed once training finished"


def test_unfinished_run_needs_resume(trained_run, tmp_path):
    out = tmp_path / "run"
    os.makedirs(out / "backup")
    (out / "backup" / "training_metadata.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig(data_dir=trained_run["data"], output_dir=str(out), epochs=1))


def test_killed_training_resumes_where_it_stopped(tiny_data, tmp_path):
    """SIGKILL after the first epoch's checkpoint; --resume continues at epoch 2, not 1."""
    out = tmp_path / "run"
    args = [KVID, "train", "--data", tiny_data["data"], "--output", str(out), "--model",
            "cnn_gru", "--model-args", '{"units": 8, "small_cnn_widths": [8, 16]}',
            "--epochs", "3", "--batch-size", "4", "--lr", "0.01"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.csv"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().strip().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.listdir(out / "backup"), "no checkpoint survived the kill"
    done = len(log.read_text().strip().splitlines()) - 1
    assert done in (1, 2)

    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--resume" in again.stderr  # refuses to restart silently

    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = [r["epoch"] for r in csv.DictReader(open(log))]
    assert epochs == ["0", "1", "2"], epochs  # continued, not restarted
    assert f"Epoch {done + 1}/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout


def test_per_step_loss_trains_and_exports_mean_of_steps(tiny_data, tmp_path):
    """LRCN's per-step loss: labels repeated over T in training; evaluation and the export
    average the step logits, as LRCN does at test time."""
    import numpy as np
    import tensorflow as tf

    from kvid.data.preprocess import decode_frames, normalize
    from kvid.train.evaluate import evaluate_run
    from kvid.train.runs import export_run, first_clip, load_run

    out = str(tmp_path / "run")
    result = train(TrainConfig(data_dir=tiny_data["data"], output_dir=out, model="cnn_lstm",
                               preset="tiny", model_kwargs={"per_step": True}, epochs=1,
                               batch_size=4, verbose=0))
    assert result.model.outputs[0].shape[1:] == (4, 3)  # [B, T, C]
    assert np.isfinite(result.history["loss"][0]) and 0 <= result.history["accuracy"][0] <= 1
    report = evaluate_run(out, split="test", num_clips=1, output_dir=str(tmp_path / "eval"))
    assert report["clip"]["count"] == tiny_data["info"]["splits"]["test"]["num_clips"]

    run = load_run(out)
    export = export_run(out, str(tmp_path / "export"))
    frames = list(first_clip(tiny_data["data"], "test").frames)
    steps = run.model(normalize(decode_frames(tf.constant(frames), run.image_size),
                                run.normalization)[None], training=False)
    expected = tf.nn.softmax(tf.reduce_mean(steps, axis=1)).numpy()
    got = tf.saved_model.load(export).signatures["serving_default"](frames=tf.constant([frames]))
    np.testing.assert_allclose(got["probabilities"].numpy(), expected, atol=1e-5)
    # --clip-aggregation last: the prediction of the step that has seen the whole clip
    last = export_run(out, str(tmp_path / "export_last"), clip_aggregation="last")
    got = tf.saved_model.load(last).signatures["serving_default"](frames=tf.constant([frames]))
    np.testing.assert_allclose(got["probabilities"].numpy(),
                               tf.nn.softmax(steps[:, -1]).numpy(), atol=1e-5)
    assert not np.allclose(tf.nn.softmax(steps[:, -1]).numpy(), expected, atol=1e-4)
    last_report = evaluate_run(out, split="test", num_clips=1, clip_aggregation="last",
                               output_dir=str(tmp_path / "eval_last"))
    assert last_report["clip_aggregation"] == "last" and report["clip_aggregation"] == "mean"
