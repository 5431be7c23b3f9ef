"""PyTorchVideo slow_r50 / c2d_r50 / i3d_r50 / csn_r101: converted logits equal PyTorchVideo's."""

import numpy as np
import pytest

from kvid.models.registry import build_model
from kvid.pretrained import CheckpointMismatch, get_importer, load_pretrained
from kvid.pretrained.parity import check_parity, save_reference

# The recipe's clip, then one of other T and odd, non-square frames whose last feature map
# exceeds the head's fixed pool (two or three windows along T and W), so the head's
# average-then-average-again is exercised, and stride-2 convs meet odd sizes.
SHAPES = {
    "slow_r50": [(8, 224, 224, 3), (10, 201, 240, 3)],  # last map (10, 7, 8), pool (8, 7, 7)
    "c2d_r50": [(8, 224, 224, 3), (10, 201, 240, 3)],  # (5, 7, 8), pool (4, 7, 7)
    "i3d_r50": [(8, 224, 224, 3), (10, 201, 240, 3)],
    "csn_r101": [(32, 224, 224, 3), (26, 201, 240, 3)],  # T 26 -> 13 -> 7 -> 4, (4, 7, 8)
}


@pytest.fixture(scope="module")
def calibrated():
    from kvid.pretrained.pytorchvideo_resnet import calibrated_reference

    return calibrated_reference


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_logits_match_pytorchvideo(pytorchvideo, calibrated, tmp_path, name):
    importer = get_importer(f"pytorchvideo:{name}")
    module = calibrated(importer)
    for shape in SHAPES[name]:
        result = check_parity(importer, shape, str(tmp_path), module=module)
        assert result["max_abs_logit"] > 0.1  # not a degenerate all-zero comparison
        assert result["max_abs_diff"] <= 1e-4, result
        assert result["keras_model"].output.shape[-1] == 400


def test_another_variants_checkpoint_is_refused(pytorchvideo, tmp_path):
    """slow_r50's file has every tensor i3d_r50 names, but other temporal kernels; as
    slow_r50 with a new head it loads without its own head."""
    importer = get_importer("pytorchvideo:slow_r50")
    path = save_reference(importer, importer.reference(), str(tmp_path / "slow.pyth"))
    with pytest.raises(CheckpointMismatch, match="shape mismatch: blocks.0.conv"):
        load_pretrained("pytorchvideo:i3d_r50", path, input_shape=(None, None, None, 3))
    # Fine-tuning: a new head, every other tensor used (the old head is blocks.5.proj).
    model = load_pretrained("pytorchvideo:slow_r50", path, 7, input_shape=(None, None, None, 3))
    assert model.output.shape[-1] == 7


@pytest.mark.parametrize("shape,kernel,strides,padding", [
    ((2, 7, 9, 11, 6), (3, 3, 3), (2, 2, 2), (1, 1, 1)),  # ir-CSN's first block of a stage
    ((1, 5, 8, 8, 4), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((1, 6, 9, 7, 3), (5, 3, 1), (1, 2, 1), (2, 0, 0)),
])
def test_depthwise_conv_equals_torch_grouped_conv(torch, shape, kernel, strides, padding):
    from kvid.models.layers import DepthwiseConv3D
    from kvid.pretrained.checkpoint import CONVERTERS

    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    channels = shape[-1]
    conv = torch.nn.Conv3d(channels, channels, kernel, stride=strides, padding=padding,
                           groups=channels, bias=False)
    with torch.no_grad():
        expected = conv(torch.from_numpy(x).permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1).numpy()
    layer = DepthwiseConv3D(kernel, strides=strides, padding=padding)
    layer(x)  # builds it
    arrays, used = CONVERTERS[DepthwiseConv3D](layer, {"w.weight": conv.weight.detach().numpy()},
                                               "w")
    layer.set_weights(arrays)
    assert used == ["w.weight"]
    got = np.asarray(layer(x))
    assert got.shape == expected.shape == layer.compute_output_shape(shape)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_clip_smaller_than_the_head_pool_is_refused():
    with pytest.raises(ValueError, match="head_pool_size=None"):
        build_model("slow_r50", (4, 224, 224, 3), 400)
