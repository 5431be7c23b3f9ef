"""kvid's native training crop: built where a compiler is, equal to the TF ops, or not used."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kvid.data import AugmentConfig, make_config, make_dataset, native, preprocess_clip
from kvid.data.preprocess import normalization_affine, normalize

from data_fixtures import make_clip


def test_the_kernel_builds_and_loads_where_a_compiler_is():
    # CI machines have g++: the fast path must not silently fall back there.
    if shutil.which(os.environ.get("CXX") or "g++") is None:
        pytest.skip("no C++ compiler on this machine")
    if not native.enabled():
        pytest.skip("KVID_NATIVE=0")
    assert native.problem() is None
    assert native.crop_resize_op() is not None
    assert native.build().exists()  # cached: the same library, not rebuilt


def tf_crop_resize(frames, window, flip, size):
    y, x, h, w = window
    out = tf.image.resize(tf.cast(frames[:, y:y + h, x:x + w], tf.float32), size).numpy()
    return out[:, :, ::-1] if flip else out


@pytest.mark.skipif(native.crop_resize_op() is None, reason="native kernel unavailable")
@pytest.mark.parametrize("isa", ["best", "avx2", "scalar"])  # each falls back if the CPU lacks it
@pytest.mark.parametrize("channels", [3, 2])
def test_crop_resize_equals_tf_resize_then_flip(channels, isa):
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 64, channels), np.uint8)
    ones, zeros = [1.0] * channels, [0.0] * channels
    cases = [((0, 0, 48, 64), False, (48, 64)),   # identity: exact
             ((2, 3, 40, 50), True, (32, 32)),    # downscale
             ((0, 1, 44, 60), False, (40, 44)),   # shrink x1.4: AVX2 runs partly value by value
             ((5, 9, 12, 10), False, (32, 40)),   # upscale x3-4
             ((0, 0, 48, 64), True, (7, 5)),      # strong downscale: the value-by-value runs
             ((10, 0, 30, 64), True, (30, 64))]   # width unchanged, flipped: exact
    for window, flip, size in cases:
        got = native.crop_resize(tf.constant(frames), window, flip, ones, zeros, size,
                                 isa=isa).numpy()
        want = tf_crop_resize(frames, window, flip, size)
        assert got.shape == (3, *size, channels) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-3, err_msg=str((window, flip, size)))
        if window[2:] == size:
            np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(native.crop_resize_op() is None, reason="native kernel unavailable")
def test_crop_resize_applies_the_normalization_per_channel():
    frames = np.random.default_rng(1).integers(0, 256, (2, 20, 30, 3), np.uint8)
    scale, offset = normalization_affine("imagenet")
    got = native.crop_resize(tf.constant(frames), (1, 2, 17, 25), True, scale, offset, (16, 16))
    want = normalize(tf_crop_resize(frames, (1, 2, 17, 25), True, (16, 16)), "imagenet")
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


@pytest.mark.skipif(native.crop_resize_op() is None, reason="native kernel unavailable")
def test_bad_arguments_are_clear_errors():
    frames = tf.zeros([2, 10, 10, 3], tf.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="inside the frames"):
        native.crop_resize(frames, (5, 0, 6, 10), False, [1.0] * 3, [0.0] * 3, (4, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="one value per channel"):
        native.crop_resize(frames, (0, 0, 10, 10), False, [1.0] * 2, [0.0] * 2, (4, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="scalar bool"):
        native.crop_resize(frames, (0, 0, 10, 10), [True, False], [1.0] * 3, [0.0] * 3, (4, 4))


def clip_dict():
    c = make_clip(1, "v", flow=True, height=48, width=64)
    return {"rgb": tf.constant(c.frames), "flow": tf.constant(c.flow),
            "label": tf.constant(1, tf.int64)}


def both_ways(monkeypatch, fn):
    monkeypatch.setenv("KVID_NATIVE", "1")
    fused = fn()
    monkeypatch.setenv("KVID_NATIVE", "0")
    return fused, fn()


@pytest.mark.skipif(native.crop_resize_op() is None, reason="native kernel unavailable")
@pytest.mark.parametrize("modality,normalization,augment", [
    ("rgb", "unit", AugmentConfig()),
    ("rgb", "imagenet", AugmentConfig(crop="multiscale")),
    ("rgb+flow", "symmetric", AugmentConfig(crop="random")),
    ("rgb+flow", "unit", AugmentConfig(color_jitter=0.3)),
])
def test_training_clips_are_the_same_with_and_without_the_kernel(
        monkeypatch, modality, normalization, augment):
    clip = clip_dict()
    cfg = make_config(clip_frames=4, image_size=(40, 36), modality=modality,
                      normalize=normalization, augment=augment)

    def clips():
        return [tf.nest.map_structure(
            np.asarray, preprocess_clip(clip, cfg, training=True,
                                        seed=tf.constant([7, i], tf.int64))[0])
            for i in range(6)]

    fused, plain = both_ways(monkeypatch, clips)
    for a, b in zip(fused, plain):  # six seeds: both flips, several windows
        for key in (a if isinstance(a, dict) else {None: a}):
            x, y = (a[key], b[key]) if key else (a, b)
            assert x.shape == y.shape and x.dtype == y.dtype == np.float32
            np.testing.assert_allclose(x, y, atol=2e-4, err_msg=f"{modality} {key}")


@pytest.mark.skipif(native.crop_resize_op() is None, reason="native kernel unavailable")
def test_make_dataset_batches_are_the_same_with_and_without_the_kernel(monkeypatch, shard_dir):
    def batches():
        ds = make_dataset(shard_dir, "train", clip_frames=4, batch_size=3, training=True,
                          image_size=20, seed=5, modality="rgb+flow")
        return [(x["rgb"].numpy(), x["flow"].numpy(), y.numpy()) for x, y in ds]

    fused, plain = both_ways(monkeypatch, batches)
    assert len(fused) == len(plain) == 2
    for (r1, f1, y1), (r2, f2, y2) in zip(fused, plain):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_allclose(r1, r2, atol=2e-4)
        np.testing.assert_allclose(f1, f2, atol=2e-4)


def test_a_failed_build_says_why_and_leaves_no_library(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    with pytest.raises(OSError, match="false failed with exit code 1"):
        native.build(tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half-written library under any name


def test_kvid_native_0_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv("KVID_NATIVE", "0")
    assert native.crop_resize_op() is None
    with pytest.raises(RuntimeError, match="unavailable"):
        native.crop_resize(tf.zeros([1, 4, 4, 3], tf.uint8), (0, 0, 4, 4), False,
                           [1.0] * 3, [0.0] * 3, (2, 2))
