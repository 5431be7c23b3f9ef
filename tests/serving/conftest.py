"""Shared fixtures: toy SavedModels written once per session and one running server."""

from __future__ import annotations

import os

import pytest
import numpy as np
from serving_fixtures import MODEL, STREAM_LABELS, push

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


@pytest.fixture(scope="session")
def stream_base(tmp_path_factory):
    """A movinet_a0_stream export (random weights, sharpened so that frames move the
    scores) at <base>/stream/1 (labels STREAM_LABELS, served at 10 fps)."""
    import keras

    from kvid.models import build_model
    from kvid.train.export import export_saved_model

    keras.utils.set_random_seed(0)
    model = build_model("movinet_a0_stream", (4, 32, 32, 3), len(STREAM_LABELS), preset="tiny")
    for w in model.weights:
        if "scale" in w.path:
            w.assign(np.full(w.shape, 0.7, np.float32))
        if w.path.startswith("classifier_head__classifier") and "kernel" in w.path:
            w.assign(w.numpy() * 50)  # confident enough for the scores to move
    base = tmp_path_factory.mktemp("streams")
    export_saved_model(model, str(base / "stream" / "1"), labels=STREAM_LABELS, clip_frames=4,
                       image_size=(32, 32), normalization="unit",
                       extra_metadata={"fps": 10.0})
    return base


@pytest.fixture(scope="session")
def frames():
    from kvid.video.frames import encode_jpeg

    rng = np.random.default_rng(3)
    return [encode_jpeg(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(6)]
