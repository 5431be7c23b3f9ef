"""Where the clip records of a split are: kvid's shard layout, a TFX artifact, or file patterns.

Three layouts hold the same records (kvid/schema.py), so the reader resolves them to one
list of files plus a compression type and never needs to know which stage wrote them:

- kvid ingest: ``<data_dir>/dataset.json`` and ``<data_dir>/<split>/clips-*.tfrecord[.gz]``
- a TFX Examples artifact: ``<uri>/Split-<split>/*.gz`` (always gzip)
- a list of file patterns (or one pattern containing a wildcard)
"""

from __future__ import annotations

import os
from typing import Sequence

import tensorflow as tf

from kvid import dataset

TFX_SPLIT_PREFIX = "Split-"
_GLOB_CHARS = "*?["


def compression_of(path: str) -> str:
    """TFRecord compression from the file name: ingest and TFX name gzip files ``*.gz``."""
    return "GZIP" if path.endswith(".gz") else ""


def _glob(patterns: Sequence[str]) -> list[str]:
    files = []
    for pattern in patterns:
        if any(c in pattern for c in _GLOB_CHARS):
            files.extend(sorted(tf.io.gfile.glob(pattern)))
        elif tf.io.gfile.exists(pattern):
            files.append(pattern)
    return files


def _split_files(data_dir: str, split: str) -> list[str]:
    tfx_dir = os.path.join(data_dir, f"{TFX_SPLIT_PREFIX}{split}")
    if tf.io.gfile.isdir(tfx_dir):
        return _glob([os.path.join(tfx_dir, "*")])
    if dataset.exists(data_dir):
        shards = dataset.load(data_dir).get("shards", {}).get(split)
        if shards:
            return [os.path.join(data_dir, s) for s in shards]
    return _glob([os.path.join(data_dir, split, "*.tfrecord"),
                  os.path.join(data_dir, split, "*.tfrecord.gz")])


def _available_splits(data_dir: str) -> list[str]:
    if not tf.io.gfile.isdir(data_dir):
        return []
    names = tf.io.gfile.listdir(data_dir)
    return sorted(n.rstrip("/").removeprefix(TFX_SPLIT_PREFIX) for n in names
                  if tf.io.gfile.isdir(os.path.join(data_dir, n)))


def resolve_files(data_dir: str | Sequence[str], split: str | None) -> tuple[list[str], str]:
    """-> (sorted record files, compression type) of ``split`` in any of the three layouts."""
    if isinstance(data_dir, (list, tuple)) or any(c in data_dir for c in _GLOB_CHARS):
        patterns = [data_dir] if isinstance(data_dir, str) else list(data_dir)
        files = _glob(patterns)
        if not files:
            raise FileNotFoundError(f"No files match {patterns}.")
    else:
        if not split:
            raise ValueError(f"split is required when data_dir is a directory. "
                             f"Received: data_dir={data_dir!r}, split={split!r}")
        files = _split_files(data_dir, split)
        if not files:
            raise FileNotFoundError(
                f"No clip records for split {split!r} in {data_dir!r}. "
                f"Splits found there: {_available_splits(data_dir)}")
    kinds = {compression_of(f) for f in files}
    if len(kinds) > 1:
        raise ValueError(f"Files mix gzip and uncompressed records: {files[:4]}...")
    return files, kinds.pop()


def split_size(data_dir, split: str | None, unit: str = "clips") -> int | None:
    """Records (``unit="clips"``: ``splits.<split>.num_clips``) or videos (``"videos"``)
    in ``split`` per dataset.json, or None if unknown.

    Knowing it lets tf.data report a finite cardinality, so Keras shows epoch progress and
    does not warn that the input "ran out of data" at the end of each epoch.
    """
    if not isinstance(data_dir, str) or not split or \
            not dataset.exists(data_dir) or \
            tf.io.gfile.isdir(os.path.join(data_dir, f"{TFX_SPLIT_PREFIX}{split}")):
        return None
    entry = dataset.load(data_dir).get("splits", {})
    entry = entry.get(split) if isinstance(entry, dict) else None
    n = entry.get(f"num_{unit}") if isinstance(entry, dict) else None
    return int(n) if n is not None else None


def layout_of(data_dir) -> str:
    """``"video"`` for whole-video records, else ``"clips"`` (also when unknown)."""
    if isinstance(data_dir, str) and dataset.exists(data_dir):
        return dataset.load(data_dir).get("layout") or "clips"
    return "clips"
