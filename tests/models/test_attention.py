"""Attention models: attention maps come out, sum to one, and the penalty reaches fit."""

import keras
import numpy as np
import pytest

from kvid.models import build_model
from kvid.models.attention import attention_model

TINY_LRCN = {"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0}


def test_lrcn_soft_attention_maps(make_inputs):
    model = build_model("lrcn_soft_attention", (3, 32, 32, 3), 4, **TINY_LRCN)
    logits, maps = attention_model(model)(make_inputs((3, 32, 32, 3)))
    assert logits.shape == (2, 4) and maps.shape == (2, 3, 8, 8)
    np.testing.assert_allclose(np.sum(maps, axis=(2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(logits, model(make_inputs((3, 32, 32, 3))), rtol=1e-5)


def test_lrcn_soft_attention_per_step_and_penalty(make_inputs):
    model = build_model("lrcn_soft_attention", (3, 32, 32, 3), 4, per_step=True,
                        attention_penalty=1.0, **TINY_LRCN)
    x = make_inputs((3, 32, 32, 3))
    assert model(x).shape == (2, 3, 4)
    assert len(model.losses) == 1
    # T=3 steps over 64 locations: coverage 3/64 each, penalty = 64 * (1 - 3/64)^2
    np.testing.assert_allclose(float(model.losses[0]), 64 * (1 - 3 / 64) ** 2, rtol=1e-4)
    y = np.zeros((2, 3))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    cross_entropy = float(loss_fn(y, model(x, training=True)))
    model.compile("sgd", loss_fn)
    loss = model.train_on_batch(x, y)  # fit minimizes cross-entropy + penalty
    assert loss == pytest.approx(cross_entropy + 64 * (1 - 3 / 64) ** 2, rel=1e-4)


def test_lrcn_soft_attention_needs_spatial_backbone():
    pooled = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(ValueError, match="spatial feature map"):
        build_model("lrcn_soft_attention", (3, 32, 32, 3), 4, backbone=pooled)


def test_conv3d_attention_weights_over_time(make_inputs):
    model = build_model("conv3d_attention", (5, 16, 16, 3), 2, depth=10, widths=(4, 4, 8, 8))
    logits, weights = attention_model(model)(make_inputs((5, 16, 16, 3)))
    assert weights.shape == (2, 5)  # no temporal downsampling in the trunk
    np.testing.assert_allclose(np.sum(weights, axis=1), 1.0, rtol=1e-5)


def test_attention_model_rejects_other_models():
    with pytest.raises(ValueError, match="no attention layer"):
        attention_model(build_model("single_frame", (2, 16, 16, 3), 2, small_cnn_widths=(4,)))
