import numpy as np
import pytest
import tensorflow as tf

from kvid.data import make_dataset
from kvid.data.preprocess import (IMAGENET_MEAN, IMAGENET_STD, channel_mean, decode_frames,
                                  decode_jpegs, normalize, resize_cover_crop)

from data_fixtures import known_frame, make_clip, write_shards


@pytest.mark.parametrize("width", [32, 64])  # center window 75% / 38% of the frame
def test_decode_frames_same_for_static_and_dynamic_length(width):
    jpegs = make_clip(0, "v", frames=3, height=24, width=width).frames
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


@pytest.mark.parametrize("size", [(16, 16), (20, 12), (24, 32), (12, 30)])
def test_center_window_decode_matches_decoding_everything_then_cropping(size):
    jpegs = tf.constant(make_clip(0, "v", frames=3, height=40, width=52).frames)
    whole = resize_cover_crop(decode_jpegs(jpegs), size)
    # Equal but, where the window is decoded alone (20x12: 46% of the frame), at its edges:
    # there the chroma upsampling sees no pixels beyond it.
    np.testing.assert_allclose(decode_frames(jpegs, size), whole, atol=3)
    assert whole.shape == (3, *size, 3)


@pytest.mark.parametrize("window", [(0, 0, 160, 200), (3, 5, 150, 190), (20, 20, 110, 150),
                                    (30, 30, 100, 160), (37, 50, 64, 80), (16, 32, 48, 64)])
def test_window_decode_gives_the_window_of_the_whole_frame(window):
    jpegs = tf.constant(make_clip(0, "v", frames=3, height=160, width=200).frames)
    y, x, h, w = window
    whole = decode_jpegs(jpegs).numpy()[:, y:y + h, x:x + w].astype(int)
    part = decode_jpegs(jpegs, tf.constant(window)).numpy()
    assert part.shape == (3, h, w, 3) and part.dtype == np.uint8
    if 2 * h * w > 160 * 200:  # cut from the whole decoded frame
        np.testing.assert_array_equal(part, whole)
    else:  # decoded alone: the chroma upsampling at its edges sees no pixels beyond it
        assert np.abs(part - whole).max() <= 3 and np.abs(part - whole).mean() < 0.5


def test_eval_pipeline_gives_the_serving_pixels_for_frames_larger_than_the_input(tmp_path):
    clip = make_clip(0, "v", frames=4, height=40, width=52)
    write_shards(str(tmp_path), "test", [clip], shards=1)
    (x, _), = make_dataset(str(tmp_path), "test", clip_frames=4, batch_size=1, training=False,
                           image_size=24, normalize="unit")
    served = decode_frames(tf.constant(clip.frames), (24, 24)) / 255
    np.testing.assert_allclose(x[0], served, atol=1e-6)
    # The center crop: a 40x40 window at columns 6..45 of the 52-wide ramp, scaled to 24.
    red = served[0, 0, :, 0].numpy() * 255
    assert 6 / 51 * 255 - 4 < red[0] < 7 / 51 * 255 + 4 and red[-1] > 44 / 51 * 255 - 4
