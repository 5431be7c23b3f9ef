import numpy as np
import pytest
import tensorflow as tf

from kvid.data.preprocess import (IMAGENET_MEAN, IMAGENET_STD, channel_mean, decode_frames,
                                  normalize, resize_cover_crop)

from data_fixtures import known_frame, make_clip


def test_decode_frames_same_for_static_and_dynamic_length():
    jpegs = make_clip(0, "v", frames=3).frames
    static = decode_frames(tf.constant(jpegs), (16, 16))
    dynamic = tf.function(lambda j: decode_frames(j, (16, 16)),
                          input_signature=[tf.TensorSpec([None], tf.string)])(tf.constant(jpegs))
    assert static.shape == (3, 16, 16, 3) and static.dtype == tf.float32
    np.testing.assert_array_equal(static, dynamic)


def test_resize_cover_crop_passes_matching_frames_through_exactly():
    frames = np.stack([known_frame(i, 24, 32) for i in range(2)])
    out = resize_cover_crop(tf.constant(frames), (24, 32))
    np.testing.assert_array_equal(out, frames.astype(np.float32))
    crop = resize_cover_crop(tf.constant(frames), (12, 12))  # 24x32 -> 12x16 -> center 12x12
    assert crop.shape == (2, 12, 12, 3)


def test_normalize_modes_and_error():
    x = tf.constant([0.0, 127.5, 255.0])[:, None] * tf.ones([1, 3])
    np.testing.assert_allclose(normalize(x, "unit")[:, 0], [0, 0.5, 1])
    np.testing.assert_allclose(normalize(x, "symmetric")[:, 0], [-1, 0, 1])
    np.testing.assert_allclose(normalize(x, "imagenet")[0], [-0.485 / 0.229, -0.456 / 0.224,
                                                              -0.406 / 0.225], rtol=1e-5)
    with pytest.raises(ValueError, match="normalize mode must be one of"):
        normalize(x, "caffe")


def test_per_channel_normalization_and_mean_on_clips_of_any_shape():
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    expected = (x / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(normalize(tf.constant(x), "imagenet"), expected, atol=1e-5)
    dynamic = tf.function(lambda t: normalize(t, "imagenet"),
                          input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(dynamic(x), expected, atol=1e-5)
    np.testing.assert_allclose(channel_mean(tf.constant(x)), x.reshape(-1, 3).mean(0), rtol=1e-5)
