"""A trained run, made once per session for train/export/evaluate (data: tests/conftest.py)."""

import pytest

TINY_MODEL = {"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0}


@pytest.fixture(scope="session")
def trained_run(tiny_data, tmp_path_factory):
    """A cnn_gru trained for one epoch by kvid.train (the same code as `kvid train`)."""
    from kvid.train.trainer import TrainConfig, train

    out = str(tmp_path_factory.mktemp("run") / "run")
    result = train(TrainConfig(data_dir=tiny_data["data"], output_dir=out, model="cnn_gru",
                               model_kwargs=TINY_MODEL, epochs=1, batch_size=4, verbose=0))
    return {"dir": out, "result": result, **tiny_data}
