"""Shared fixtures: toy SavedModels written once per session and one running server."""

from __future__ import annotations

import os

import pytest
from serving_fixtures import MODEL, push

from kvid.serving.testing import write_toy_model


@pytest.fixture(scope="session")
def toy_versions(tmp_path_factory):
    """{version: path} of toy models 1 and 2, to copy into served base paths."""
    src = tmp_path_factory.mktemp("toy_models")
    return {v: write_toy_model(str(src), v) for v in (1, 2)}


@pytest.fixture(scope="session")
def server(toy_versions, tmp_path_factory):
    """``kvid serve`` on free loopback ports, serving version 1 of model ``kvid``."""
    from kvid.serving.server import start_server

    base = str(tmp_path_factory.mktemp("served") / MODEL)
    os.makedirs(base)
    push(toy_versions, base, 1)
    srv = start_server(base, MODEL, poll_seconds=0, max_body_bytes=1 << 20)
    yield srv
    srv.stop()
