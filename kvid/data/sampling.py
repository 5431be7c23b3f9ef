"""In-graph temporal sampling: which of a stored clip's frames a model sees.

Indices are computed before any JPEG is decoded, so only the sampled frames are decoded.
Training draws positions with stateless ops from a per-clip seed (deterministic with a
seed, independent of map parallelism); evaluation takes fixed, centred positions.
"""

from __future__ import annotations

import tensorflow as tf

from kvid.video.sampling import clip_span

SAMPLINGS = ("dense", "uniform", "segments")


def validate_sampling(sampling: str, clip_frames: int, num_segments: int, frame_step: int):
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}. Received: sampling={sampling!r}")
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1. Received: clip_frames={clip_frames}")
    if frame_step < 1:
        raise ValueError(f"frame_step must be >= 1. Received: frame_step={frame_step}")
    if sampling == "segments" and (num_segments < 1 or clip_frames % num_segments):
        raise ValueError(
            "sampling='segments' takes clip_frames // num_segments frames (a snippet) from each "
            "segment, so clip_frames must be a positive multiple of num_segments. "
            f"Received: clip_frames={clip_frames}, num_segments={num_segments}")


def temporal_indices(
    num_frames: tf.Tensor,
    clip_frames: int,
    *,
    sampling: str = "dense",
    training: bool,
    seed: tf.Tensor | None = None,
    num_segments: int = 3,
    frame_step: int = 1,
    phase: float | tf.Tensor | None = None,
    max_starts: tf.Tensor | None = None,
) -> tf.Tensor:
    """int32 [clip_frames] indices into a clip of ``num_frames`` frames.

    In evaluation ``phase`` in [0, 1] (default 0.5, the centre) places the frames inside
    their free range: 0 the earliest, 1 the latest position; multi-clip views use it.
    ``max_starts``: dense training draws its start among the first ``max_starts`` positions
    only (a chunk of a long video owns the starts before the next chunk's).

    - ``dense``: ``clip_frames`` frames ``frame_step`` apart; random start in training.
      Shorter clips are looped, as ingest's ``short_policy="loop"`` does.
    - ``uniform``: ``clip_frames`` frames evenly spread over the whole clip (stride
      num_frames / clip_frames); training shifts them all by one random phase.
    - ``segments`` (TSN): ``num_segments`` equal segments, a snippet of
      ``clip_frames // num_segments`` consecutive frames from each, at an independent random
      position in training (as kvid.video.segment_indices at phase 0.5).
    """
    validate_sampling(sampling, clip_frames, num_segments, frame_step)
    if training and seed is None:
        raise ValueError("training sampling needs a seed tensor (shape [2]).")
    phase = tf.constant(0.5) if phase is None else tf.cast(phase, tf.float32)
    n = tf.cast(num_frames, tf.int32)
    nf = tf.cast(n, tf.float32)
    if sampling == "dense":
        span = clip_span(clip_frames, frame_step)
        free = tf.maximum(n - span, 0)
        if training:
            limit = free + 1 if max_starts is None else \
                tf.clip_by_value(tf.cast(max_starts, tf.int32), 1, free + 1)
            start = tf.random.stateless_uniform([], seed, 0, limit, dtype=tf.int32)
        else:
            start = dense_starts(n, span, phase)
        idx = start + tf.range(clip_frames, dtype=tf.int32) * frame_step
        return tf.math.floormod(idx, tf.maximum(n, 1))
    if sampling == "uniform":
        stride = nf / clip_frames
        if training:
            phase = tf.random.stateless_uniform([], seed)
        pos = (phase + tf.range(clip_frames, dtype=tf.float32)) * stride
        return tf.minimum(tf.cast(tf.floor(pos), tf.int32), n - 1)
    snippet = clip_frames // num_segments
    seg = nf / num_segments
    k = tf.range(num_segments, dtype=tf.float32)
    if training:
        room = tf.maximum(tf.floor(seg) - snippet, 0.0) + 1.0
        u = tf.random.stateless_uniform([num_segments], seed)
        starts = tf.floor(k * seg) + tf.minimum(tf.floor(u * room), room - 1.0)
    else:
        starts = tf.floor(k * seg + phase * tf.maximum(0.0, seg - snippet))
    idx = tf.cast(starts, tf.int32)[:, None] + tf.range(snippet, dtype=tf.int32)[None, :]
    return tf.minimum(tf.reshape(idx, [clip_frames]), n - 1)


def dense_starts(num_frames, span: int, phases) -> tf.Tensor:
    """int32 starts of evaluation clips spanning ``span`` frames at ``phases`` in [0, 1] of
    the free range of a clip of ``num_frames`` (0: first, 1: last position; 0.5: centred)."""
    free = tf.cast(tf.maximum(tf.cast(num_frames, tf.int32) - span, 0), tf.float32)
    return tf.cast(tf.floor(free * tf.cast(phases, tf.float32) + 1e-4), tf.int32)


def flow_indices(idx: tf.Tensor, flow_frames: int, num_flow: tf.Tensor) -> tf.Tensor:
    """int32 [..., flow_frames] flow images shown with RGB clips ``idx`` [..., T]
    (kvid.video.sampling.flow_positions is the client's twin): for L = k x T, k consecutive
    flow images around each frame (k = 1: the flow at each frame; Feichtenhofer: a stack of
    L per RGB frame), else one window of L centred on the clip's middle frame."""
    last = tf.maximum(tf.cast(num_flow, tf.int32) - 1, 0)
    t = idx.shape[-1]
    if flow_frames % t == 0:
        k = flow_frames // t
        at = idx[..., None] - k // 2 + tf.range(k, dtype=tf.int32)
        at = tf.reshape(at, tf.concat([tf.shape(idx)[:-1], [flow_frames]], axis=0))
        at.set_shape(idx.shape[:-1].concatenate([flow_frames]))
        return tf.clip_by_value(at, 0, last)
    start = idx[..., t // 2: t // 2 + 1] - flow_frames // 2
    return tf.clip_by_value(start + tf.range(flow_frames, dtype=tf.int32), 0, last)
