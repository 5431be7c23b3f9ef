"""The README's CLI path for C3D, CNN+LSTM and the soft-attention LRCN on synthetic data:
``kvid train --preset tiny`` -> ``kvid evaluate`` (report, confusion matrix, curves,
attention maps) -> ``kvid export`` (three signatures that agree with the Keras model)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import cli, schema
from kvid.data.preprocess import decode_frames, normalize
from kvid.models.registry import build_model, get_model_info
from kvid.train.runs import first_clip, load_run

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == PNG


# Each model with the training crop of its paper: C3D a fixed-size crop at a random place,
# TSN-style multi-scale for the CNN+LSTM, Inception-style random resized (the default).
@pytest.mark.parametrize("model,crop", [("c3d", "random"), ("cnn_lstm", "multiscale"),
                                        ("lrcn_soft_attention", "random_resized")])
def test_train_evaluate_export_from_the_cli(model, crop, tiny_data, tmp_path, capsys):
    run, evaluation, export = (str(tmp_path / d) for d in ("run", "eval", "export/kvid/1"))
    assert cli.main(["train", "--data", tiny_data["data"], "--model", model, "--preset", "tiny",
                     "--epochs", "1", "--batch-size", "4", "--lr", "0.003", "--no-flip",
                     "--crop", crop, "--output", run]) == 0
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["final"]
    assert np.isfinite(final["loss"]) and 0 <= final["accuracy"] <= 1
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["preset"] == "tiny" and config["model"] == model and config["crop"] == crop
    loaded = load_run(run)
    tiny = build_model(model, input_shape=(4, 32, 32, 3), num_classes=3,
                       **get_model_info(model).tiny_kwargs)
    assert loaded.model.count_params() == tiny.count_params()  # the preset was applied

    assert cli.main(["evaluate", run, "--output", evaluation, "--clips", "2"]) == 0
    report = json.load(open(os.path.join(evaluation, "report.json")))
    test = tiny_data["info"]["splits"]["test"]
    assert report["clip"]["count"] == test["num_clips"]
    assert report["video"]["count"] == test["num_videos"]
    assert np.array(report["clip"]["confusion_matrix"]).sum() == test["num_clips"]
    assert 0 <= report["clip"]["top1"] <= 1
    for key in ("confusion_matrix_clip_png", "confusion_matrix_video_png", "training_curves"):
        assert _is_png(report["files"][key]), key
    if model == "lrcn_soft_attention":
        maps = report["files"]["attention_maps"]
        assert len(maps) == 2 and all(_is_png(p) for p in maps)
    else:
        assert "attention_maps" not in report["files"]

    assert cli.main(["export", run, export]) == 0
    clip = first_clip(tiny_data["data"], "test")
    frames = list(clip.frames)
    pixels = decode_frames(tf.constant(frames), loaded.image_size)
    expected = tf.nn.softmax(loaded.model(normalize(pixels, loaded.normalization)[None],
                                          training=False)).numpy()
    signatures = tf.saved_model.load(export).signatures
    outs = [signatures["serving_default"](frames=tf.constant([frames])),
            signatures["serving_examples"](examples=tf.constant([schema.serialize_clip(clip)])),
            signatures["serving_tensor"](frames=pixels[None])]
    for out in outs:
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
