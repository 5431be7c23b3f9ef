"""torchvision r3d_18 / mc3_18 / r2plus1d_18: converted logits equal torchvision's."""

import pytest

from kvid.pretrained import get_importer
from kvid.pretrained.parity import check_parity

# The recipe's 16x112x112 and another clip (fewer frames, non-square frames).
SHAPES = [(16, 112, 112, 3), (8, 96, 128, 3)]


@pytest.mark.parametrize("name", ["r2plus1d_18", "r3d_18", "mc3_18"])
def test_logits_match_torchvision(torchvision, tmp_path, name):
    importer = get_importer(f"torchvision:{name}")
    for shape in SHAPES:
        result = check_parity(importer, shape, str(tmp_path))
        assert result["max_abs_logit"] > 0.1  # not a degenerate all-zero comparison
        assert result["max_abs_diff"] <= 1e-4, result
        assert result["keras_model"].output.shape[-1] == 400
