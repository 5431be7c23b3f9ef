"""ImageNet 2D -> 3D inflation by structure: a keras.applications ResNet50 weight file into
PyTorchVideo's I3D-R50 layout, whose shortcut and last 1x1 conv have the same shape."""

import keras
import numpy as np
import pytest

from kvid.models import build_model, inflate_2d_weights
from kvid.models.inflate import application_2d


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A ResNet50 weight file as keras.applications saves it, with random BN statistics."""
    rng = np.random.default_rng(0)
    net = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
        elif isinstance(layer, keras.layers.Conv2D):
            k, bias = layer.get_weights()
            layer.set_weights([k, rng.normal(0, 0.1, bias.shape)])
    path = str(tmp_path_factory.mktemp("r50") / "resnet50_notop.weights.h5")
    net.save_weights(path)
    return path


def test_resnet50_file_inflates_into_i3d_r50_by_role(resnet50_file):
    net_2d = application_2d("ResNet50", resnet50_file, input_shape=(64, 64, 3))
    net_3d = build_model("i3d_r50", (4, 64, 64, 3), 10, head_pool_size=None)
    count = inflate_2d_weights(net_2d, net_3d, skip=("logits",))
    assert count == len([layer for layer in net_3d.layers if layer.weights]) - 1

    def kernel_2d(name):
        return net_2d.get_layer(name).kernel.numpy()

    def kernel_3d_summed(name):  # repeated over time and divided: the sum is the 2D kernel
        return net_3d.get_layer(name).kernel.numpy().sum(axis=0)

    # Both map 64 -> 256 channels with a 1x1 kernel: the shortcut and the last conv.
    np.testing.assert_allclose(kernel_3d_summed("res2_0_proj_conv"), kernel_2d("conv2_block1_0_conv"),
                               atol=1e-6)
    np.testing.assert_allclose(kernel_3d_summed("res2_0_c_conv"), kernel_2d("conv2_block1_3_conv"),
                               atol=1e-6)
    assert not np.allclose(kernel_2d("conv2_block1_0_conv"), kernel_2d("conv2_block1_3_conv"))
    np.testing.assert_allclose(kernel_3d_summed("res5_2_b_conv"), kernel_2d("conv5_block3_2_conv"),
                               atol=1e-6)
    # The 2D conv's bias (the 3D conv has none) moves into the BatchNorm's moving mean.
    bias = net_2d.get_layer("conv3_block2_1_conv").bias.numpy()
    mean_2d = net_2d.get_layer("conv3_block2_1_bn").moving_mean.numpy()
    np.testing.assert_allclose(net_3d.get_layer("res3_1_a_bn").moving_mean.numpy(),
                               mean_2d - bias, atol=1e-6)


def test_a_net_of_another_structure_is_refused(resnet50_file):
    net_2d = application_2d("ResNet50", resnet50_file, input_shape=(64, 64, 3))
    other = build_model("slow_r50", (4, 64, 64, 3), 10, head_pool_size=None, blocks=(3, 4, 6, 2))
    with pytest.raises(ValueError, match="differ in structure"):
        inflate_2d_weights(net_2d, other, skip=("logits",))
    with pytest.raises(ValueError, match="Unknown keras.applications model"):
        application_2d("ResNet51", resnet50_file)
