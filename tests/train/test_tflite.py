"""`kvid export --tflite`: the exported folder run in TF Lite's own interpreter gives the
Keras model's probabilities, for whole clips and, for a stream MoViNet, frame by frame."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid.cli import main
from kvid.train.export import step_outputs
from kvid.train.runs import load_run, member_of
from kvid.train.tflite import TFLiteModel, calibration_clips

pytestmark = pytest.mark.slow


def _test_clips(member, data, count=None):
    clips = calibration_clips(member, data, split="test", count=count or 10_000)
    return list(clips.as_numpy_iterator())


def _keras_probabilities(member, clip):
    return member.probabilities({s: tf.constant(clip[n][None]) for s, n in
                                 zip(member.streams, clip)}).numpy()[0]


def test_a_stream_movinet_runs_in_the_tflite_interpreter(movinet_stream_run, tiny_data,
                                                         tmp_path, capsys):
    from kvid.models.movinet import build_movinet_step, initial_states

    out = str(tmp_path / "lite")
    assert main(["export", movinet_stream_run, out, "--tflite", "float32"]) == 0
    assert sorted(os.listdir(out)) == ["kvid.json", "labels.txt", "model.tflite"]
    meta = json.load(open(os.path.join(out, "kvid.json")))
    assert meta["tflite"]["signatures"] == ["serving_default", "stream_step"]
    assert meta["tflite"]["inputs"] == {"frames": [1, 4, 32, 32, 3]}
    lite = TFLiteModel(out)
    run = load_run(movinet_stream_run)
    assert lite.labels == run.labels
    member = member_of(run)
    step = build_movinet_step(run.model, member.image_size, frames=1)
    assert set(lite.initial_states()) == set(initial_states(step))
    clips = _test_clips(member, tiny_data["data"], count=3)
    ends = []
    for clip in clips:
        frames = clip["frames"]
        whole = _keras_probabilities(member, clip)
        np.testing.assert_allclose(lite.clip(frames=frames), whole, atol=1e-4)
        states, keras_states = lite.initial_states(), initial_states(step)
        for t in range(len(frames)):  # a frame at a time, the app carrying the states
            probs, states = lite.step(frames[t], states)
            expected, keras_states = step_outputs(member, step, tf.constant(
                frames[None, t:t + 1]), keras_states)
            np.testing.assert_allclose(probs, expected.numpy()[0], atol=1e-4)
        np.testing.assert_allclose(probs, whole, atol=1e-4)  # the causal clip model's
        ends.append(probs)
    assert max(np.abs(a - b).max() for a, b in zip(ends, ends[1:])) > 1e-4  # clips differ
    # int8 of the trained (last) weights, calibrated on the training clips whole and
    # stepped: over the whole test split, the clip model and the stream step both keep the
    # float model's top-1 (>= 95 %) on predictions confident enough for that to mean much
    q = str(tmp_path / "int8")
    assert main(["export", movinet_stream_run, q, "--tflite", "int8", "--weights", "last",
                 "--calibration-clips", "40"]) == 0
    lite8 = TFLiteModel(q)
    assert [d["dtype"] for d in lite8.interpreter.get_tensor_details()].count(np.int8) > 50
    assert os.path.getsize(os.path.join(q, "model.tflite")) < 0.5 * os.path.getsize(
        os.path.join(out, "model.tflite"))
    last = member_of(load_run(movinet_stream_run, "last"))
    tests = _test_clips(last, tiny_data["data"])
    expected = np.stack([_keras_probabilities(last, c) for c in tests])
    whole8 = np.stack([lite8.clip(frames=c["frames"]) for c in tests])
    stepped8 = []
    for clip in tests:
        states = lite8.initial_states()
        for frame in clip["frames"]:
            probs, states = lite8.step(frame, states)
        stepped8.append(probs)
    stepped8 = np.stack(stepped8)
    assert len(tests) >= 12 and expected.max(1).mean() > 0.7  # confident, not uniform
    assert len(set(expected.argmax(1))) > 1  # and not one class for every clip
    for got in (whole8, stepped8):
        assert np.abs(got - expected).max() < 0.05
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95
    capsys.readouterr()
    assert main(["export", movinet_stream_run, out, "--tflite", "float32"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_int8_refuses_3d_and_recurrent_layers():
    from kvid.models import build_model
    from kvid.train.tflite import _check_int8

    for name, kind in (("c3d", "3D convolutions"), ("cnn_gru", "recurrent layers")):
        with pytest.raises(ValueError, match=kind):
            _check_int8(build_model(name, (4, 32, 32, 3), 3, preset="tiny"))
    _check_int8(build_model("movinet_a0_stream", (4, 32, 32, 3), 3, preset="tiny"))


@pytest.fixture(scope="module")
def frame_run(tiny_data, tmp_path_factory):
    """A single-frame CNN (2D convolutions only: every TF Lite kind applies)."""
    run = str(tmp_path_factory.mktemp("frame") / "run")
    assert main(["train", "--data", tiny_data["data"], "--output", run, "--model",
                 "single_frame", "--preset", "tiny", "--epochs", "3", "--batch-size",
                 "8"]) == 0
    return run


def test_float16_and_int8_tflite_follow_the_keras_model(frame_run, tiny_data, tmp_path,
                                                        capsys):
    run = load_run(frame_run)
    member = member_of(run)
    clips = _test_clips(member, tiny_data["data"])
    expected = np.stack([_keras_probabilities(member, c) for c in clips])
    got, sizes, tensors = {}, {}, {}
    for kind in ("float32", "float16", "int8"):
        out = str(tmp_path / kind)
        args = ["export", frame_run, out, "--tflite", kind, "--calibration-clips", "30"]
        assert main(args) == 0
        lite = TFLiteModel(out)
        got[kind] = np.stack([lite.clip(frames=c["frames"]) for c in clips])
        sizes[kind] = os.path.getsize(os.path.join(out, "model.tflite"))
        tensors[kind] = [d["dtype"] for d in lite.interpreter.get_tensor_details()]
        assert json.load(open(os.path.join(out, "kvid.json")))["tflite"]["quantization"] == kind
    np.testing.assert_allclose(got["float32"], expected, atol=1e-4)
    np.testing.assert_allclose(got["float16"], expected, atol=1e-2)
    # the weights stored as float16 / int8 (this tiny model's file is mostly format)
    assert np.float16 not in tensors["float32"] and np.int8 not in tensors["float32"]
    assert tensors["float16"].count(np.float16) >= 4 and np.int8 not in tensors["float16"]
    assert tensors["int8"].count(np.int8) >= 10
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]
    assert np.abs(got["int8"] - expected).max() < 0.05
    # top-1 agrees wherever the float model's margin is above int8's error
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * np.abs(got["int8"] - expected).max()
    agree = got["int8"].argmax(1)[clear] == expected.argmax(1)[clear]
    assert clear.sum() >= len(clips) // 2 and agree.mean() >= 0.95
    # bad arguments: one line, exit 2
    capsys.readouterr()
    bad = ["export", frame_run, str(tmp_path / "bad"), "--tflite", "int8"]
    with pytest.raises(SystemExit) as e:  # argparse's own usage error
        main([*bad, "--calibration-clips", "0"])
    assert e.value.code == 2 and "--calibration-clips" in capsys.readouterr().err
    assert main([*bad, "--calibration-data", str(tmp_path / "no")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "bad")
