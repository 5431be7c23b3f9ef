"""torchvision mvit_v2_s / mvit_v1_b: converted logits equal torchvision's.

Their position tables are sized by the clip, so a second size needs a reference built for
it: torchvision's own block lists and flags at 4x112x80 (non-square; v2 resamples its width
table and scales non-integer grid ratios 7/4 and 5/3 in the last stage). The recipe's
16x224x224 with torchvision's constructors as published is marked slow (15-20 s each on 2
idle cores, a few times that on a loaded machine).
"""

import dataclasses
from unittest import mock

import pytest

from kvid.models.mvit import VARIANTS
from kvid.pretrained import CheckpointMismatch, get_importer, load_pretrained
from kvid.pretrained.parity import check_parity, randomized_reference
from kvid.pretrained.torchvision_mvit import reference

NAMES = ["mvit_v2_s", "mvit_v1_b"]
SMALL = (4, 112, 80, 3)


def _small_parity(name, folder):
    importer = get_importer(f"torchvision:{name}")
    module = randomized_reference(dataclasses.replace(
        importer, reference=lambda: reference(name, SMALL[0], SMALL[1:3])))
    return importer, check_parity(importer, SMALL, folder, module=module)


@pytest.mark.parametrize("name", NAMES)
def test_block_lists_are_torchvisions(torchvision, name):
    from torchvision.models.video import mvit

    captured = {}
    with mock.patch.object(mvit, "_mvit", lambda **kwargs: captured.update(kwargs)):
        getattr(mvit, name)(weights=None)
    variant = VARIANTS[name]
    ours = variant["blocks"]
    theirs = [dataclasses.asdict(c) for c in captured["block_setting"]]
    assert len(theirs) == len(ours["num_heads"])
    for i, block in enumerate(theirs):
        assert block == {f: ours[f][i] for f in block}, i
    for flag in ("residual_pool", "rel_pos_embed", "proj_after_attn"):  # _mvit's default: False
        assert captured.get(flag, False) == variant[flag], flag
    assert captured["residual_with_cls_embed"] is False  # _mvit's default is True


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_torchvision_small_clip(torchvision, tmp_path, name):
    importer, result = _small_parity(name, str(tmp_path))
    assert result["max_abs_logit"] > 0.1  # not a degenerate all-zero comparison
    assert result["max_abs_diff"] <= 1e-4, result
    assert result["keras_model"].output.shape[-1] == 400
    path = str(tmp_path / importer.checkpoint_name)
    if name == "mvit_v2_s":  # the tables are the clip's: no fit for a model of another T
        with pytest.raises(CheckpointMismatch, match="shape mismatch"):
            load_pretrained(importer.spec, path, input_shape=(8, *SMALL[1:]))
    else:  # nor for the other MViT
        with pytest.raises(CheckpointMismatch, match="mvit_v2_s"):
            load_pretrained("torchvision:mvit_v2_s", path, input_shape=SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_logits_match_torchvision_recipe_clip(torchvision, tmp_path, name):
    importer = get_importer(f"torchvision:{name}")
    result = check_parity(importer, (16, 224, 224, 3), str(tmp_path))
    assert result["max_abs_logit"] > 0.1
    assert result["max_abs_diff"] <= 1e-4, result
    assert result["keras_model"].count_params() == {"mvit_v2_s": 34_537_744,
                                                    "mvit_v1_b": 36_610_672}[name]
