"""torchvision swin3d_t / swin3d_s / swin3d_b: converted logits equal torchvision's.

Beside the recipe's 32x224x224, a clip whose every size needs padding (to the 2x4x4 patch,
to even sizes in patch merging, to the 8x7x7 window) and whose features get smaller than the
window (shrunk windows, unshifted axes, torchvision's sliced bias index) in later stages.
"""

import keras
import numpy as np
import pytest

from kvid.models import build_model
from kvid.pretrained import CheckpointMismatch, get_importer, load_pretrained, random_clip
from kvid.pretrained.parity import check_parity, randomized_reference, save_reference

REFERENCE = (32, 224, 224, 3)
ODD = (18, 62, 98, 3)  # tokens 9x16x25: T padded to 16 and shifted, H/W odd further down
SMALL = (4, 40, 56, 3)  # tokens 2x10x14: windows shrunk and padded from the first stage


@pytest.fixture(scope="module")
def swin3d_t(torchvision, tmp_path_factory):
    """The randomized swin3d_t reference and its checkpoint, shared by the tests below."""
    importer = get_importer("torchvision:swin3d_t")
    module = randomized_reference(importer)
    path = tmp_path_factory.mktemp("swin3d_t") / importer.checkpoint_name
    return importer, module, save_reference(importer, module, str(path))


def _check(result):
    assert result["max_abs_logit"] > 0.1  # not a degenerate all-zero comparison
    assert result["max_abs_diff"] <= 1e-4, result
    assert result["keras_model"].output.shape[-1] == 400


def test_swin3d_t_logits_match_torchvision(swin3d_t, tmp_path):
    importer, module, _ = swin3d_t
    _check(check_parity(importer, REFERENCE, str(tmp_path), module=module))
    result = check_parity(importer, ODD, str(tmp_path), module=module)
    _check(result)
    model, clip = result["keras_model"], random_clip(ODD, seed=3)
    model.save(tmp_path / "swin3d_t.keras")
    loaded = keras.saving.load_model(tmp_path / "swin3d_t.keras")
    np.testing.assert_allclose(loaded(clip, training=False), model(clip, training=False),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["swin3d_s", "swin3d_b"])
def test_larger_variants_logits_match_torchvision(torchvision, tmp_path, name):
    _check(check_parity(get_importer(f"torchvision:{name}"), SMALL, str(tmp_path)))


def test_wrong_checkpoints_are_refused(swin3d_t, tmp_path):
    import torch

    _, module, path = swin3d_t
    with pytest.raises(CheckpointMismatch, match="missing from the checkpoint"):
        load_pretrained("torchvision:swin3d_s", path, input_shape=(2, 32, 32, 3))
    state = module.state_dict()
    key = "features.0.0.attn.relative_position_index"
    state[key] = torch.flip(state[key], (0,))
    torch.save(state, tmp_path / "tampered.pth")
    with pytest.raises(CheckpointMismatch, match="relative position index"):
        load_pretrained("torchvision:swin3d_t", str(tmp_path / "tampered.pth"),
                        input_shape=(2, 32, 32, 3))


def test_stochastic_depth_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("swin3d_t", (4, 32, 32, 3), 3, embed_dim=8, depths=(2, 2, 2, 2),
                        num_heads=(1, 2, 2, 4), stochastic_depth=0.9)
    x = random_clip((4, 32, 32, 3), batch=8)
    model.save(tmp_path / "tiny.keras")
    loaded = keras.saving.load_model(tmp_path / "tiny.keras")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False),
                               rtol=1e-6, atol=1e-6)
    assert not np.allclose(model(x, training=True), model(x, training=False), atol=1e-4)
