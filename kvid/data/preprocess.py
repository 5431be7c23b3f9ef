"""In-graph frame decoding and normalization shared by tf.data and the exported SavedModel.

The serving signatures call exactly these functions, so a served model sees the same
pixels as training did (one source of truth for preprocessing).
"""

from __future__ import annotations

import tensorflow as tf

NORMALIZATIONS = ("unit", "symmetric", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def decode_frames(jpegs: tf.Tensor, image_size: tuple[int, int] | None = None) -> tf.Tensor:
    """[T] JPEG strings -> [T, H, W, 3] float32 in [0, 255], resized to ``image_size``.

    Resizing scales the short side to cover ``image_size`` and center-crops, as ingest does,
    so clients may send frames of any size.
    """
    frames = tf.map_fn(
        lambda b: tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_FAST"),
        jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
    )
    frames = tf.cast(frames, tf.float32)
    if image_size is None:
        return frames
    return resize_cover_crop(frames, image_size)


def resize_cover_crop(frames: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """[T, h, w, C] -> [T, H, W, C]: scale to cover (H, W) and take the center crop."""
    th, tw = int(image_size[0]), int(image_size[1])
    shape = tf.shape(frames)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    scale = tf.maximum(th / h, tw / w)
    nh = tf.maximum(th, tf.cast(tf.round(h * scale), tf.int32))
    nw = tf.maximum(tw, tf.cast(tf.round(w * scale), tf.int32))

    def resize():
        return tf.image.resize(frames, tf.stack([nh, nw]), method="bilinear")

    same = tf.logical_and(tf.equal(shape[1], nh), tf.equal(shape[2], nw))
    resized = tf.cond(same, lambda: tf.cast(frames, tf.float32), resize)
    y, x = (nh - th) // 2, (nw - tw) // 2
    out = resized[:, y:y + th, x:x + tw, :]
    return tf.ensure_shape(out, [None, th, tw, frames.shape[-1]])


def normalize(frames: tf.Tensor, mode: str) -> tf.Tensor:
    """Pixels in [0, 255] -> the range a model's preprocessing expects."""
    x = tf.cast(frames, tf.float32)
    if mode == "unit":
        return x / 255.0
    if mode == "symmetric":
        return x / 127.5 - 1.0
    if mode == "imagenet":
        return (x / 255.0 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    raise ValueError(f"normalize mode must be one of {NORMALIZATIONS}. Received: mode={mode!r}")
