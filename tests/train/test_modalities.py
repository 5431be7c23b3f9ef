"""TSN's RGB difference and Simonyan & Zisserman's bi-directional flow, from ingest to the
server: ``kvid ingest --flow-backward`` stores the backward flow, ``--modality rgbdiff``
differences the stored frames at read time, ``--flow-direction bidirectional`` fills each
flow stack's first half with backward flow; the export and ``kvid predict`` make the same
inputs as training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.cli import main
from kvid.data import InputConfig, make_dataset, resolve_files
from kvid.data.preprocess import decode_jpegs
from kvid.video import decode_jpeg
from kvid.video.sampling import backward_flow_mask, clip_positions, flow_positions

MODEL_ARGS = '{"small_cnn_widths": [8, 16], "dropout": 0.0, "input_normalization": "unit"}'


@pytest.fixture(scope="module")
def bidi(tiny_data, tmp_path_factory):
    """The tiny videos as whole-video records (8 frames at 12.5 fps) with forward and
    backward Farneback flow."""
    from kvid.ingest import IngestConfig, run_ingest

    data = str(tmp_path_factory.mktemp("bidi") / "data")
    info = run_ingest(tiny_data["videos"], data, IngestConfig(
        size=(32, 32), flow="farneback", flow_backward=True, fps=12.5, layout="video"))
    files, compression = resolve_files(data, "test")
    raws = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type=compression)]
    return {"data": data, "info": info, "videos": tiny_data["videos"], "raws": raws}


def _flow_x(jpeg: bytes) -> np.ndarray:
    return decode_jpeg(jpeg)[..., 0].astype(np.float32) - 128.0


def test_backward_flow_is_the_reverse_motion(bidi):
    from kvid.ingest import IngestConfig

    assert bidi["info"]["flow_backward"] is True
    motion = []  # per record: mean horizontal motion forward, backward
    for raw in bidi["raws"]:
        rec = schema.from_example(raw)
        assert len(rec.flow) == len(rec.flow_backward) == len(rec.frames) - 1
        forward = np.stack([_flow_x(j) for j in rec.flow])
        backward = np.stack([_flow_x(j) for j in rec.flow_backward])
        motion.append((forward.mean(), backward.mean()))
    forward, backward = np.array(motion).T
    assert np.abs(forward).max() > 0.1  # some records move sideways
    # frame i+1 back to i: the same motion, the other way (the object's pixels differ,
    # being where it is in the later frame)
    assert np.corrcoef(forward, backward)[0, 1] < -0.9
    np.testing.assert_allclose(backward, -forward, atol=0.35 * np.abs(forward).max())
    with pytest.raises(ValueError, match="flow_backward needs a flow method"):
        IngestConfig(flow_backward=True)


def test_pipeline_reads_backward_halves_and_frame_differences(bidi, tiny_data):
    rec = schema.from_example(bidi["raws"][0])

    def first(cfg):
        inputs, _ = next(iter(make_dataset(bidi["data"], "test", cfg, batch_size=1,
                                           training=False)))
        return inputs

    # 1 RGB frame + 4 flow images centred on it; the first 2 are backward flows
    cfg = InputConfig(clip_frames=1, image_size=32, modality="rgb+flow", flow_frames=4,
                      flow_direction="bidirectional")
    assert cfg.flow_stack == 4 and cfg.backward_mask() == (True, True, False, False)
    at = flow_positions(clip_positions(len(rec.frames), 1, max_clips=1)[0], 4, len(rec.flow))
    def pixels(jpegs):  # decoded as the input pipeline decodes
        return decode_jpegs(tf.constant(list(jpegs))).numpy().astype(np.float32)

    expected = pixels((rec.flow_backward if back else rec.flow)[i]
                      for i, back in zip(at, backward_flow_mask(4, 4)))[..., :2] / 127.5 - 1.0
    got = first(cfg)["flow"][0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    forward_only = first(InputConfig(clip_frames=1, image_size=32, modality="rgb+flow",
                                     flow_frames=4))["flow"][0].numpy()
    np.testing.assert_allclose(forward_only[2:], got[2:], atol=1e-6)
    assert np.abs(forward_only[:2] - got[:2]).max() > 0.1  # backward, not forward, flow

    # TSN RGB difference: 2 segments of 2 positions, each frame's successor minus it
    cfg = InputConfig(clip_frames=4, image_size=32, modality="rgbdiff", sampling="segments",
                      num_segments=2, normalize="unit")
    pos = clip_positions(len(rec.frames) - 1, 4, sampling="segments", num_segments=2,
                         max_clips=1)[0]
    frames = pixels(rec.frames)
    expected = np.stack([(frames[i + 1] - frames[i]) / 255.0 for i in pos])
    got = first(cfg).numpy()[0]
    assert got.shape == (4, 32, 32, 3) and got.min() < -0.2 and got.max() > 0.2
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # refused: a stack of one flow image, and records without backward flow
    with pytest.raises(ValueError, match="at least 2 flow images"):
        InputConfig(clip_frames=2, image_size=32, modality="rgb+flow",
                    flow_direction="bidirectional")
    flow_only = str(os.path.dirname(bidi["data"]) + "/forward")
    from kvid.ingest import IngestConfig, run_ingest

    run_ingest(tiny_data["videos"], flow_only, IngestConfig(size=(32, 32), flow="farneback",
                                                            fps=12.5, layout="video"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="no flow_backward images"):
        next(iter(make_dataset(flow_only, "test", InputConfig(
            clip_frames=1, image_size=32, modality="rgb+flow", flow_frames=4,
            flow_direction="bidirectional"), batch_size=1, training=False)))


def _serve_and_predict(export, name, video, capsys):
    from kvid.serving.server import start_server

    capsys.readouterr()

    server = start_server(str(export.parent), name, poll_seconds=0)
    try:
        assert main(["predict", video, "--server", server.rest_url, "--model", name,
                     "--clips", "2"]) == 0
    finally:
        server.stop()
    return capsys.readouterr()


def test_rgbdiff_tsn_and_bidirectional_two_stream_from_cli(bidi, tiny_data, tmp_path, capsys):
    from kvid.train.runs import load_run

    data, raw = bidi["data"], bidi["raws"][0]
    rec = schema.from_example(raw)
    label, name = rec.video_id.split("/")
    video = os.path.join(bidi["videos"], label, name)
    labels = sorted(bidi["info"]["labels"])
    common = ["--model-args", MODEL_ARGS, "--epochs", "1", "--batch-size", "4"]

    # TSN on RGB difference: K=2 segments of 2 differences, stacked per segment
    run = str(tmp_path / "tsn")
    assert main(["train", "--data", data, "--output", run, "--model", "tsn", *common,
                 "--modality", "rgbdiff", "--sampling", "segments", "--num-segments", "2",
                 "--clip-frames", "4"]) == 0
    loaded = load_run(run)
    assert loaded.input.modality == "rgbdiff"
    assert loaded.model.get_layer("rgbdiff_stack").output.shape[1:] == (2, 32, 32, 6)
    capsys.readouterr()
    assert main(["evaluate", run, "--clips", "2", "--crops", "1"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["video"]["count"]
    export = tmp_path / "served" / "tsn" / "1"
    assert main(["export", run, str(export)]) == 0
    meta = json.load(open(export / "assets" / "kvid.json"))
    assert (meta["modality"], meta["input"]) == ("rgbdiff", "frame_pairs")
    served = tf.saved_model.load(str(export))
    spec = served.signatures["serving_default"].structured_input_signature[1]
    assert spec["frame_pairs"].shape.as_list() == [None, 8]
    pos = clip_positions(len(rec.frames) - 1, 4, sampling="segments", num_segments=2,
                         max_clips=1)[0]
    by_record = served.signatures["serving_examples"](examples=tf.constant([raw]))
    by_pairs = served.signatures["serving_default"](frame_pairs=tf.constant(
        [[rec.frames[i + d] for i in pos for d in (0, 1)]]))
    np.testing.assert_allclose(by_record["probabilities"].numpy(),
                               by_pairs["probabilities"].numpy(), atol=1e-6)
    inputs, _ = next(iter(make_dataset(data, "test", loaded.input.evaluation(), batch_size=1,
                                       training=False)))
    np.testing.assert_allclose(tf.nn.softmax(loaded.model(inputs, training=False)).numpy(),
                               by_record["probabilities"].numpy(), atol=1e-5)
    printed = _serve_and_predict(export, "tsn", video, capsys)
    assert "clips of 4" in printed.err
    assert sorted(ln.split()[1] for ln in printed.out.strip().splitlines()) == labels

    # Two-stream with bi-directional flow: 1 RGB frame, 2 backward + 2 forward flow images
    run = str(tmp_path / "two")
    train = ["train", "--data", data, "--output", run, "--model", "two_stream", *common,
             "--clip-frames", "1", "--flow-frames", "4", "--flow-direction", "bidirectional"]
    for argv, message in [([*train[:-6], "--clip-frames", "2", *train[-2:]],
                           "at least 2 flow images"),
                          ([*train[:2], tiny_data["data"], *train[3:]], "needs optical flow")]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not os.path.exists(run)
    assert main(train) == 0
    export = tmp_path / "served" / "two" / "1"
    assert main(["export", run, str(export)]) == 0
    meta = json.load(open(export / "assets" / "kvid.json"))
    assert (meta["flow_direction"], meta["flow_stack"]) == ("bidirectional", 4)
    served = tf.saved_model.load(str(export))
    rgb_at = clip_positions(len(rec.frames), 1, max_clips=1)[0]
    flow_at = flow_positions(rgb_at, 4, len(rec.flow))
    by_record = served.signatures["serving_examples"](examples=tf.constant([raw]))
    sent = {"frames": [rec.frames[i] for i in rgb_at],
            "flow": [(rec.flow_backward if b else rec.flow)[i]
                     for i, b in zip(flow_at, backward_flow_mask(4, 4))]}
    by_inputs = served.signatures["serving_default"](
        **{k: tf.constant([v]) for k, v in sent.items()})
    np.testing.assert_allclose(by_record["probabilities"].numpy(),
                               by_inputs["probabilities"].numpy(), atol=1e-6)
    forward = served.signatures["serving_default"](frames=tf.constant([sent["frames"]]),
                                                   flow=tf.constant([[rec.flow[i]
                                                                      for i in flow_at]]))
    assert np.abs(forward["probabilities"].numpy() - by_inputs["probabilities"].numpy()).max() \
        > 1e-6  # the model does see which flow it gets
    printed = _serve_and_predict(export, "two", video, capsys)
    assert "clips of 1 + 4" in printed.err
    assert sorted(ln.split()[1] for ln in printed.out.strip().splitlines()) == labels


def test_tsn_rgb_and_bidirectional_flow_fused_from_cli(bidi, tmp_path, capsys):
    """TSN's two streams as the paper runs them: an RGB TSN (K=2 snippets of 1 frame) and a
    flow TSN (K=2 stacks of 2 flow images, backward then forward), fused 1 : 1.5."""
    from kvid.train.runs import load_run

    data, raw = bidi["data"], bidi["raws"][0]
    common = ["--data", data, "--model", "tsn", "--model-args", MODEL_ARGS, "--epochs", "1",
              "--batch-size", "4", "--sampling", "segments", "--num-segments", "2"]
    rgb, flow, fused = (str(tmp_path / n) for n in ("rgb", "flow", "fused"))
    assert main(["train", *common, "--output", rgb, "--clip-frames", "2"]) == 0
    assert main(["train", *common, "--output", flow, "--clip-frames", "4", "--modality",
                 "flow", "--flow-direction", "bidirectional"]) == 0
    assert load_run(flow).input.backward_mask() == (True, False, True, False)
    assert main(["fuse", rgb, flow, "--preset", "tsn", "-o", fused]) == 0
    export = tmp_path / "served" / "tsn2" / "1"
    assert main(["export", fused, str(export)]) == 0
    served = tf.saved_model.load(str(export))
    by_record = served.signatures["serving_examples"](examples=tf.constant([raw]))["probabilities"]
    expected = 0
    for run, weight in ((rgb, 1.0), (flow, 1.5)):
        loaded = load_run(run)
        inputs, _ = next(iter(make_dataset(data, "test", loaded.input.evaluation(),
                                           batch_size=1, training=False)))
        expected += weight / 2.5 * tf.nn.softmax(loaded.model(inputs, training=False)).numpy()
    np.testing.assert_allclose(by_record.numpy(), expected, atol=1e-5)
    rec = schema.from_example(raw)
    label, name = rec.video_id.split("/")
    printed = _serve_and_predict(export, "tsn2", os.path.join(bidi["videos"], label, name),
                                 capsys)
    assert "clips of 2 + 4" in printed.err
    assert sorted(ln.split()[1] for ln in printed.out.strip().splitlines()) == \
        sorted(bidi["info"]["labels"])


def test_a_preset_without_the_members_modality_asks_for_weights():
    from kvid.train.fuse import resolve_weights

    assert resolve_weights(["rgb", "rgbdiff"], None, "average") == ([1.0, 1.0], "average")
    with pytest.raises(ValueError, match="preset 'tsn' has no weight for rgbdiff .*--weights"):
        resolve_weights(["rgb", "rgbdiff"], None, "tsn")
