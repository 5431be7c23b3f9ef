"""In-graph frame decoding and normalization shared by tf.data and the exported SavedModel.

The serving signatures call exactly these functions, so a served model sees the same
pixels as training did (one source of truth for preprocessing).
"""

from __future__ import annotations

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Every input normalization a model may ask for, as (mean, std) of pixels / 255:
# normalized = (pixels / 255 - mean) / std. "symmetric" is [-1, 1] (also flow's range);
# "kinetics" is torchvision's video models' (their Kinetics-400 recipe), "kinetics_ptv"
# PyTorchVideo's and PySlowFast's.
NORMALIZATION_STATS = {
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "kinetics": ((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
    "kinetics_ptv": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),
}
NORMALIZATIONS = tuple(NORMALIZATION_STATS)
_MAX_UNROLL = 128  # longest static clip whose JPEG decodes are unrolled in the graph


def decode_jpegs(jpegs: tf.Tensor, window: tf.Tensor | None = None) -> tf.Tensor:
    """[T] JPEG strings -> uint8 [T, h, w, 3], only inside ``window`` (y, x, h, w) if given.

    With a static T the decodes are unrolled (about 10% faster than ``tf.map_fn`` for
    16 small frames); a dynamic T (serving) goes through ``tf.map_fn``.

    A window of at most half the frame is decoded alone (``decode_and_crop_jpeg``); a larger
    one is cut from the whole decoded frame, because libjpeg-turbo still entropy-decodes every
    block and pays extra row work for a window: measured by benchmarks/bench_window_decode.py
    (four runs), a window of 30-50% of the frame mostly decodes in 0.65-0.95x the whole
    frame's time, one of 70-90% mostly in 1.1-1.4x.
    """
    def each(one):
        n = jpegs.shape[0] if jpegs.shape.rank == 1 else None
        if n is not None and 0 < n <= _MAX_UNROLL:
            return tf.stack([one(jpegs[i]) for i in range(n)])
        return tf.map_fn(one, jpegs, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

    def whole():
        return each(lambda b: tf.io.decode_jpeg(b, channels=3, dct_method="INTEGER_FAST"))

    if window is None:
        return whole()
    height, width = frame_size(jpegs)
    return tf.cond(
        2 * window[2] * window[3] <= height * width,
        lambda: each(lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3,
                                                          dct_method="INTEGER_FAST")),
        lambda: crop(whole(), window))


def cover_window(height, width, image_size):
    """(h, w) of the largest window with ``image_size``'s aspect ratio inside (height, width)."""
    th, tw = float(image_size[0]), float(image_size[1])
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    f = tf.minimum(h / th, w / tw)
    return (tf.cast(tf.minimum(tf.round(th * f), h), tf.int32),
            tf.cast(tf.minimum(tf.round(tw * f), w), tf.int32))


def place_window(height, width, ch, cw, fy, fx) -> tf.Tensor:
    """int32 [4] ``(y, x, h, w)``: a (ch, cw) window at fractions (fy, fx) of the free range
    of a (height, width) frame: 0 top/left, 1 bottom/right."""
    y = tf.cast(tf.round(tf.cast(height - ch, tf.float32) * fy), tf.int32)
    x = tf.cast(tf.round(tf.cast(width - cw, tf.float32) * fx), tf.int32)
    return tf.stack([y, x, ch, cw])


def frame_size(src: tf.Tensor):
    """(height, width) of [T] JPEG strings (from the first frame's header) or [T, h, w, C]."""
    if src.dtype == tf.string:
        shape = tf.io.extract_jpeg_shape(src[0])
        return shape[0], shape[1]
    shape = tf.shape(src)
    return shape[1], shape[2]


def center_window(height, width, image_size) -> tf.Tensor:
    """The center crop: the largest window of ``image_size``'s aspect, in the middle."""
    height, width = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
    ch, cw = cover_window(height, width, image_size)
    return place_window(height, width, ch, cw, 0.5, 0.5)


def resize_to(frames: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """[T, h, w, C] -> float32 [T, H, W, C] (bilinear); frames of that size pass bit-exact.

    Casting before resizing is faster than resizing uint8 (same values): 1.2-2x, by CPU.
    """
    th, tw = int(image_size[0]), int(image_size[1])
    frames = tf.cast(frames, tf.float32)
    shape = tf.shape(frames)
    same = tf.logical_and(tf.equal(shape[1], th), tf.equal(shape[2], tw))
    out = tf.cond(same, lambda: frames, lambda: tf.image.resize(frames, (th, tw)))
    return tf.ensure_shape(out, [frames.shape[0], th, tw, frames.shape[-1]])


def crop(frames: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """[T, h, w, C] inside ``window`` (y, x, h, w)."""
    return frames[:, window[0]:window[0] + window[2], window[1]:window[1] + window[3]]


def resize_cover_crop(frames: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """[T, h, w, C] -> float32 [T, H, W, C]: the center window of (H, W)'s aspect, resized.

    Cropping before resizing touches only the window's pixels; for JPEG frames,
    :func:`decode_frames` gives the same values from the JPEGs.
    """
    return resize_to(crop(frames, center_window(*frame_size(frames), image_size)), image_size)


def decode_frames(jpegs: tf.Tensor, image_size: tuple[int, int] | None = None) -> tf.Tensor:
    """[T] JPEG strings -> [T, H, W, 3] float32 in [0, 255], center-cropped to ``image_size``.

    :func:`resize_cover_crop` of the decoded frames (so clients may send frames of any size);
    where :func:`decode_jpegs` decodes a small window alone, equal but at its edges (+-3).
    """
    if image_size is None:
        return tf.cast(decode_jpegs(jpegs), tf.float32)
    window = center_window(*frame_size(jpegs), image_size)
    return resize_to(decode_jpegs(jpegs, window), image_size)


def per_channel_affine(x: tf.Tensor, scale, offset) -> tf.Tensor:
    """``x * scale + offset`` with [C] vectors over [..., W, C] pixels.

    The vectors are tiled over a row of W*C values: TF's CPU kernels broadcast a length-3
    vector over the last axis ~7x slower than a row they can vectorize.
    """
    shape = tf.shape(x)
    reps = shape[-2:-1]
    rows = tf.reshape(x, tf.stack([-1, shape[-2] * shape[-1]]))
    out = rows * tf.tile(tf.cast(scale, x.dtype), reps) + tf.tile(tf.cast(offset, x.dtype), reps)
    return tf.ensure_shape(tf.reshape(out, shape), x.shape)


def channel_mean(x: tf.Tensor) -> tf.Tensor:
    """[C] mean of [..., W, C] pixels, summed by rows of W*C values (3x faster, as above)."""
    shape = tf.shape(x)
    rows = tf.reshape(x, tf.stack([-1, shape[-2] * shape[-1]]))
    per_column = tf.reshape(tf.reduce_mean(rows, axis=0), shape[-2:])
    return tf.reduce_mean(per_column, axis=0)


def normalization_affine(mode: str, channels: int = 3) -> tuple[list[float], list[float]]:
    """``(scale, offset)`` per channel with ``normalize(x, mode) == x * scale + offset``."""
    if mode not in NORMALIZATION_STATS:
        raise ValueError(f"normalize mode must be one of {NORMALIZATIONS}. Received: mode={mode!r}")
    mean, std = NORMALIZATION_STATS[mode]
    if channels != 3:
        if len(set(mean)) > 1 or len(set(std)) > 1:
            raise ValueError(f"{mode} normalization needs 3 channels. Received: {channels}")
        mean, std = mean[:1] * channels, std[:1] * channels
    return [1 / (255 * s) for s in std], [-m / s for m, s in zip(mean, std)]


def denormalize(x, mode: str):
    """The inverse of :func:`normalize`, to pixels / 255 in [0, 1] (for plots)."""
    mean, std = NORMALIZATION_STATS[mode]
    channels = x.shape[-1]
    if channels != 3:
        mean, std = mean[:1] * channels, std[:1] * channels
    return x * tf.constant(std, x.dtype) + tf.constant(mean, x.dtype)


def normalize(frames: tf.Tensor, mode: str) -> tf.Tensor:
    """Pixels in [0, 255] -> the range a model's preprocessing expects."""
    # One multiply-add per value (a division costs several times a multiply on CPU).
    x = tf.cast(frames, tf.float32)
    scale, offset = normalization_affine(mode, x.shape[-1] or 3)
    if len(set(scale)) == 1 and len(set(offset)) == 1:  # scalars: no per-channel tiling
        return x * scale[0] + offset[0] if offset[0] else x * scale[0]
    return per_channel_affine(x, scale, offset)
