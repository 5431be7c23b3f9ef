"""Fixtures for ingest tests: tiny real videos made at test time."""

import json
import os

import pytest

from kvid.synth import SynthConfig, generate

SYNTH = SynthConfig(num_classes=3, videos_per_class=6, frames=16, size=64, actors=6)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """3 classes x 6 videos (one per actor) of 16 frames, 64x64, 25 fps: root/<label>/*.mp4."""
    root = str(tmp_path_factory.mktemp("synth"))
    generate(root, SYNTH)
    return root


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _shard_records(out_dir, dataset, split):
    import tensorflow as tf

    paths = [os.path.join(out_dir, p) for p in dataset["shards"][split]]
    return [r.numpy() for r in tf.data.TFRecordDataset(
        paths, compression_type=dataset["compression"] or None)]


@pytest.fixture
def read_jsonl():
    """read_jsonl(path) -> list of dicts."""
    return _read_jsonl


@pytest.fixture
def shard_records():
    """shard_records(out_dir, dataset, split) -> every serialized record of a split (tf.data)."""
    return _shard_records
