"""Fine-tuning from a kvid .keras file: weights transferred by layer name, a frozen backbone,
and a backbone trained at a fraction of the head's learning rate (kvid.train.optim)."""

import json
import os

import keras
import numpy as np
import pytest

from kvid.cli import main
from kvid.train.optim import BACKBONE_LR, head_variable_paths
from kvid.train.trainer import TrainConfig

STOCK = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
         "adamw": keras.optimizers.AdamW}


def _two_layer_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5, name="backbone")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


@pytest.mark.parametrize("name,kwargs", [
    ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("adam", {}),
    ("adamw", dict(weight_decay=0.05)),
])
def test_backbone_steps_equal_a_stock_optimizer_at_the_scaled_rate(name, kwargs):
    """Three steps of the scaled optimizer on the whole model = the stock optimizer at lr on
    the head and, separately, at lr x 0.1 on the backbone (moments, decay and all)."""
    rng = np.random.default_rng(0)
    model = _two_layer_model()
    head = head_variable_paths(model, ("logits",))
    assert head == ["logits/kernel", "logits/bias"]
    start = [v.numpy() for v in model.trainable_variables]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
             for _ in range(3)]

    def run(optimizer, indices):
        for v, value in zip(model.trainable_variables, start):
            v.assign(value)
        variables = [model.trainable_variables[i] for i in indices]
        for step in grads:
            optimizer.apply([step[i] for i in indices], variables)
        return [v.numpy() for v in variables]

    scaled = run(BACKBONE_LR[name](0.01, backbone_lr_scale=0.1, head_variables=head, **kwargs),
                 range(4))
    backbone = run(STOCK[name](0.001, **kwargs), (0, 1))
    head_only = run(STOCK[name](0.01, **kwargs), (2, 3))
    for got, want in zip(scaled, backbone + head_only):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(scaled[0], start[0])  # the backbone did move


def test_scaled_optimizer_round_trips_with_the_model(tmp_path):
    model = _two_layer_model()
    model.compile(BACKBONE_LR["adam"](0.01, backbone_lr_scale=0.25,
                                      head_variables=head_variable_paths(model, ("logits",))),
                  loss="mse")
    model.fit(np.ones((4, 4)), np.zeros((4, 3)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer).__name__ == "BackboneLRAdam"
    assert loaded.optimizer.backbone_lr_scale == 0.25
    assert loaded.optimizer.head_variables == ("logits/kernel", "logits/bias")
    with pytest.raises(ValueError, match="none of the head layers"):
        head_variable_paths(model, ("fc",))


def test_backbone_lr_scale_needs_pretrained_and_excludes_freezing():
    with pytest.raises(ValueError, match="needs pretrained"):
        TrainConfig(data_dir="d", output_dir="o", backbone_lr_scale=0.1)
    with pytest.raises(ValueError, match="backbone_lr_scale"):
        TrainConfig(data_dir="d", output_dir="o", backbone_lr_scale=0.0)


def test_fine_tune_from_a_kvid_run(trained_run, tmp_path, capsys):
    """--pretrained RUN/last.keras: frozen, the backbone comes out as the source's; with
    --backbone-lr-scale the run's optimizer carries the scale and the run loads for evaluation."""
    from kvid.train.runs import load_run

    source = keras.models.load_model(os.path.join(trained_run["dir"], "last.keras"),
                                     compile=False)
    with open(os.path.join(trained_run["dir"], "config.json")) as f:
        model_args = json.dumps(json.load(f)["model_kwargs"])
    base = ["train", "--data", trained_run["data"], "--model", "cnn_gru", "--model-args", model_args,
            "--pretrained", os.path.join(trained_run["dir"], "last.keras"),
            "--epochs", "1", "--batch-size", "4", "--lr", "0.01"]
    frozen = str(tmp_path / "frozen")
    assert main(base + ["--output", frozen, "--freeze-backbone"]) == 0
    tuned = keras.models.load_model(os.path.join(frozen, "last.keras"), compile=False)
    moved = []
    for layer in source.layers:
        for got, want in zip(tuned.get_layer(layer.name).get_weights(), layer.get_weights()):
            if layer.name == "logits":
                moved.append(not np.allclose(got, want))
            else:
                np.testing.assert_array_equal(got, want)
    assert moved and all(moved)  # only the head trained

    slow = str(tmp_path / "slow")
    assert main(base + ["--output", slow, "--backbone-lr-scale", "0.1"]) == 0
    capsys.readouterr()
    run = load_run(slow, weights="last")
    assert type(run.model.optimizer).__name__ == "BackboneLRAdam"
    assert run.model.optimizer.backbone_lr_scale == pytest.approx(0.1)
    assert run.config.backbone_lr_scale == pytest.approx(0.1)
    assert set(run.model.optimizer.head_variables) == {
        v.path for v in run.model.get_layer("logits").trainable_variables}

    # a .keras file of another architecture is refused with the layers it lacks, before training
    assert main(["train", "--data", trained_run["data"], "--model", "early_fusion", "--output",
                 str(tmp_path / "bad"), "--pretrained",
                 os.path.join(trained_run["dir"], "last.keras")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit" in err[0] and "layers missing" in err[0]
    assert not os.path.exists(tmp_path / "bad")
