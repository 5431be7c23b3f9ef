"""The exported SavedModel: three signatures that agree with the Keras model, assets, warm-up."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.data.preprocess import decode_frames, normalize
from kvid.serving.contract import PREPROCESSING_FILE, WARMUP_PATH
from kvid.train.export import read_preprocessing
from kvid.train.runs import export_run, first_clip, load_run


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "kvid" / "1")
    export_run(trained_run["dir"], path, top_k=2)
    return path


def _keras_probs(run, frames):
    pixels = decode_frames(tf.constant(frames), run.image_size)
    logits = run.model(normalize(pixels, run.normalization)[None], training=False)
    return tf.nn.softmax(logits).numpy()


def test_three_signatures_agree_with_keras_model(trained_run, exported):
    run = load_run(trained_run["dir"])
    clip = first_clip(trained_run["data"], "test")
    frames = list(clip.frames)
    expected = _keras_probs(run, frames)
    loaded = tf.saved_model.load(exported)
    assert set(loaded.signatures) == {"serving_default", "serving_examples", "serving_tensor",
                                      "kvid_metadata"}

    by_jpeg = loaded.signatures["serving_default"](frames=tf.constant([frames]))
    by_example = loaded.signatures["serving_examples"](
        examples=tf.constant([schema.serialize_clip(clip)]))
    pixels = decode_frames(tf.constant(frames)).numpy()[None]  # any size: resized in-graph
    by_tensor = loaded.signatures["serving_tensor"](frames=tf.constant(pixels))
    for out in (by_jpeg, by_example, by_tensor):
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
        assert out["classes"].shape == (1, 2)
        top = np.argsort(-expected[0])[:2]
        np.testing.assert_array_equal(out["classes"].numpy()[0], top)
        labels = [x.decode() for x in out["labels"].numpy()[0]]
        assert labels == [run.labels[i] for i in top]
        np.testing.assert_allclose(out["scores"].numpy()[0], expected[0][top], atol=1e-5)


def test_batch_of_clips_and_signature_shapes(exported, trained_run):
    clip = first_clip(trained_run["data"], "test")
    loaded = tf.saved_model.load(exported)
    out = loaded.signatures["serving_default"](frames=tf.constant([list(clip.frames)] * 3))
    assert out["probabilities"].shape == (3, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["frames"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None, 4]


def test_assets_label_map_preprocessing_and_warmup(exported, trained_run):
    with open(os.path.join(exported, "assets", "labels.txt")) as f:
        assert f.read().split() == trained_run["info"]["labels"]
    meta = read_preprocessing(exported)
    assert meta["clip_frames"] == 4 and meta["image_size"] == [32, 32]
    assert meta["labels"] == trained_run["info"]["labels"]
    assert os.path.exists(os.path.join(exported, "assets", PREPROCESSING_FILE))

    from tensorflow_serving.apis import prediction_log_pb2

    records = list(tf.data.TFRecordDataset(os.path.join(exported, WARMUP_PATH)))
    assert len(records) == 1
    log = prediction_log_pb2.PredictionLog.FromString(records[0].numpy())
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    frames = tf.make_ndarray(request.inputs["frames"])
    assert frames.shape == (1, 4)
    # The warm-up request is a real clip and the model answers it.
    out = tf.saved_model.load(exported).signatures["serving_default"](frames=tf.constant(frames))
    assert out["probabilities"].shape == (1, 3)


def test_label_count_must_match_model(trained_run, tmp_path):
    from kvid.train.export import export_saved_model

    run = load_run(trained_run["dir"])
    with pytest.raises(ValueError, match="3 outputs but 2 labels"):
        export_saved_model(run.model, str(tmp_path / "m"), labels=["a", "b"], clip_frames=4,
                           image_size=(32, 32), normalization="unit")
    assert not os.path.exists(tmp_path / "m")


def test_metadata_signature_gives_kvid_json_and_predict_uses_the_model_fps(
        trained_run, tmp_path, capsys):
    """TF Serving exposes signatures, not assets: ``kvid_metadata`` carries kvid.json, and
    ``kvid predict`` resamples a 20 fps video to the 5 fps the model was trained at."""
    import argparse

    from kvid.serving.client import Client, configure_predict_parser, predict_command
    from kvid.serving.server import start_server
    from kvid.train.export import export_saved_model
    from kvid.video.encode import write_video

    run = load_run(trained_run["dir"])
    base = tmp_path / "kvid"
    export_saved_model(run.model, str(base / "1"), labels=run.labels, clip_frames=4,
                       image_size=(32, 32), normalization=run.normalization,
                       extra_metadata={"fps": 5.0, "model": "cnn_gru"})
    out = tf.saved_model.load(str(base / "1")).signatures["kvid_metadata"](
        request=tf.constant(["", ""]))["metadata"].numpy()
    assert len(out) == 2 and json.loads(out[0]) == read_preprocessing(str(base / "1"))
    assert json.loads(out[0])["fps"] == 5.0

    video = str(tmp_path / "v.mp4")  # 3 s at 20 fps
    rng = np.random.default_rng(0)
    write_video(video, (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(60)),
                fps=20)
    server = start_server(str(base), "kvid", poll_seconds=0)
    try:
        with Client(rest_url=server.rest_url) as client:
            assert client.model_info()["labels"] == run.labels
        parser = configure_predict_parser(argparse.ArgumentParser())
        assert predict_command(parser.parse_args([video, "--server", server.rest_url])) == 0
        err = capsys.readouterr().err
        assert "15 frames at 5 fps (the model's rate)" in err
        assert predict_command(parser.parse_args([video, "--grpc", server.grpc_target,
                                                  "--fps", "10"])) == 0
        assert "30 frames at 10 fps (--fps)" in capsys.readouterr().err
    finally:
        server.stop()
