"""``dataset.json``: what a folder of clip records holds, in one place.

Written by ``kvid ingest`` and by the TFX ``VideoExampleGen`` (:func:`describe` builds the
fields both share, :func:`save` writes them), read by tf.data and the trainer
(:func:`load`). Its writers run inside Beam and write with Beam's FileSystems (no
TensorFlow import in an ingest worker); its readers already hold TensorFlow and read with
``tf.io.gfile`` (importing Beam there would cost seconds per ``kvid train``).
"""

from __future__ import annotations

import json
import os

FILE = "dataset.json"


def path(data_dir: str) -> str:
    return os.path.join(data_dir, FILE)


def describe(*, labels, config, splits: dict, shards: dict, accounting: dict,
             compression: str, params: dict | None = None, **extra) -> dict:
    """The fields every ``dataset.json`` has: labels, per-split counts, the stored clip
    layout (from the ``IngestConfig``), shard paths relative to the folder, the input
    accounting (``inputs = processed + dead letters + skipped``) and the ingest params."""
    return {
        "labels": list(labels),
        "splits": splits,
        "layout": config.layout,  # "video": whole videos (or chunks), sampled at read time
        "clip_frames": config.frames_per_clip,  # None for layout "video"
        "fps": config.fps,
        "image_size": list(config.size) if config.size else None,
        "short_side": config.short_side,
        "compression": compression,
        "flow": config.flow,
        "flow_backward": config.flow_backward,
        "shards": shards,
        **accounting,
        "params": {**config.to_json(), **(params or {})},
        **extra,
    }


def dumps(info: dict) -> str:
    return json.dumps(info, indent=2) + "\n"


def save(info: dict, directory: str) -> str:
    """Writes ``directory/dataset.json`` and returns its path."""
    from kvid import files

    target = path(directory)
    files.write_text(target, dumps(info), mime_type="application/json")
    return target


def _gfile_exists(target: str) -> bool:
    """tf.io.gfile.exists, with a way out where TensorFlow cannot read the scheme."""
    import tensorflow as tf

    try:
        return tf.io.gfile.exists(target)
    except tf.errors.UnimplementedError:
        scheme = target.split("://")[0]
        folder = os.path.dirname(target)
        raise ValueError(f"TensorFlow here has no {scheme}:// filesystem (gs:// it has); "
                         f"copy the dataset first: kvid copy {folder} LOCAL_DIR") from None


def exists(data_dir: str) -> bool:
    return _gfile_exists(path(data_dir))


def load(data_dir: str) -> dict:
    """The folder's ``dataset.json`` (labels, splits, clip_frames, fps, image_size, shards)."""
    import tensorflow as tf

    source = path(data_dir)
    if not _gfile_exists(source):
        raise FileNotFoundError(
            f"No {FILE} in {data_dir!r}: expected the output of `kvid ingest`.")
    with tf.io.gfile.GFile(source) as f:
        info = json.load(f)
    if not isinstance(info, dict) or not isinstance(info.get("labels"), list):
        raise ValueError(f"{source} has no 'labels' list. Received keys: "
                         f"{sorted(info) if isinstance(info, dict) else type(info).__name__}")
    return info
