"""torchvision s3d: converted logits equal torchvision's; wrong files are refused; a new head."""

import os

import numpy as np
import pytest

from kvid.pretrained import CheckpointMismatch, assign, get_importer, load_pretrained
from kvid.pretrained.parity import check_parity, randomized_reference

# The recipe's 64x224x224, then a short clip of non-square frames: W=232 takes odd sizes
# through the pools (29 -> 15 -> 7), H=256 leaves the head two 7x7 windows to average.
SHAPES = [(64, 224, 224, 3), (14, 256, 232, 3)]


@pytest.fixture(scope="module")
def converted(torchvision, tmp_path_factory):
    """Parity at both sizes with one randomized reference; returns it and its saved file."""
    importer = get_importer("torchvision:s3d")
    module = randomized_reference(importer)
    folder = str(tmp_path_factory.mktemp("s3d"))
    results = [check_parity(importer, shape, folder, module=module) for shape in SHAPES]
    return importer, module, os.path.join(folder, importer.checkpoint_name), results


def test_logits_match_torchvision(converted):
    _, _, _, results = converted
    for result in results:
        assert result["max_abs_logit"] > 0.05  # not a degenerate all-zero comparison
        assert result["max_abs_diff"] <= 1e-4, result
        # This random net's logits are ~0.2, where BN epsilon 1e-5 instead of torchvision's
        # 1e-3 is off by only 1.4e-4; relative to the logits it fails clearly.
        assert result["max_abs_diff"] <= 1e-4 * result["max_abs_logit"], result
        assert result["keras_model"].output.shape[-1] == 400
        assert result["keras_model"].get_layer("logits") is result["keras_model"].layers[-1]


def test_wrong_checkpoint_is_refused(converted):
    importer, module, _, results = converted
    model = results[1]["keras_model"]
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    del state["features.8.branch1.1.1.1.running_var"]  # mixed_4b's temporal BN
    with pytest.raises(CheckpointMismatch, match="running_var"):
        assign(model, importer.convert_state(state), importer.pairs(model), source=importer.spec)
    state = importer.convert_state({k: v.numpy() for k, v in module.state_dict().items()})
    state["features.15.branch0.0.weight"] = state["features.15.branch0.0.weight"][:-1]
    with pytest.raises(CheckpointMismatch, match="shape mismatch"):
        assign(model, state, importer.pairs(model), source=importer.spec)


def test_new_head_keeps_the_trunk(converted):
    importer, module, path, _ = converted
    model = load_pretrained(importer.spec, path, num_classes=7, input_shape=(None, None, None, 3))
    assert tuple(model.output.shape) == (None, 7)
    stem = module.state_dict()["features.0.0.0.weight"].numpy()  # [O, I, 1, 7, 7]
    np.testing.assert_array_equal(model.get_layer("conv3d_1a_7x7_s_conv").get_weights()[0],
                                  np.transpose(stem, (2, 3, 4, 1, 0)))
