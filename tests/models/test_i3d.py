"""I3D inflation: a boring video through the inflated net equals the 2D net on its frame."""

import keras
import numpy as np
import pytest

from kvid.models import build_model, inflate_2d_weights
from kvid.models.i3d import build_i3d, build_inception_v1_2d

SMALL = {"width_multiplier": 1 / 16}


def _pooled(model):
    return keras.Model(model.inputs, model.get_layer("head_pool").output)


def _randomize_batchnorm(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


def test_boring_video_gives_2d_features():
    rng = np.random.default_rng(0)
    net_2d = build_inception_v1_2d((32, 32, 3), 5, **SMALL)
    _randomize_batchnorm(net_2d, rng)
    net_3d = build_i3d((6, 32, 32, 3), 5, temporal_padding="symmetric", dropout=0.0, **SMALL)
    assert inflate_2d_weights(net_2d, net_3d) == len(
        [layer for layer in net_3d.layers if layer.weights])
    frame = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    video = np.repeat(frame[:, None], 6, axis=1)
    features_2d = np.asarray(_pooled(net_2d)(frame))
    features_3d = np.asarray(_pooled(net_3d)(video))
    assert np.abs(features_2d).mean() > 1e-3  # not trivially zero
    np.testing.assert_allclose(features_3d, features_2d, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net_3d(video), net_2d(frame), rtol=1e-4, atol=1e-5)


def test_inflated_kernel_is_repeated_and_divided():
    net_2d = build_inception_v1_2d((32, 32, 3), 5, **SMALL)
    net_3d = build_i3d((4, 32, 32, 3), 5, **SMALL)
    inflate_2d_weights(net_2d, net_3d)
    k2 = net_2d.get_layer("conv3d_1a_7x7_conv").kernel.numpy()
    k3 = net_3d.get_layer("conv3d_1a_7x7_conv").kernel.numpy()
    assert k3.shape == (7, *k2.shape)
    np.testing.assert_allclose(k3, np.repeat(k2[None] / 7, 7, axis=0), rtol=1e-6)


def test_inflate_pairs_by_structure_and_rejects_mismatch():
    source = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="a")])
    target = keras.Sequential([keras.Input((2, 8, 8, 3)),
                               keras.layers.Conv3D(4, 3, padding="same", name="b")])
    assert inflate_2d_weights(source, target) == 1
    wrong = keras.Sequential([keras.Input((2, 8, 8, 3)), keras.layers.Conv3D(5, 3, padding="same", name="c")])
    with pytest.raises(ValueError, match="differ in structure"):
        inflate_2d_weights(source, wrong)


def test_i3d_flow_and_variable_shapes():
    flow = build_model("i3d", (4, 32, 32, 2), 3, modality="flow", **SMALL)
    assert flow.inputs[0].name == "flow"
    variable = build_i3d((None, None, None, 3), 3, **SMALL)
    assert variable(np.zeros((1, 8, 48, 48, 3), "float32")).shape == (1, 3)
    with pytest.raises(ValueError, match="temporal_padding"):
        build_i3d((4, 32, 32, 3), 3, temporal_padding="circular", **SMALL)
