"""Imported before any test module: kvid sets TensorFlow's CPU options (oneDNN) before
TensorFlow loads, as the console script and the pipeline file do (kvid/__init__.py)."""

import kvid  # noqa: F401

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes x 6 videos of 16 frames -> clips of 4 frames at 32x32 (Beam ingest)."""
    from kvid.ingest import IngestConfig, run_ingest
    from kvid.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("tiny")
    videos, data = str(root / "videos"), str(root / "data")
    generate(videos, SynthConfig(num_classes=3, videos_per_class=6, frames=16, size=48))
    info = run_ingest(videos, data, IngestConfig(clip_frames=4, size=(32, 32)))
    return {"videos": videos, "data": data, "info": info}


@pytest.fixture(scope="session")
def movinet_stream_run(tiny_data, tmp_path_factory):
    """movinet_a0_stream trained from the CLI on tiny_data (its run folder): 60 steps, so
    that its last weights are confident on clips (the batch norms' moving statistics have
    converged at the tiny preset's momentum) and a quantized copy has margins to keep."""
    from kvid.cli import main

    run = str(tmp_path_factory.mktemp("movinet") / "run")
    assert main(["train", "--data", tiny_data["data"], "--output", run, "--model",
                 "movinet_a0_stream", "--preset", "tiny", "--epochs", "10", "--batch-size",
                 "8", "--no-flip"]) == 0
    return run
