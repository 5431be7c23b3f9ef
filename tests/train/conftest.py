"""A tiny real dataset and a trained run, made once per session for train/export/evaluate."""

import pytest

from kvid.synth import SynthConfig, generate

TINY_MODEL = {"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """3 classes x 6 videos of 16 frames -> clips of 4 frames at 32x32 (Beam ingest)."""
    from kvid.ingest import IngestConfig, run_ingest

    root = tmp_path_factory.mktemp("tiny")
    videos, data = str(root / "videos"), str(root / "data")
    generate(videos, SynthConfig(num_classes=3, videos_per_class=6, frames=16, size=48))
    info = run_ingest(videos, data, IngestConfig(clip_frames=4, size=(32, 32)))
    return {"videos": videos, "data": data, "info": info}


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """A cnn_gru trained for one epoch by kvid.train (the same code as `kvid train`)."""
    from kvid.train.trainer import TrainConfig, train

    out = str(tmp_path_factory.mktemp("run") / "run")
    result = train(TrainConfig(data_dir=tiny_data["data"], output_dir=out, model="cnn_gru",
                               model_kwargs=TINY_MODEL, epochs=1, batch_size=4, verbose=0))
    return {"dir": out, "result": result, **tiny_data}
