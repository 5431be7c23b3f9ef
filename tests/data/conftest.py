"""Session fixtures: clip shards with known content (see data_fixtures)."""

import pytest

from data_fixtures import make_clip, write_shards


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory):
    """Six 12-frame clips (two videos of each of 3 classes) with flow, train and test splits."""
    root = str(tmp_path_factory.mktemp("clips"))
    clips = [make_clip(k % 3, f"vid{k}", flow=True) for k in range(6)]
    write_shards(root, "train", clips)
    write_shards(root, "test", clips[:3], shards=1)
    return root

