"""kvid fuse: an RGB run and a flow run (its classes in the reverse order) fused with TSN's
1 : 1.5, evaluated beside its members, exported as one SavedModel taking ``frames`` and
``flow`` (each member its own clip length), served, and asked by kvid predict."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.cli import main
from kvid.data import resolve_files

MODEL_ARGS = '{"units": 8, "small_cnn_widths": [8, 16], "dropout": 0.0}'


@pytest.fixture(scope="module")
def two_streams(tiny_data, tmp_path_factory):
    """An RGB cnn_gru (2 frames) and a flow cnn_gru (3 flow images) on the same videos; the
    flow run's data lists the classes in the reverse order."""
    from kvid.ingest import IngestConfig, run_ingest

    root = tmp_path_factory.mktemp("fuse")
    ingest = IngestConfig(clip_frames=4, size=(32, 32), flow="farneback", fps=12.5)
    data, data_reversed = str(root / "data"), str(root / "data_reversed")
    info = run_ingest(tiny_data["videos"], data, ingest)
    run_ingest(tiny_data["videos"], data_reversed, ingest, labels=info["labels"][::-1])
    runs = {"rgb": str(root / "rgb"), "flow": str(root / "flow")}
    common = ["--model", "cnn_gru", "--model-args", MODEL_ARGS, "--epochs", "2",
              "--batch-size", "4", "--seed", "1"]
    assert main(["train", "--data", data, "--output", runs["rgb"], "--clip-frames", "2",
                 *common]) == 0
    assert main(["train", "--data", data_reversed, "--output", runs["flow"], "--clip-frames",
                 "3", "--modality", "flow", *common]) == 0
    return {"root": root, "data": data, "info": info, "runs": runs,
            "videos": tiny_data["videos"]}


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


def _records(data: str, split: str = "test") -> list[bytes]:
    files, compression = resolve_files(data, split)
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression)]


def test_bad_fusions_are_refused_in_one_line(two_streams, tiny_data, tmp_path, capsys):
    rgb, flow = two_streams["runs"]["rgb"], two_streams["runs"]["flow"]
    out = str(tmp_path / "fused")
    other = str(tmp_path / "other")  # a run of 3 other classes
    shutil.copytree(rgb, other)
    saved = json.load(open(os.path.join(other, "input.json")))
    saved["input"]["labels"] = ["a", "b", "c"]
    json.dump(saved, open(os.path.join(other, "input.json"), "w"))
    for argv, message in [
        ([rgb], "at least two runs"),
        ([rgb, other], "other classes"),
        ([rgb, flow, "--weights", "1"], "one weight per run"),
        ([rgb, flow, "--weights", "1,0"], "argument --weights"),
        ([rgb, flow, "--weights", "1,nan"], "argument --weights"),
        ([rgb, flow, "--weights", "1,1", "--preset", "tsn"], "not allowed with"),
        ([rgb, str(tmp_path / "missing")], "not a kvid run folder"),
    ]:
        assert _exit_code(["fuse", *argv, "-o", out]) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
        assert not os.path.exists(out)
    assert main(["fuse", rgb, flow, "-o", rgb]) == 2  # never into one of its own runs
    assert "must not be one of its runs" in capsys.readouterr().err


def test_fused_run_evaluates_exports_and_serves(two_streams, tmp_path, capsys):
    from kvid.serving.client import Client
    from kvid.serving.server import start_server

    runs, data = two_streams["runs"], two_streams["data"]
    labels = two_streams["info"]["labels"]
    fused = str(tmp_path / "fused")
    assert main(["fuse", runs["rgb"], runs["flow"], "-o", fused, "--preset", "tsn"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert [(m["modality"], m["weight"]) for m in line["members"]] == [("rgb", 1.0),
                                                                      ("flow", 1.5)]
    spec = json.load(open(os.path.join(fused, "fusion.json")))
    assert spec["labels"] == labels and spec["preset"] == "tsn"
    # A finished fused folder is not replaced without --overwrite.
    assert main(["fuse", runs["rgb"], runs["flow"], "-o", fused]) == 2
    assert "--overwrite" in capsys.readouterr().err

    # Each member alone, as single-run exports (the reference for the fused scores).
    single = {}
    for stream, run in runs.items():
        assert main(["export", run, str(tmp_path / f"single_{stream}" / "1")]) == 0
        single[stream] = tf.saved_model.load(str(tmp_path / f"single_{stream}" / "1"))
    capsys.readouterr()
    flow_labels = json.load(open(os.path.join(runs["flow"], "input.json")))["input"]["labels"]
    assert flow_labels == labels[::-1]

    # The fused folder is self-contained: the source runs can go.
    moved = {s: shutil.move(r, str(tmp_path / f"gone_{s}")) for s, r in runs.items()}
    try:
        assert main(["evaluate", fused, "--data", data, "--clips", "2", "--crops", "3"]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        report = json.load(open(out["report"]))
        assert main(["export", fused, str(tmp_path / "served" / "fused" / "1")]) == 0
        capsys.readouterr()
    finally:
        for s, path in moved.items():
            shutil.move(path, runs[s])
    test_clips = two_streams["info"]["splits"]["test"]["num_clips"]
    assert [m["name"] for m in report["members"]] == ["cnn_gru/rgb", "cnn_gru/flow"]
    assert all(m["clip"]["count"] == test_clips for m in report["members"])
    assert report["clip"]["count"] == test_clips
    assert os.path.getsize(report["files"]["fusion_png"]) > 5000
    assert [r["name"] for r in out["views"]] == ["cnn_gru/rgb", "cnn_gru/flow", "fused"]

    export = str(tmp_path / "served" / "fused" / "1")
    meta = json.load(open(os.path.join(export, "assets", "kvid.json")))
    assert meta["modality"] == "rgb+flow" and meta["inputs"] == {"frames": 2, "flow": 3}
    assert [(m["modality"], m["clip_frames"], m["weight"]) for m in meta["members"]] == [
        ("rgb", 2, 1.0), ("flow", 3, 1.5)]
    served = tf.saved_model.load(export)
    assert sorted(served.signatures["serving_default"].structured_input_signature[1]) == [
        "flow", "frames"]

    # The fused scores are TSN's weighted mean of the members' softmax scores, the flow
    # member's matched to the fused labels by name (its outputs are in reverse order).
    records = _records(data)
    examples = tf.constant(records)
    fused_probs = served.signatures["serving_examples"](examples=examples)["probabilities"]
    p_rgb = single["rgb"].signatures["serving_examples"](examples=examples)["probabilities"]
    p_flow = single["flow"].signatures["serving_examples"](examples=examples)["probabilities"]
    expected = (1.0 * p_rgb.numpy() + 1.5 * p_flow.numpy()[:, ::-1]) / 2.5
    np.testing.assert_allclose(fused_probs.numpy(), expected, atol=1e-6)
    assert not np.allclose(p_flow.numpy(), p_flow.numpy()[:, ::-1], atol=1e-3)
    # ... and kvid evaluate's fused clip accuracy is that of these scores.
    y = np.array([labels.index(schema.from_example(r).label_name) for r in records])
    assert report["clip"]["top1"] == pytest.approx(float((expected.argmax(1) == y).mean()))

    # serving_default on a record's own frames and flow gives what serving_examples gives
    # (dense sampling: the centred frames of each stream).
    record = schema.from_example(records[0])
    by_inputs = served.signatures["serving_default"](
        frames=tf.constant([list(record.frames[1:3])]),
        flow=tf.constant([list(record.flow[0:3])]))
    np.testing.assert_allclose(by_inputs["probabilities"].numpy(), fused_probs.numpy()[:1],
                               atol=1e-6)

    # Served: a REST request with both inputs, and kvid predict making both on the client.
    server = start_server(str(tmp_path / "served" / "fused"), "fused", poll_seconds=0)
    try:
        with Client(rest_url=server.rest_url, model="fused") as client:
            answer = client.predict({"frames": np.array([list(record.frames[1:3])], object),
                                     "flow": np.array([list(record.flow[0:3])], object)})
        np.testing.assert_allclose(answer["probabilities"], fused_probs.numpy()[:1],
                                   atol=1e-5)
        label, name = record.video_id.split("/")
        video = os.path.join(two_streams["videos"], label, name)
        assert main(["predict", video, "--server", server.rest_url, "--model", "fused"]) == 0
    finally:
        server.stop()
    printed = capsys.readouterr()
    assert "clips of 2 + 3" in printed.err
    assert sorted(ln.split()[1] for ln in printed.out.strip().splitlines()) == sorted(labels)
