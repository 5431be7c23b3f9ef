"""Shared layers and checks; mixed precision across model families."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kvid.models import MODELS, build_model
from kvid.models.layers import (
    DepthwiseConv3D,
    FoldTime,
    SamePad3D,
    UnfoldTime,
    check_input_shape,
    same_padding,
)


def test_fold_unfold_roundtrip():
    x = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    folded = FoldTime()(x)
    assert folded.shape == (6, 4)
    np.testing.assert_array_equal(UnfoldTime(3)(folded), x)


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (8, 3, 1, (1, 1)), (8, 7, 2, (2, 3)), (7, 3, 2, (1, 1)), (4, 1, 1, (0, 0))])
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_same_pad3d_with_constant_time_equals_same_conv():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 5, 9, 9, 2)).astype("float32")
    same = keras.layers.Conv3D(3, (3, 5, 5), strides=(2, 2, 2), padding="same")
    valid = keras.layers.Conv3D(3, (3, 5, 5), strides=(2, 2, 2), padding="valid")
    expected = same(x)
    valid.build(x.shape)
    valid.set_weights(same.get_weights())
    padded = SamePad3D((3, 5, 5), (2, 2, 2), time_mode="constant")(x)
    np.testing.assert_allclose(valid(padded), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, kwargs, match", [
    ((4, 32, 32), {}, "4 positive ints"), ((4, 32, 32, 3), {"channels": 2}, "2 channels"),
    ((None, 32, 32, 3), {}, "positive ints"), ((4, 32, 32, None), {"allow_none": True}, "None"),
    ("4x32", {}, "tuple")])
def test_check_input_shape_rejects(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_input_shape(shape, **kwargs)


@pytest.mark.parametrize("name", ["cnn_gru", "i3d", "lrcn_soft_attention", "actionvlad",
                                  "hidden_two_stream", "vivit"])
def test_mixed_precision_logits_are_float32(name, make_inputs):
    """mixed_float16 on GPU; on CPU TF lacks float16 kernels (MaxPool3D), so mixed_bfloat16."""
    info = MODELS[name]
    policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(name, info.tiny_input_shape, 3, **info.tiny_kwargs)
        out = model(make_inputs(info.tiny_input_shape), training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == "float32"
    assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("kernel, strides", [((3, 3, 3), (1, 2, 2)), ((5, 1, 1), (1, 1, 1))])
def test_depthwise_conv3d_equals_grouped_conv3d(kernel, strides):
    x = np.random.default_rng(0).normal(size=(2, 5, 9, 9, 6)).astype("float32")
    depthwise = DepthwiseConv3D(kernel, strides)
    out = depthwise(x)
    grouped = keras.layers.Conv3D(6, kernel, strides=strides, padding="same", groups=6, use_bias=False)
    grouped.build(x.shape)
    grouped.set_weights([np.transpose(depthwise.kernel.numpy(), (0, 1, 2, 4, 3))])
    np.testing.assert_allclose(out, grouped(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="time stride 1"):
        DepthwiseConv3D(3, (2, 1, 1))
