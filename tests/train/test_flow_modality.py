"""A flow model from the CLI to the server: ingest with flow, kvid train --modality flow,
evaluate, export (the signatures take ``flow``), serve, and kvid predict computing the flow
on the client with ingest's own code and parameters."""

import json
import os

import numpy as np
import tensorflow as tf

from kvid import schema
from kvid.cli import main
from kvid.data import resolve_files

MODEL_ARGS = '{"units": 8, "small_cnn_widths": [8, 16], "dropout": 0.0}'


def test_flow_model_trains_exports_and_predicts_over_rest(tmp_path, capsys, tiny_data):
    from kvid.serving.client import flow_gray, flow_images
    from kvid.serving.server import start_server
    from kvid.video import iter_frames

    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    assert main(["ingest", tiny_data["videos"], "-o", data, "--clip-frames", "4",
                 "--size", "32x32", "--flow", "farneback", "--fps", "12.5"]) == 0
    info = json.load(open(os.path.join(data, "dataset.json")))
    train = ["train", "--data", data, "--output", run, "--model", "cnn_gru", "--model-args",
             MODEL_ARGS, "--epochs", "1", "--batch-size", "4", "--clip-frames", "3"]
    # RGB-only records cannot feed a flow model: refused before anything is written
    assert main([*train[:2], tiny_data["data"], *train[3:], "--modality", "flow"]) == 2
    assert "needs optical flow in the records" in capsys.readouterr().err
    assert main(train + ["--modality", "flow"]) == 0
    saved = json.load(open(os.path.join(run, "input.json")))
    assert saved["input"]["modality"] == "flow"
    assert saved["flow"]["method"] == "farneback" and saved["flow"]["size"] == [32, 32]
    capsys.readouterr()

    assert main(["evaluate", run, "--clips", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["clip"]["count"] == info["splits"]["test"]["num_clips"]

    base = tmp_path / "served" / "flowmodel"
    assert main(["export", run, str(base / "1")]) == 0
    capsys.readouterr()
    meta = json.load(open(base / "1" / "assets" / "kvid.json"))
    assert (meta["modality"], meta["input"], meta["clip_frames"]) == ("flow", "flow", 3)
    served = tf.saved_model.load(str(base / "1"))
    assert list(served.signatures["serving_default"].structured_input_signature[1]) == ["flow"]

    # The client's flow is the ingest's, byte for byte, for the same video.
    files, compression = resolve_files(data, "test")
    record = schema.from_example(next(iter(
        tf.data.TFRecordDataset(files, compression_type=compression))).numpy())
    label, name = record.video_id.split("/")
    video = os.path.join(tiny_data["videos"], label, name)
    grays = [flow_gray(f.rgb, meta["flow"]) for f in iter_frames(video, fps=meta["fps"])]
    client_flow = flow_images(grays, meta["flow"])
    start = record.clip_start_frame
    assert client_flow[start:start + 3] == list(record.flow)

    by_record = served.signatures["serving_examples"](examples=tf.constant(
        [schema.serialize_clip(record)]))
    by_flow = served.signatures["serving_default"](flow=tf.constant([list(record.flow)]))
    np.testing.assert_allclose(by_record["probabilities"].numpy(),
                               by_flow["probabilities"].numpy(), atol=1e-6)

    server = start_server(str(base), "flowmodel", poll_seconds=0)
    try:
        assert main(["predict", video, "--server", server.rest_url, "--model",
                     "flowmodel"]) == 0
    finally:
        server.stop()
    out = capsys.readouterr()
    assert "clips of 3" in out.err
    labels = [line.split()[1] for line in out.out.strip().splitlines()]
    assert sorted(labels) == sorted(info["labels"])
