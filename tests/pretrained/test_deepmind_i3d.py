"""DeepMind kinetics-i3d (RGB, flow, Kinetics-600 RGB): converted logits equal DeepMind's
graph (deepmind_reference.py: their i3d.py in raw tf.nn ops) on random checkpoints that
carry DeepMind's exact variable names; wrong files are refused; a new head keeps the trunk.

No torch needed: the reference and the checkpoints are TensorFlow's.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import deepmind_reference as reference
from kvid.models.i3d import build_i3d
from kvid.pretrained import (CheckpointMismatch, get_importer, label_names, load_pretrained,
                             random_clip)
from kvid.pretrained.deepmind_i3d import units

# (scope, channels, classes, BN statistics layout, SGD Momentum slots) per checkpoint.
CASES = {
    "i3d_rgb": ("RGB/inception_i3d/", 3, 400, "flat", False),
    "i3d_flow": ("Flow/inception_i3d/", 2, 400, "flat", False),
    "i3d_rgb600": ("", 3, 600, "5d", True),
}
# Variables in DeepMind's files (their .index files list 230 and 346 tensors).
COUNTS = {"i3d_rgb": 230, "i3d_flow": 230, "i3d_rgb600": 346}
# DeepMind's 224x224 crops (16 of the 64 frames: a 2-core budget), then frames that are not
# a multiple of 8 and non-square frames: any T >= 9 and 193 <= H, W <= 224 keep the final
# map 7x7 (DeepMind's spatial squeeze); odd sizes exercise SAME's asymmetric padding.
SIZES = [(16, 224, 224), (11, 200, 216)]


def _parity(name, frames_hw, folder, seed=0):
    """Random DeepMind-named checkpoint -> kvid; both run the same clip."""
    scope, channels, classes, stats, momentum = CASES[name]
    shape = (*frames_hw, channels)
    clip = random_clip(shape, seed=seed)
    variables = reference.Variables(create=True, seed=seed + 1, stats_shape=stats)
    expected, _ = reference.inception_i3d(clip, variables, classes, scope)
    prefix = reference.save_checkpoint(variables.values, str(folder), momentum=momentum)
    model = load_pretrained(f"deepmind:{name}", str(folder), input_shape=shape)
    got = np.asarray(model(clip, training=False))
    expected = expected.numpy()
    return {"max_abs_diff": float(np.max(np.abs(got - expected))),
            "max_abs_logit": float(np.max(np.abs(expected))), "shape": shape,
            "classes": got.shape[-1], "prefix": prefix, "variables": variables.values}


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    return [_parity("i3d_rgb", size, tmp_path_factory.mktemp(f"rgb{i}"), seed=i)
            for i, size in enumerate(SIZES)]


def _check(result, classes):
    assert result["max_abs_logit"] > 1.0  # not a degenerate all-zero comparison
    assert result["max_abs_diff"] <= 1e-4, result
    assert result["classes"] == classes


def test_rgb_logits_match_deepmind(rgb):
    for result in rgb:
        _check(result, 400)


@pytest.mark.parametrize("name, size", [("i3d_flow", SIZES[1]), ("i3d_rgb600", (9, 193, 224))])
def test_flow_and_kinetics600_logits_match_deepmind(name, size, tmp_path):
    result = _parity(name, size, tmp_path, seed=3)
    _check(result, CASES[name][2])
    names = tf.train.load_checkpoint(result["prefix"]).get_variable_to_shape_map()
    assert len(names) == COUNTS[name]
    assert sum(key.endswith("/Momentum") for key in names) == (116 if CASES[name][4] else 0)


@pytest.mark.slow
def test_rgb_logits_match_deepmind_at_64_frames(tmp_path):
    _check(_parity("i3d_rgb", (64, 224, 224), tmp_path), 400)


def test_checkpoint_has_deepmind_names(rgb):
    """The saved file lists exactly DeepMind's names, and kvid pairs every one of them."""
    names = tf.train.load_checkpoint(rgb[0]["prefix"]).get_variable_to_shape_map()
    assert set(names) == set(rgb[0]["variables"]) and len(names) == COUNTS["i3d_rgb"]
    scope = CASES["i3d_rgb"][0]
    expected = {f"{scope}{unit}/{leaf}" for _, unit in units()
                for leaf in ("conv_3d/w", "batch_norm/beta", "batch_norm/moving_mean",
                             "batch_norm/moving_variance")}
    expected |= {f"{scope}Logits/Conv3d_0c_1x1/conv_3d/{leaf}" for leaf in "wb"}
    assert set(names) == expected
    assert names[f"{scope}Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"] == [3, 3, 3, 32, 128]
    assert names[f"{scope}Conv3d_1a_7x7/conv_3d/w"] == [7, 7, 7, 3, 64]


def test_wrong_checkpoints_are_refused(rgb, tmp_path):
    folder = os.path.dirname(rgb[0]["prefix"])  # the folder form DeepMind ships
    with pytest.raises(CheckpointMismatch, match="Flow/inception_i3d"):
        load_pretrained("deepmind:i3d_flow", folder, input_shape=(None, None, None, 2))
    broken = dict(rgb[0]["variables"])
    del broken["RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/batch_norm/moving_variance"]
    broken["RGB/inception_i3d/Extra/conv_3d/w"] = np.zeros((1, 1, 1, 1, 1), np.float32)
    prefix = reference.save_checkpoint(broken, str(tmp_path / "broken"))
    with pytest.raises(CheckpointMismatch, match="Mixed_4c/Branch_1/Conv3d_0b_3x3") as err:
        load_pretrained("deepmind:i3d_rgb", prefix, input_shape=(None, None, None, 3))
    assert "Extra/conv_3d" in str(err.value)


@pytest.mark.parametrize("outer", ["", "module/"])
def test_saved_model_folder_converts_to_its_own_logits(rgb, outer, tmp_path):
    """The weights as a SavedModel / TF1 Hub module folder: kvid's logits equal the
    module's own serving signature (also with an outer ``module/`` scope)."""
    folder = str(tmp_path / "i3d-kinetics-400")
    reference.save_saved_model(rgb[1]["variables"], folder, channels=3, num_classes=400,
                               scope=CASES["i3d_rgb"][0], outer_scope=outer)
    assert sorted(os.listdir(folder)) == ["saved_model.pb", "variables"]
    clip = random_clip((9, 193, 208, 3), seed=5)
    expected = reference.run_saved_model(folder, clip)
    model = load_pretrained("deepmind:i3d_rgb", folder, input_shape=(None, None, None, 3))
    got = np.asarray(model(clip, training=False))
    assert np.max(np.abs(expected)) > 1.0
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    with pytest.raises(CheckpointMismatch, match="Flow/inception_i3d"):  # still DeepMind's scope
        load_pretrained("deepmind:i3d_flow", folder, input_shape=(None, None, None, 2))


def test_new_head_keeps_the_trunk(rgb):
    result = rgb[0]
    model = load_pretrained("deepmind:i3d_rgb", result["prefix"], num_classes=7,
                            input_shape=(None, None, None, 3))
    assert tuple(model.output.shape) == (None, 7)
    assert model.get_layer("logits").kernel.shape == (1, 1, 1, 1024, 7)
    stem = result["variables"]["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"]
    np.testing.assert_array_equal(model.get_layer("conv3d_1a_7x7_conv").get_weights()[0], stem)
    beta = result["variables"]["RGB/inception_i3d/Mixed_5c/Branch_3/Conv3d_0b_1x1/batch_norm/beta"]
    np.testing.assert_array_equal(model.get_layer("mixed_5c_b3b_bn").get_weights()[0], beta)


def test_labels_and_importers():
    kinetics600 = label_names("kinetics600")
    assert len(kinetics600) == len(set(kinetics600)) == 600
    assert kinetics600 == sorted(kinetics600)  # DeepMind's label_map_600.txt is alphabetical
    assert get_importer("deepmind:i3d_rgb600").labels == "kinetics600"
    assert get_importer("deepmind:i3d_flow").labels == "kinetics400"


def test_deepmind_head_sizes():
    """The 2x7x7 "valid" pool needs 9 frames of 193 px; variable sizes still build."""
    small = {"width_multiplier": 1 / 16, "bn_scale": False, "bn_epsilon": 1e-3,
             "head": "deepmind"}
    with pytest.raises(ValueError, match="at least 193 height"):
        build_i3d((16, 160, 224, 3), 3, **small)
    with pytest.raises(ValueError, match="at least 9 frames"):
        build_i3d((8, 224, 224, 3), 3, **small)
    flow = build_i3d((None, None, None, 2), 3, modality="flow", head_pool=(1, 1, 1), **small)
    assert flow(np.zeros((1, 8, 48, 64, 2), "float32")).shape == (1, 3)
