"""Golden parameter counts at each paper's reference configuration (within 5% of published).

Counts trainable weights, as papers and torchvision/pytorchvideo do (BatchNorm moving
statistics are not parameters). The published figures and their sources live in the
registry (``ModelInfo.published_params`` / ``params_source``) and in docs/models.md.
"""

import numpy as np
import pytest

from kvid.models import MODELS, build_model
from kvid.models.x3d import X3D_VARIANTS

GOLDEN = sorted(name for name, info in MODELS.items() if info.published_params)


def trainable_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_golden_models_listed():
    assert {"c3d", "i3d", "r2plus1d", "slowfast", "x3d", "vivit"} <= set(GOLDEN)


@pytest.mark.slow
@pytest.mark.parametrize("name", GOLDEN)
def test_reference_parameter_count(name):
    info = MODELS[name]
    params = trainable_params(build_model(name))
    assert params == pytest.approx(info.published_params, rel=0.05), info.params_source


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(X3D_VARIANTS))
def test_x3d_variant_parameter_counts(variant):
    spec = X3D_VARIANTS[variant]
    model = build_model("x3d", (spec.frames, spec.crop_size, spec.crop_size, 3), 400, variant=variant)
    assert trainable_params(model) == pytest.approx(spec.params_m * 1e6, rel=0.05)
    assert model.name == f"x3d_{variant.lower()}"


@pytest.mark.slow
def test_r3d_18_matches_torchvision():
    model = build_model("r2plus1d", (16, 112, 112, 3), 400, conv_type="3d")
    assert trainable_params(model) == 33_371_472  # torchvision r3d_18


def test_r2plus1d_18_matches_torchvision_exactly():
    assert trainable_params(build_model("r2plus1d")) == 31_505_325
