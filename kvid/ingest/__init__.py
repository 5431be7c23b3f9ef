"""Ingest: manifests of raw videos -> Beam -> TFRecord clip shards, dataset.json, dead letters.

Names are imported lazily so that reading a manifest or building the CLI parser does not
import TensorFlow and Beam (seconds); the pipeline pieces load on first use.
"""

import importlib

_EXPORTS = {
    "IngestConfig": "kvid.ingest.config",
    "Manifest": "kvid.ingest.manifests",
    "VideoItem": "kvid.ingest.manifests",
    "assign_splits": "kvid.ingest.manifests",
    "carve_split": "kvid.ingest.manifests",
    "dead_letter": "kvid.ingest.manifests",
    "group_from_name": "kvid.ingest.manifests",
    "read_csv": "kvid.ingest.manifests",
    "read_folder": "kvid.ingest.manifests",
    "read_hmdb51": "kvid.ingest.manifests",
    "read_kinetics": "kvid.ingest.manifests",
    "read_ntu": "kvid.ingest.manifests",
    "read_ucf101": "kvid.ingest.manifests",
    "run_ingest": "kvid.ingest.runner",
    "VideosToClips": "kvid.ingest.transforms",
    "ManifestToClips": "kvid.ingest.transforms",
    "WriteDeadLetters": "kvid.ingest.transforms",
    "video_to_clips": "kvid.ingest.clips",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kvid.ingest' has no attribute {name!r}")
