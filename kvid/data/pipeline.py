"""tf.data pipelines that feed ``model.fit``: clip records -> sampled, augmented batches.

The per-clip work is one pure function, :func:`preprocess_clip`, with a training branch (random
temporal position, random crop, flip, jitter) and an evaluation branch (centred clip, the
center crop of ``decode_frames``/``resize_cover_crop``, which the exported SavedModel calls
too). Either way the crop window is chosen from the JPEG header, before decoding, so a small
window is decoded alone. In training the window is resampled, flipped and normalized in one
pass by kvid's native kernel where it is built (kvid/data/native.py), else by TF's ops.
Shards, TFX artifacts and video files only differ in how a clip dict is made.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from kvid import dataset, schema, validate
from kvid.data import native, preprocess
from kvid.data.augment import NO_AUGMENT, AugmentConfig, color_jitter, crop_window, \
    flip_left_right, mix_batch
from kvid.data.sampling import dense_starts, flow_indices, temporal_indices, \
    validate_sampling
from kvid.data.sources import layout_of, resolve_files, split_size
from kvid.video.sampling import backward_flow_mask, clip_span

AUTOTUNE = tf.data.AUTOTUNE
MODALITIES = ("rgb", "flow", "rgb+flow", "rgbdiff")
LABEL_MODES = ("sparse", "one_hot")
CHANNELS = {"rgb": 3, "flow": 2, "rgbdiff": 3}
# The record images each stream is made of: RGB difference (TSN) is computed at read time
# from the stored frames, as TSN's own code computes it from RGB frames.
SOURCES = {"rgb": "rgb", "flow": "flow", "rgbdiff": "rgb"}
FLOW_DIRECTIONS = ("forward", "bidirectional")
FLOW_NORMALIZE = "symmetric"  # 8-bit flow around 128 -> [-1, 1]; a flip negates it exactly


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """What one model expects of a clip; :func:`make_dataset`, :func:`make_eval_views` and
    :func:`kvid.data.dataset_from_videos` take it (or its fields as keyword arguments), and a
    training run keeps the one it was trained with (``RUN/input.json``).

    clip_frames: T, frames per clip fed to the model.
    image_size: (H, W) (or one int) of the model input.
    sampling: ``dense`` | ``uniform`` | ``segments`` (see kvid.data.sampling), with
      ``num_segments`` (TSN's K) and ``frame_step`` (dense: frames between samples).
    modality: ``rgb``, ``flow``, ``rgb+flow`` (then inputs are a dict of both streams,
      keys renamed by ``input_names``, e.g. ``{"rgb": "video"}``) or ``rgbdiff`` (TSN's RGB
      difference: each sampled frame's successor minus it, after normalization).
    normalize: rgb range: ``unit`` [0, 1], ``symmetric`` [-1, 1], ``imagenet`` mean/std, ...
      (preprocess.NORMALIZATIONS); flow is always mapped to [-1, 1].
    augment: training augmentation (:class:`AugmentConfig`); evaluation ignores it.
    label_mode: ``sparse`` int32 [B] or ``one_hot`` [B, K] (K = ``num_classes``).
    labels: class names in label order; when given, a record's label is looked up by its
      ``label_name``, so a run keeps its label order whatever order later data has.
    flow_frames: ``rgb+flow`` only: flow images per clip when not T, a window centred on
      the RGB clip's middle frame (Simonyan: 1 RGB frame, L=10 flow); None: T, one per frame.
    flow_direction: ``forward``, or ``bidirectional`` (Simonyan & Zisserman): the first
      half of each flow stack (:attr:`flow_stack`) reads the backward flow at the same
      positions (ingest --flow-backward), the second half the forward flow.
    """

    clip_frames: int
    image_size: tuple[int, int]
    sampling: str = "dense"
    num_segments: int = 3
    frame_step: int = 1
    modality: str = "rgb"
    normalize: str = "unit"
    augment: AugmentConfig = AugmentConfig()
    label_mode: str = "sparse"
    num_classes: int | None = None
    input_names: Mapping[str, str] | None = None
    labels: tuple[str, ...] | None = None
    flow_frames: int | None = None
    flow_direction: str = "forward"

    def __post_init__(self):
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(str(n) for n in self.labels))
            if len(set(self.labels)) != len(self.labels) or not self.labels:
                raise ValueError(f"labels must be distinct class names. Received: {self.labels}")
            if self.num_classes is None:
                object.__setattr__(self, "num_classes", len(self.labels))
        if isinstance(self.augment, Mapping):  # from to_json()
            object.__setattr__(self, "augment", AugmentConfig(**{
                k: tuple(v) if isinstance(v, list) else v for k, v in self.augment.items()}))
        size = self.image_size
        size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be an int or (height, width) of positive ints. "
                             f"Received: image_size={self.image_size}")
        object.__setattr__(self, "image_size", size)
        validate_sampling(self.sampling, self.clip_frames, self.num_segments, self.frame_step)
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}. "
                             f"Received: modality={self.modality!r}")
        if self.normalize not in preprocess.NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {preprocess.NORMALIZATIONS}. "
                             f"Received: normalize={self.normalize!r}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}. "
                             f"Received: label_mode={self.label_mode!r}")
        if self.label_mode == "one_hot" and not (self.num_classes and self.num_classes > 0):
            raise ValueError("label_mode='one_hot' needs num_classes (or a dataset.json with "
                             f"labels). Received: num_classes={self.num_classes}")
        if self.augment.mixes and self.label_mode != "one_hot":
            raise ValueError("mixup/cutmix mix labels, so they need label_mode='one_hot'. "
                             f"Received: label_mode={self.label_mode!r}")
        validate.positive("flow_frames", self.flow_frames, integer=True, optional=True)
        if self.flow_frames is not None and self.modality != "rgb+flow":
            raise ValueError("flow_frames is for modality 'rgb+flow' only. "
                             f"Received: flow_frames={self.flow_frames!r}, "
                             f"modality={self.modality!r}")
        if self.flow_direction not in FLOW_DIRECTIONS:
            raise ValueError(f"flow_direction must be one of {FLOW_DIRECTIONS}. "
                             f"Received: flow_direction={self.flow_direction!r}")
        if self.flow_direction == "bidirectional" and (
                "flow" not in self.streams or self.flow_stack < 2):
            raise ValueError(
                "flow_direction='bidirectional' splits each flow stack into backward and "
                "forward halves, so it needs a flow stream whose stacks hold at least 2 flow "
                f"images. Received: modality={self.modality!r}, flow stack of "
                f"{self.flow_stack if 'flow' in self.streams else 0}")
        unknown = set(self.input_names or {}) - set(self.streams)
        if unknown:
            raise ValueError(f"input_names keys must be among {self.streams}. "
                             f"Received: {dict(self.input_names)}")

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.modality.split("+"))

    def normalization_of(self, stream: str) -> str:
        """How ``stream`` is normalized: ``normalize`` for rgb (and the frames an RGB
        difference is made of); flow always to [-1, 1]."""
        return FLOW_NORMALIZE if stream == "flow" else self.normalize

    def frames_of(self, stream: str) -> int:
        """Frames per clip of ``stream``: ``flow_frames`` for a two-stream flow, else T."""
        if stream == "flow" and self.modality == "rgb+flow" and self.flow_frames:
            return int(self.flow_frames)
        return self.clip_frames

    def images_of(self, stream: str) -> int:
        """Record images a clip of ``stream`` is made of: a pair per RGB difference."""
        return self.frames_of(stream) * (2 if stream == "rgbdiff" else 1)

    @property
    def flow_stack(self) -> int:
        """Consecutive flow images a model stacks: k per RGB frame or one window of L
        (two-stream), a segment's snippet (TSN), else the clip."""
        t, flow = self.clip_frames, self.frames_of("flow")
        if self.modality == "rgb+flow":
            return flow // t if flow % t == 0 else flow
        return t // self.num_segments if self.sampling == "segments" else t

    def backward_mask(self) -> tuple[bool, ...]:
        """For each flow image of a clip, whether it is a backward flow."""
        if self.flow_direction != "bidirectional":
            return (False,) * self.frames_of("flow")
        return backward_flow_mask(self.frames_of("flow"), self.flow_stack)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_names"] = dict(self.input_names) if self.input_names else None
        return json.loads(json.dumps(d))  # tuples -> lists, as read back

    @classmethod
    def from_json(cls, values: Mapping) -> "InputConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def evaluation(self) -> "InputConfig":
        """The same input without training augmentation (evaluation, export)."""
        return dataclasses.replace(self, augment=NO_AUGMENT)


def _as_augment(augment) -> AugmentConfig:
    if augment is None or augment is True:
        return AugmentConfig()
    if augment is False:
        return NO_AUGMENT
    if isinstance(augment, str):
        return AugmentConfig(crop=augment)
    if isinstance(augment, AugmentConfig):
        return augment
    raise ValueError("augment must be None, a bool, a crop name or an AugmentConfig. "
                     f"Received: augment={augment!r}")


def _pixels(src: tf.Tensor, channels: int, window: tf.Tensor | None = None) -> tf.Tensor:
    """[N] JPEG strings or [N, h, w, C] pixels -> [N, h', w', channels] (uint8) in ``window``."""
    if src.dtype == tf.string:
        px = preprocess.decode_jpegs(src, window)
    else:
        px = src if window is None else preprocess.crop(src, window)
    return px[..., :channels]


def sample_positions(clip: dict, cfg: InputConfig) -> tf.Tensor:
    """How many positions a clip can be sampled at: the first stream's images, less one
    for RGB difference (each position needs its successor)."""
    n = tf.shape(clip[SOURCES[cfg.streams[0]]])[0]
    return tf.maximum(n - 1, 1) if cfg.streams[0] == "rgbdiff" else n


def _sampled_frames(clip: dict, cfg: InputConfig, *, training: bool, seed, phase) -> dict:
    """Gathers the sampled frames of each stream.

    Flow i is the motion from frame i to i+1, so a clip of T frames has T-1 flow images;
    with both streams the indices are drawn over the frames and the flow of the last frame
    repeats the one before, so ``clip_frames`` may equal the stored T.
    """
    n = sample_positions(clip, cfg)
    needed = [SOURCES[s] for s in cfg.streams]
    if cfg.flow_direction == "bidirectional":
        needed.append("flow_backward")
    checks = [tf.debugging.assert_positive(
        tf.shape(clip[k])[0],
        message=f"a clip record has no {k} images for modality {cfg.modality!r} (flow needs "
                "ingest --flow, bi-directional flow also --flow-backward)") for k in needed]
    with tf.control_dependencies(checks):
        idx = temporal_indices(n, cfg.clip_frames, sampling=cfg.sampling, training=training,
                               seed=seed, num_segments=cfg.num_segments,
                               frame_step=cfg.frame_step, phase=phase,
                               max_starts=_owned_starts(clip, cfg))
    return gather_streams(clip, cfg, idx)


def gather_streams(clip: dict, cfg: InputConfig, idx: tf.Tensor) -> dict:
    """Each stream's record images for the clips at ``idx`` [..., T], clip after clip: the
    flow of a two-stream input by :func:`flow_indices` (a flow image per frame, the last
    repeating, or ``flow_frames`` centred on each clip), bi-directional flow's backward
    halves from ``clip["flow_backward"]``, and RGB difference's frame pairs (i, i + 1)."""
    out = {}
    for s in cfg.streams:
        src = clip[SOURCES[s]]
        n = tf.shape(src)[0]
        if s == "flow":
            at = flow_indices(idx, cfg.frames_of(s), n)
        elif s == "rgbdiff":
            at = tf.minimum(tf.stack([idx, idx + 1], axis=-1), n - 1)
        else:
            at = tf.minimum(idx, n - 1)
        at = tf.reshape(at, [-1])
        images = tf.gather(src, at)
        if s == "flow" and cfg.flow_direction == "bidirectional":
            mask = tf.tile(tf.constant(cfg.backward_mask()),
                           [tf.size(at) // cfg.frames_of(s)])
            images = tf.where(mask, tf.gather(clip["flow_backward"], at), images)
        out[s] = images
    return out


def stream_values(x: tf.Tensor, stream: str) -> tf.Tensor:
    """A stream's normalized images [..., images_of, H, W, C] -> the model's input: RGB
    difference takes each pair's second frame minus its first (TSN differences frames
    after normalizing them, so the mean cancels); other streams are their images."""
    if stream != "rgbdiff":
        return x
    return x[..., 1::2, :, :, :] - x[..., 0::2, :, :, :]


def _owned_starts(clip: dict, cfg: InputConfig) -> tf.Tensor | None:
    """How many clip starts a chunk of a long video owns (those before the next chunk's
    start; the last chunk owns the rest), None for a whole video or a clip window."""
    if "chunk_stride" not in clip:
        return None
    stride = tf.cast(clip["chunk_stride"], tf.int32)
    frames = tf.shape(clip["rgb" if "rgb" in clip else SOURCES[cfg.streams[0]]])[0]
    last = tf.cast(clip["offset"], tf.int32) + frames >= tf.cast(clip["video_frames"], tf.int32)
    return tf.where(tf.logical_or(stride <= 0, last), tf.int32.max - 1, stride)


def _resize_stream(x: tf.Tensor, stream: str, flip, mode: str | None, image_size,
                   fused: bool) -> tf.Tensor:
    """A uint8 crop of one stream -> float32 [T, H, W, C]: resized to ``image_size``,
    mirrored if ``flip`` (flow x negated), normalized by ``mode`` (None: left in [0, 255]).

    ``fused``: resample in kvid's native kernel (native.py): the same values as TF's ops
    (cast, resize, flip, normalize) in under half their time. A crop already at the input
    size still takes TF's ops (a flip and a cast): there they were ~5% faster.
    """
    def with_tf_ops():
        y = x
        if flip is not None:  # on the 8-bit crop: 4x less memory than after resizing
            y = tf.cond(flip, lambda: flip_left_right(y, is_flow=stream == "flow"), lambda: y)
        y = preprocess.resize_to(y, image_size)
        return preprocess.normalize(y, mode) if mode else y

    if not fused:
        return with_tf_ops()

    def with_kernel():
        channels = CHANNELS[stream]
        scale, offset = (preprocess.normalization_affine(mode, channels) if mode
                         else ([1.0] * channels, [0.0] * channels))
        scale, offset = tf.constant(scale), tf.constant(offset)
        mirror = tf.constant(False) if flip is None else flip
        if stream == "flow":  # mirrored motion: x -> 255 - x before normalizing
            # (255 - v) * s + o == v * (-s) + (255 s + o), on the x channel only.
            x_only = tf.constant([1.0] + [0.0] * (channels - 1))
            scale, offset = (tf.where(mirror, scale * (1.0 - 2.0 * x_only), scale),
                             tf.where(mirror, offset + 255.0 * scale * x_only, offset))
        window = tf.stack([0, 0, shape[1], shape[2]])
        return native.crop_resize(x, window, mirror, scale, offset, image_size)

    shape = tf.shape(x)
    same = tf.logical_and(tf.equal(shape[1], image_size[0]), tf.equal(shape[2], image_size[1]))
    return tf.cond(same, with_tf_ops, with_kernel)


def _finish(frames: dict, clip: dict, cfg: InputConfig, *, normalized: bool = False):
    """Normalizes each stream (unless done), fixes static shapes and builds (inputs, label)."""
    h, w = cfg.image_size
    out = {}
    for s, x in frames.items():
        if not normalized:
            x = preprocess.normalize(x, cfg.normalization_of(s))
        x = stream_values(x, s)
        out[s] = tf.ensure_shape(x, [*x.shape[:-4], cfg.frames_of(s), h, w, CHANNELS[s]])
    names = dict(cfg.input_names or {})
    if len(out) == 1 and not names:
        inputs = out[cfg.streams[0]]
    else:
        inputs = {names.get(s, s): x for s, x in out.items()}
    label = tf.cast(clip["label"], tf.int32)
    if cfg.label_mode == "one_hot":
        label = tf.one_hot(label, cfg.num_classes)
    return inputs, label


def preprocess_clip(clip: dict, cfg: InputConfig, *, training: bool, seed=None, phase=None):
    """One clip -> ``(inputs, label)``: temporal sampling, crop, flip, jitter, normalize.

    Args:
      clip: ``{"rgb": [N] JPEG strings or [N, h, w, 3] uint8, "flow": [N-1] (optional),
        "label": int}``.
      cfg: the model's :class:`InputConfig`.
      training: random position, ``cfg.augment`` crop, flip and jitter; else the centred
        clip (or ``phase`` in [0, 1]) and the serving center crop.
      seed: int [2] stateless seed, required in training; one draw covers the whole clip,
        so every frame (and its flow) gets the same crop and flip.
    """
    aug = cfg.augment
    if training:
        if seed is None:
            raise ValueError("training=True needs a per-clip seed tensor of shape [2].")
        seeds = tf.random.experimental.stateless_split(seed, 4)
    sampled = _sampled_frames(clip, cfg, training=training,
                              seed=seeds[0] if training else None, phase=phase)
    height, width = preprocess.frame_size(sampled[cfg.streams[0]])  # of the record's images
    flip = None
    if training:
        window = crop_window(height, width, cfg.image_size, aug, seeds[1])
        if aug.flip:
            flip = tf.random.stateless_uniform([], seeds[2]) < 0.5
    else:
        window = preprocess.center_window(height, width, cfg.image_size)
    fused = training and native.crop_resize_op() is not None
    frames = {}
    for s, x in sampled.items():
        x = _pixels(x, CHANNELS[s], window)
        jitter = training and s != "flow" and aug.color_jitter
        mode = cfg.normalization_of(s)
        x = _resize_stream(x, s, flip, None if jitter else mode, cfg.image_size, fused)
        if jitter:  # in [0, 255], then normalized
            x = preprocess.normalize(color_jitter(x, aug.color_jitter, seeds[3]), mode)
        frames[s] = x
    return _finish(frames, clip, cfg, normalized=True)


def record_to_clip(serialized: tf.Tensor, with_flow: bool = False,
                   label_table: tf.lookup.StaticHashTable | None = None,
                   with_backward: bool = False) -> dict:
    """A serialized clip record -> the clip dict of :func:`preprocess_clip` (no decoding);
    with ``label_table`` the label is the record's ``label_name`` looked up in it."""
    f = schema.parse_clip(serialized, with_flow, with_backward)
    label = f[schema.LABEL]
    if label_table is not None:
        label = label_table.lookup(f[schema.LABEL_NAME])
        check = tf.debugging.assert_non_negative(
            label, message="a record's label_name is not among the configured labels")
        with tf.control_dependencies([check]):
            label = tf.identity(label)
    clip = {"rgb": f[schema.FRAMES], "label": label, "video_id": f[schema.VIDEO_ID],
            "offset": f[schema.CLIP_START_FRAME], "video_frames": f[schema.VIDEO_FRAMES],
            "chunk_stride": f[schema.CHUNK_STRIDE]}
    if with_flow:
        clip["flow"] = f[schema.FLOW]
    if with_backward:
        clip["flow_backward"] = f[schema.FLOW_BACKWARD]
    return clip


def record_parser(cfg: InputConfig) -> Callable[[tf.Tensor], dict]:
    """The record -> clip function for ``cfg``: its streams, its label map if it has one."""
    table = None
    if cfg.labels:
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(cfg.labels)), tf.range(len(cfg.labels), dtype=tf.int64)), -1)
    with_flow = "flow" in cfg.streams
    with_backward = cfg.flow_direction == "bidirectional"
    return lambda serialized: record_to_clip(serialized, with_flow, table, with_backward)


def read_records(files: Sequence[str], compression: str, *, shuffle: bool,
                 seed: int | None, num_parallel_reads: int | None = None) -> tf.data.Dataset:
    """Interleaved, deterministic reading of record files (file order shuffled in training)."""
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    cycle = num_parallel_reads or min(len(files), 8)
    return ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=cycle, block_length=1, num_parallel_calls=min(cycle, 4),
        deterministic=True)


def _with_size(ds: tf.data.Dataset, size: int | None) -> tf.data.Dataset:
    """Declares a known element count (checked while reading) so Keras knows epoch length."""
    return ds if size is None else ds.apply(tf.data.experimental.assert_cardinality(size))


def _check_batch(batch_size: int, shuffle_buffer: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1. Received: batch_size={batch_size}")
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0. Received: shuffle_buffer={shuffle_buffer}")


def _seeds(seed: int | None) -> tf.data.Dataset:
    """An endless stream of int64 [2] stateless seeds, new each epoch, fixed by ``seed``."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


def build_pipeline(clips: tf.data.Dataset, cfg: InputConfig, *, training: bool, batch_size: int,
                   shuffle_buffer: int, seed: int | None, repeat: bool, cache: bool | str,
                   drop_remainder: bool | None = None,
                   to_clip: Callable | None = None) -> tf.data.Dataset:
    """Clips -> batches of ``(inputs, label)``: cache, shuffle, repeat, map, batch, mix.

    ``to_clip`` (e.g. record parsing) runs inside the one parallel map, after shuffling, so
    the shuffle buffer holds small serialized records and no second map stage is needed.
    """
    _check_batch(batch_size, shuffle_buffer)
    to_clip = to_clip or (lambda c: c)
    if cache:
        clips = clips.cache("" if cache is True else cache)
    if training and shuffle_buffer > 1:
        clips = clips.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        clips = clips.repeat()
    if training:
        ds = tf.data.Dataset.zip(clips, _seeds(seed)).map(
            lambda c, s: preprocess_clip(to_clip(c), cfg, training=True, seed=s),
            num_parallel_calls=AUTOTUNE)
    else:
        ds = clips.map(lambda c: preprocess_clip(to_clip(c), cfg, training=False),
                       num_parallel_calls=AUTOTUNE)
    drop = training if drop_remainder is None else drop_remainder
    ds = ds.batch(batch_size, drop_remainder=drop)
    if training and cfg.augment.mixes:
        mix_seed = None if seed is None else seed + 1
        ds = tf.data.Dataset.zip(ds, _seeds(mix_seed)).map(
            lambda xy, s: mix_batch(xy[0], xy[1], cfg.augment, s), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def _num_classes(data_dir, label_mode: str, num_classes: int | None) -> int | None:
    if num_classes is not None or label_mode != "one_hot" or not isinstance(data_dir, str):
        return num_classes
    try:
        return len(dataset.load(data_dir)["labels"])
    except FileNotFoundError:
        return None  # InputConfig then asks for num_classes explicitly


def make_config(data_dir=None, config: InputConfig | None = None, **fields) -> InputConfig:
    """Validated :class:`InputConfig` from ``config`` and/or its fields (``augment`` may also
    be a bool or a crop name); ``num_classes`` defaults to dataset.json's labels."""
    names = [f.name for f in dataclasses.fields(InputConfig)]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise TypeError(f"unknown input settings {unknown}; InputConfig has {names}")
    values = {} if config is None else {n: getattr(config, n) for n in names}
    values.update(fields)
    values["augment"] = _as_augment(values.get("augment"))
    if not values.get("labels"):
        values["num_classes"] = _num_classes(data_dir, values.get("label_mode", "sparse"),
                                             values.get("num_classes"))
    return InputConfig(**values)


def make_dataset(
    data_dir: str | Sequence[str],
    split: str | None = None,
    config: InputConfig | None = None,
    *,
    batch_size: int,
    training: bool,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    repeat: bool = False,
    cache: bool | str = False,
    drop_remainder: bool | None = None,
    num_parallel_reads: int | None = None,
    **input_settings,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(inputs, label)`` batches that ``model.fit`` takes as is.

    ``inputs`` is float32 [B, T, H, W, C] (C = 3 for rgb, 2 for flow), or a dict of both
    streams for ``modality="rgb+flow"``; ``label`` is int32 [B] or one-hot [B, K].

    Args:
      data_dir: kvid's ingest output (``<dir>/<split>/clips-*.tfrecord[.gz]``), a TFX
        Examples artifact uri (``<uri>/Split-<split>/*.gz``), or file patterns.
      split: split name; ignored for file patterns.
      config: the model's :class:`InputConfig`; ``input_settings`` (its fields, e.g.
        ``clip_frames=16, image_size=112``) give or override single values.
      training: shuffle, random temporal position and the config's augmentation; else
        deterministic order, centred clip, center crop, and a final partial batch.
      seed: makes order and augmentation reproducible (parallelism does not change them).
      repeat: repeat forever (then pass ``steps_per_epoch`` to fit).
      cache: cache the records in memory (True) or in this file, before any random op.
    """
    cfg = make_config(data_dir, config, **input_settings)
    _check_batch(batch_size, shuffle_buffer)
    files, compression = resolve_files(data_dir, split)
    records = read_records(files, compression, shuffle=training, seed=seed,
                           num_parallel_reads=num_parallel_reads)
    records = _with_size(records, split_size(data_dir, split))
    return build_pipeline(records, cfg, training=training, batch_size=batch_size,
                          shuffle_buffer=shuffle_buffer, seed=seed, repeat=repeat, cache=cache,
                          drop_remainder=drop_remainder, to_clip=record_parser(cfg))


# --- multi-view evaluation -------------------------------------------------------------------


TEN_CROP_SCALE = 0.875  # TSN's 224 of 256: ten-crop windows are this much of the cover crop


def spatial_crops(frames: tf.Tensor, image_size: tuple[int, int], num_crops: int, *,
                  is_flow: bool = False) -> tf.Tensor:
    """[T, h, w, C] -> [M, T, H, W, C]: M crops of the frames.

    M windows of the center crop's size along the long side (one is exactly the serving
    center crop; three are SlowFast/X3D's left/center/right), or for M = 10 TSN's ten
    crops: 4 corners and the center at :data:`TEN_CROP_SCALE` of that size, each also
    mirrored (8-bit flow's x negated with it).
    """
    shape = tf.shape(frames)
    h, w = shape[1], shape[2]
    ch, cw = preprocess.cover_window(h, w, image_size)
    if num_crops == 10:
        ch = tf.cast(tf.cast(ch, tf.float32) * TEN_CROP_SCALE, tf.int32)
        cw = tf.cast(tf.cast(cw, tf.float32) * TEN_CROP_SCALE, tf.int32)
        places = [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5)]
        crops = [preprocess.resize_to(preprocess.crop(
            frames, preprocess.place_window(h, w, ch, cw, fy, fx)), image_size)
            for fy, fx in places]
        return tf.stack(crops + [flip_left_right(c, is_flow=is_flow) for c in crops])
    along_y = h - ch > w - cw
    crops = []
    for i in range(num_crops):
        f = 0.5 if num_crops == 1 else i / (num_crops - 1)
        window = preprocess.place_window(h, w, ch, cw, tf.where(along_y, f, 0.5),
                                         tf.where(along_y, 0.5, f))
        crops.append(preprocess.resize_to(preprocess.crop(frames, window), image_size))
    return tf.stack(crops)


def view_phases(num_clips: int) -> list[float]:
    """Temporal positions of N evaluation clips, evenly spread from the start to the end."""
    return [0.5] if num_clips == 1 else [i / (num_clips - 1) for i in range(num_clips)]


def _view_starts(clip: dict, cfg: InputConfig, num_clips: int) -> tf.Tensor:
    """int32 [V] record-relative starts of the dense views a record gives: N clips evenly
    spaced over the whole video (``video_frames``), each taken by the chunk that owns its
    start, so a video gives N views whether it is one record or several. A clip window (or
    a decoded video file) gives N over its own frames."""
    n = sample_positions(clip, cfg)
    span = clip_span(cfg.clip_frames, cfg.frame_step)
    phases = tf.constant(view_phases(num_clips))

    def evenly(length):
        return dense_starts(length, span, phases)

    owned = _owned_starts(clip, cfg)
    if owned is None:
        return evenly(n)
    video = tf.cast(clip["video_frames"], tf.int32)
    offset = tf.where(video > 0, tf.cast(clip["offset"], tf.int32), 0)
    starts = evenly(tf.where(video > 0, video, n)) - offset
    return tf.boolean_mask(starts, tf.logical_and(starts >= 0, starts < owned))


def _view_crops(x, stream: str, cfg: InputConfig, num_crops: int, window_src) -> tf.Tensor:
    """[V*T] frames of one stream -> [M, V*T, H, W, C] crops (the serving center crop for
    M = 1), the crop window placed on ``window_src``'s frame size."""
    c, (h, w) = CHANNELS[stream], cfg.image_size
    if num_crops > 1:
        return spatial_crops(_pixels(x, c), cfg.image_size, num_crops,
                             is_flow=stream == "flow")
    window = preprocess.center_window(*preprocess.frame_size(window_src), cfg.image_size)
    return preprocess.resize_to(_pixels(x, c, window), (h, w))[None]


def clip_views(clip: dict, cfg: InputConfig, num_clips: int, num_crops: int):
    """One record -> (inputs [V*M, T, H, W, C], labels [V*M], video_ids [V*M]), clip-major.

    Dense sampling takes V = N clips evenly spaced over the whole video (split among the
    chunks of a chunked one: N in all); uniform and segments sampling take N phases of the
    record's own frames.
    """
    t, m = cfg.clip_frames, num_crops
    h, w = cfg.image_size
    if cfg.sampling == "dense":
        starts = _view_starts(clip, cfg, num_clips)
        n = sample_positions(clip, cfg)
        idx = tf.math.floormod(starts[:, None] + tf.range(t) * cfg.frame_step,
                               tf.maximum(n, 1))
        sampled = gather_streams(clip, cfg, idx)  # [V*T] per stream
        views = tf.shape(starts)[0]
    else:
        parts = [_sampled_frames(clip, cfg, training=False, seed=None, phase=p)
                 for p in view_phases(num_clips)]
        sampled = {s: tf.concat([p[s] for p in parts], axis=0) for s in cfg.streams}
        views = tf.constant(num_clips)
    frames = {}
    for s, x in sampled.items():
        c, ts = CHANNELS[s], cfg.images_of(s)
        y = tf.cond(views > 0,
                    lambda x=x, s=s: tf.cast(_view_crops(x, s, cfg, m, clip[SOURCES[s]][:1]),
                                             tf.float32),
                    lambda c=c: tf.zeros([m, 0, h, w, c]))
        y = tf.reshape(y, [m, views, ts, h, w, c])
        frames[s] = tf.reshape(tf.transpose(y, [1, 0, 2, 3, 4, 5]), [views * m, ts, h, w, c])
    inputs, label = _finish(frames, clip, cfg)
    count = views * m
    labels = tf.repeat(label[None], count, axis=0)
    return inputs, labels, tf.fill([count], clip["video_id"])


def make_eval_views(
    data_dir: str | Sequence[str],
    split: str | None = None,
    config: InputConfig | None = None,
    *,
    num_clips: int = 10,
    num_crops: int = 3,
    batch_size: int = 30,
    **input_settings,
) -> tf.data.Dataset:
    """Batches of ``(inputs, label, video_id)``: N temporal clips x M spatial crops per record.

    Each record gives ``num_clips`` clips evenly spaced in time, each cut into ``num_crops``
    crops; average the scores per video with :func:`average_video_scores` (or
    :func:`predict_video_scores`) for the multi-view accuracy of the C3D/I3D papers.
    ``config`` / ``input_settings`` as in :func:`make_dataset` (augmentation is ignored).
    """
    for name, value in (("num_clips", num_clips), ("num_crops", num_crops)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1. Received: {name}={value}")
    cfg = make_config(data_dir, config, **input_settings).evaluation()
    _check_batch(batch_size, 0)
    files, compression = resolve_files(data_dir, split)
    parse = record_parser(cfg)
    ds = read_records(files, compression, shuffle=False, seed=None).map(
        lambda r: clip_views(parse(r), cfg, num_clips, num_crops),
        num_parallel_calls=AUTOTUNE)
    # Dense views of whole-video records: N per video however many chunks it has.
    per_video = cfg.sampling == "dense" and layout_of(data_dir) == "video"
    size = split_size(data_dir, split, "videos" if per_video else "clips")
    ds = _with_size(ds.unbatch(), size and size * num_clips * num_crops)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def average_video_scores(video_ids, scores) -> tuple[np.ndarray, np.ndarray]:
    """Mean score per video over all its views -> (ids in first-seen order, [V, C] means)."""
    ids = np.asarray(video_ids)
    scores = np.asarray(scores, dtype=np.float64)
    if ids.ndim != 1 or scores.ndim != 2 or len(ids) != len(scores):
        raise ValueError("video_ids must be [N] and scores [N, C] with the same N. "
                         f"Received: shapes {ids.shape} and {scores.shape}")
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    sums = np.zeros((len(uniq), scores.shape[1]))
    np.add.at(sums, inverse, scores)
    counts = np.bincount(inverse, minlength=len(uniq))[:, None]
    return uniq[order], (sums / counts)[order].astype(np.float32)


def predict_video_scores(model: Callable, views: tf.data.Dataset):
    """Runs ``model`` over :func:`make_eval_views` batches -> (video_ids, mean scores, labels)."""
    ids, scores, labels = [], [], []
    for inputs, label, video_id in views:
        scores.append(np.asarray(model(inputs, training=False)))
        labels.append(label.numpy())
        ids.append(video_id.numpy())
    ids, scores, labels = np.concatenate(ids), np.concatenate(scores), np.concatenate(labels)
    video_ids, mean_scores = average_video_scores(ids, scores)
    first = {v: labels[i] for i, v in reversed(list(enumerate(ids)))}
    return video_ids, mean_scores, np.stack([first[v] for v in video_ids])
