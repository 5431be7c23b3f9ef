"""Clips straight from video files, for notebook experiments without running ingest.

Videos are decoded with kvid.video (PyAV by timestamps, cv2 resize), the same code ingest
uses, and then go through the very same :func:`preprocess_clip` as shards, so a model
trained this way sees what it would see from ingested shards. Each video is one clip: the
temporal sampling picks ``clip_frames`` from the whole video.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from kvid.data.pipeline import InputConfig, build_pipeline, make_config
from kvid.video import iter_frames, resize_frame

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


def list_videos(root: str) -> tuple[list[str], list[int], list[str]]:
    """``<root>/<label>/<video>`` -> (paths, label indices, sorted label names)."""
    if not os.path.isdir(root):
        raise ValueError(f"Expected a directory of <label>/<video> files. Received: {root!r}")
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    paths, labels = [], []
    for k, name in enumerate(names):
        for f in sorted(os.listdir(os.path.join(root, name))):
            if f.lower().endswith(VIDEO_EXTENSIONS):
                paths.append(os.path.join(root, name, f))
                labels.append(k)
    if not paths:
        raise ValueError(f"No videos ({', '.join(VIDEO_EXTENSIONS)}) under {root!r}/<label>/.")
    return paths, labels, names


def load_video(path: str, *, fps: float | None = None, short_side: int | None = None,
               max_seconds: float | None = None) -> np.ndarray:
    """All frames of a video as uint8 [N, h, w, 3], resampled to ``fps`` and resized."""
    frames = [resize_frame(f.rgb, short_side=short_side)
              for f in iter_frames(path, fps=fps, end_sec=max_seconds)]
    return np.stack(frames)


def dataset_from_videos(
    videos: str | Sequence[str],
    labels: Sequence[int] | Sequence[str] | None = None,
    config: InputConfig | None = None,
    *,
    batch_size: int,
    training: bool,
    fps: float | None = None,
    short_side: int | None = None,
    max_seconds: float | None = None,
    shuffle_buffer: int = 256,
    seed: int | None = None,
    repeat: bool = False,
    cache: bool | str = False,
    num_parallel_calls: int = 2,
    **input_settings,
) -> tf.data.Dataset:
    """Batches of ``(inputs, label)`` like :func:`kvid.data.make_dataset`, from video files.

    Args:
      videos: a ``<root>/<label>/<video>`` directory (labels from folder names), or a list
        of paths with ``labels`` (indices, or names). Names map to indices through the
        config's ``labels`` when it has them, else through their sorted order.
      config / input_settings: the :class:`InputConfig` (or its fields), as for make_dataset.
      fps, short_side, max_seconds: decoding as ingest does it: resample to ``fps``, scale
        the short side (default: the larger of ``image_size``), stop after ``max_seconds``.
      cache: keep decoded videos in memory (True) or a file, so later epochs skip decoding.
      num_parallel_calls: videos decoded at once (one PyAV thread each).
    Only rgb: flow needs ingest, which computes it once.
    """
    settings = dict(input_settings)

    def setting(name, default=None):
        return settings.get(name, getattr(config, name) if config is not None else default)

    given = setting("labels")
    if isinstance(videos, str):
        if labels is not None:
            raise ValueError("labels come from folder names when videos is a directory. "
                             "Pass a list of paths to give labels explicitly.")
        paths, _, folder_names = list_videos(videos)
        labels = [os.path.basename(os.path.dirname(p)) for p in paths]
        names = list(given or folder_names)
    else:
        paths = [str(p) for p in videos]
        if labels is None or len(labels) != len(paths):
            got = None if labels is None else len(labels)
            raise ValueError("A list of videos needs one label per video. "
                             f"Received: {len(paths)} videos, {got} labels")
        names = list(given or sorted({v for v in labels if isinstance(v, str)}))
    if all(isinstance(v, str) for v in labels):
        missing = sorted(set(labels) - set(names))
        if missing:
            raise ValueError(f"labels {missing} are not among the configured labels {names}")
        label_ids = [names.index(v) for v in labels]
    else:
        label_ids = [int(v) for v in labels]
    if setting("label_mode", "sparse") == "one_hot" and setting("num_classes") is None:
        settings["num_classes"] = len(names) if names else max(label_ids) + 1
    cfg = make_config(None, config, **settings)
    if num_parallel_calls < 1:
        raise ValueError(f"num_parallel_calls must be >= 1. Received: {num_parallel_calls}")
    short = short_side or max(cfg.image_size)

    def load(path):
        return load_video(path.decode(), fps=fps, short_side=short, max_seconds=max_seconds)

    def to_clip(path, label):
        frames = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        return {"rgb": tf.ensure_shape(frames, [None, None, None, 3]),
                "label": label, "video_id": path}

    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(label_ids, tf.int64)))
    if training:  # shuffle paths, not decoded videos, which would fill memory
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(to_clip, num_parallel_calls=num_parallel_calls, deterministic=True)
    return build_pipeline(ds, cfg, training=training, batch_size=batch_size,
                          shuffle_buffer=min(shuffle_buffer, len(paths)) if cache else 0,
                          seed=seed, repeat=repeat, cache=cache)

