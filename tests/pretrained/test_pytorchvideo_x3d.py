"""pytorchvideo x3d_xs / x3d_s / x3d_m / x3d_l: converted logits equal pytorchvideo's.

XS, S and M are one network (same tensors) built for different clips, which only sizes
the hub head's fixed pool; L is deeper. So: XS at its hub recipe clip and at another
(other T, non-square frames), L at a small clip, and for S and M that their hub models
are XS's tensors with a pool covering their recipe clip's whole feature map.
"""

import dataclasses
import functools
import math

import keras
import numpy as np
import pytest

from kvid.models import get_model_info
from kvid.pretrained import CheckpointMismatch, get_importer, load_pretrained, random_clip
from kvid.pretrained.parity import check_parity
from kvid.pretrained.pytorchvideo_x3d import reference_model


def _at(importer, variant, shape):
    """The importer with its reference built by create_x3d for the clip ``shape``."""
    return dataclasses.replace(importer, reference=functools.partial(reference_model, variant,
                                                                     shape))


def _assert_parity(result):
    assert result["max_abs_logit"] > 0.1  # not a degenerate all-zero comparison
    assert result["max_abs_diff"] <= 1e-4, result
    assert result["keras_model"].output.shape[-1] == 400


def _trunk_diff(result, shape, last_block: str) -> tuple[float, float]:
    """Max |diff| and max |value| of the res5 feature map (before the head's pooling, where
    a window shifted by TF-"same" padding shows ~50x more than in the pooled logits)."""
    import torch

    importer = get_importer(result["model"])
    clip = random_clip(shape, seed=1)
    trunk = keras.Model(result["keras_model"].input,
                        result["keras_model"].get_layer(last_block).output)
    with torch.no_grad():
        x = importer.reference_inputs(clip)
        for block in result["reference"].blocks[:5]:
            x = block(x)
    expected = x.permute(0, 2, 3, 4, 1).numpy()
    got = np.asarray(trunk(clip))
    return float(np.max(np.abs(got - expected))), float(np.max(np.abs(expected)))


def test_x3d_xs_matches_hub_at_two_sizes(pytorchvideo, tmp_path):
    importer = get_importer("pytorchvideo:x3d_xs")
    recipe = get_model_info("x3d_xs").reference_input_shape
    assert recipe == (4, 160, 160, 3)
    result = check_parity(importer, recipe, str(tmp_path))  # the hub model itself
    _assert_parity(result)
    diff, scale = _trunk_diff(result, recipe, "res5_6_out")
    assert scale > 1.0 and diff <= 1e-4 * scale
    other = (6, 96, 128, 3)
    _assert_parity(check_parity(_at(importer, "XS", other), other, str(tmp_path)))


def test_x3d_l_matches_pytorchvideo(pytorchvideo, tmp_path):
    shape = (4, 64, 96, 3)
    result = check_parity(_at(get_importer("pytorchvideo:x3d_l"), "L", shape), shape,
                          str(tmp_path))
    _assert_parity(result)
    diff, scale = _trunk_diff(result, shape, "res5_14_out")
    assert scale > 1.0 and diff <= 1e-4 * scale
    # X3D-L's file is not X3D-XS's (14 more blocks in res4 alone).
    with pytest.raises(CheckpointMismatch, match="pytorchvideo:x3d_xs"):
        load_pretrained("pytorchvideo:x3d_xs", str(tmp_path / "X3D_L.pyth"),
                        input_shape=(4, 64, 64, 3))


@pytest.mark.parametrize("name", ["x3d_s", "x3d_m"])
def test_x3d_s_m_are_xs_network_pooled_over_their_clip(pytorchvideo, name):
    """Their hub head pool is the global pool kvid uses at their recipe clip, and their
    tensors are XS's (which the parity test above converts)."""
    frames, height, width, _ = get_model_info(name).reference_input_shape
    module = get_importer(f"pytorchvideo:{name}").reference()
    assert tuple(int(k) for k in module.blocks[5].pool.pool.kernel_size) == (
        frames, math.ceil(height / 32), math.ceil(width / 32))
    xs = get_importer("pytorchvideo:x3d_xs").reference().state_dict()
    assert {k: v.shape for k, v in module.state_dict().items()} == {
        k: v.shape for k, v in xs.items()}
