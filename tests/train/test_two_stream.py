"""Two-stream models from the CLI to the server: kvid train --modality rgb+flow with each
stream's own extent (1 RGB frame and 4 flow images centred on it, Simonyan & Zisserman's
1 + L), evaluation, an export taking ``frames`` and ``flow``, and kvid predict."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.cli import main
from kvid.data import make_dataset, resolve_files

MODEL_ARGS = '{"small_cnn_widths": [8, 16], "dropout": 0.0, "input_normalization": "unit"}'


@pytest.fixture(scope="module")
def flow_videos(tiny_data, tmp_path_factory):
    """The tiny videos as whole-video records (8 frames at 12.5 fps) with Farneback flow."""
    from kvid.ingest import IngestConfig, run_ingest

    data = str(tmp_path_factory.mktemp("two_stream") / "data")
    info = run_ingest(tiny_data["videos"], data, IngestConfig(
        size=(32, 32), flow="farneback", fps=12.5, layout="video"))
    return {"data": data, "info": info, "videos": tiny_data["videos"]}


def test_two_stream_trains_exports_and_predicts(flow_videos, tiny_data, tmp_path, capsys):
    from kvid.serving.server import start_server
    from kvid.train.runs import load_run
    from kvid.video.sampling import clip_positions, flow_positions

    data, run = flow_videos["data"], str(tmp_path / "run")
    train = ["train", "--data", data, "--output", run, "--model", "two_stream",
             "--model-args", MODEL_ARGS, "--epochs", "1", "--batch-size", "4",
             "--clip-frames", "1", "--flow-frames", "4"]
    # refused in one line before anything is written
    for argv, message in [
        ([*train[:2], tiny_data["data"], *train[3:]], "needs optical flow in the records"),
        ([*train[:6], "cnn_gru", "--modality", "rgb+flow", "--clip-frames", "2"],
         "rgb+flow is for the two-stream models"),
        ([*train[:6], "cnn_gru", "--flow-frames", "4", "--clip-frames", "2"],
         "is for rgb+flow models"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not os.path.exists(run)
    assert main(train) == 0
    saved = json.load(open(os.path.join(run, "input.json")))["input"]
    assert (saved["modality"], saved["clip_frames"], saved["flow_frames"]) == ("rgb+flow", 1, 4)
    capsys.readouterr()
    assert main(["evaluate", run, "--clips", "3", "--crops", "3"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    videos = flow_videos["info"]["splits"]["test"]["num_videos"]
    assert line["video"]["count"] == videos
    assert [(r["clips"], r["crops"]) for r in line["views"]] == [(1, 1), (3, 1), (3, 3)]

    export = tmp_path / "served" / "two" / "1"
    assert main(["export", run, str(export)]) == 0
    capsys.readouterr()
    meta = json.load(open(export / "assets" / "kvid.json"))
    assert meta["modality"] == "rgb+flow" and meta["inputs"] == {"frames": 1, "flow": 4}
    served = tf.saved_model.load(str(export))
    spec = served.signatures["serving_default"].structured_input_signature[1]
    assert (spec["frames"].shape.as_list(), spec["flow"].shape.as_list()) == ([None, 1],
                                                                              [None, 4])

    # The client's positions (python) pick what the export's sampler (TF) picks from a
    # record, and both give what kvid's evaluation input gives the Keras model.
    files, compression = resolve_files(data, "test")
    raw = next(iter(tf.data.TFRecordDataset(files, compression_type=compression))).numpy()
    record = schema.from_example(raw)
    rgb_at = clip_positions(len(record.frames), 1, max_clips=1)[0]
    flow_at = flow_positions(rgb_at, 4, len(record.flow))
    assert len(set(flow_at)) == 4  # a window of 4 distinct flow images around the frame
    by_record = served.signatures["serving_examples"](examples=tf.constant([raw]))
    by_inputs = served.signatures["serving_default"](
        frames=tf.constant([[record.frames[i] for i in rgb_at]]),
        flow=tf.constant([[record.flow[i] for i in flow_at]]))
    np.testing.assert_allclose(by_record["probabilities"].numpy(),
                               by_inputs["probabilities"].numpy(), atol=1e-6)
    loaded = load_run(run)
    inputs, _ = next(iter(make_dataset(data, "test", loaded.input.evaluation(), batch_size=1,
                                       training=False)))
    assert sorted(inputs) == ["flow", "rgb"] and inputs["flow"].shape == (1, 4, 32, 32, 2)
    keras_probs = tf.nn.softmax(loaded.model(inputs, training=False)).numpy()
    np.testing.assert_allclose(keras_probs, by_record["probabilities"].numpy(), atol=1e-5)

    server = start_server(str(export.parent), "two", poll_seconds=0)
    try:
        label, name = record.video_id.split("/")
        video = os.path.join(flow_videos["videos"], label, name)
        assert main(["predict", video, "--server", server.rest_url, "--model", "two",
                     "--clips", "2"]) == 0
    finally:
        server.stop()
    printed = capsys.readouterr()
    assert "clips of 1 + 4" in printed.err
    names = sorted(ln.split()[1] for ln in printed.out.strip().splitlines())
    assert names == sorted(flow_videos["info"]["labels"])
