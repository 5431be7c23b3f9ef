"""A toy SavedModel with kvid's serving signatures, for tests, the benchmark and demos.

It stands in for ``kvid.train.export`` output where a trained model is not the point:
the same signature names, inputs, outputs, label map and warm-up file (those of
:mod:`kvid.serving.contract`), a little real compute (in-graph JPEG decode and resize, a
dense layer), and weights that depend on ``version`` so a test can tell which version
answered. Two extra signatures cover the REST codec's other cases: several inputs with a
``*_bytes`` output, and one output.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from kvid.data.preprocess import decode_frames
from kvid.serving.contract import (ASSETS_EXTRA_DIR, CLASSES_OUTPUT, DEFAULT_SIGNATURE,
                                   EXAMPLES_INPUT, EXAMPLES_SIGNATURE, FRAMES_INPUT,
                                   LABELS_FILE, LABELS_OUTPUT, PROBABILITIES_OUTPUT,
                                   SCORES_OUTPUT, TENSOR_SIGNATURE, WARMUP_PATH)
from kvid.serving.tensor_proto import to_tensor_proto

TOY_LABELS = ("wave", "clap", "run", "jump", "sit")
TOP_K = 3


class _ToyModel(tf.Module):
    def __init__(self, version: int, clip_frames: int, image_size: int, labels_path: str):
        super().__init__()
        rng = np.random.default_rng(version)
        n = len(TOY_LABELS)
        self.kernel = tf.Variable(rng.normal(size=(6, n)).astype("float32"))
        self.bias = tf.Variable(np.full([n], float(version), "float32"))
        self.labels_asset = tf.saved_model.Asset(labels_path)
        self.clip_frames = clip_frames
        self.image_size = image_size
        t, s = clip_frames, image_size
        self.serving_default = tf.function(
            self._from_jpegs,
            input_signature=[tf.TensorSpec([None, t], tf.string, FRAMES_INPUT)])
        self.serving_examples = tf.function(
            self._from_examples,
            input_signature=[tf.TensorSpec([None], tf.string, EXAMPLES_INPUT)])
        self.serving_tensor = tf.function(
            self._from_pixels,
            input_signature=[tf.TensorSpec([None, t, s, s, 3], tf.float32, FRAMES_INPUT)])
        self.multi = tf.function(self._multi, input_signature=[
            tf.TensorSpec([None, 3], tf.float32, "x"), tf.TensorSpec([None], tf.string, "tag")])
        self.single = tf.function(self._single, input_signature=[
            tf.TensorSpec([None, 3], tf.float32, "x")])

    def _head(self, pixels):
        """[B, T, H, W, 3] in [0, 255] -> kvid's four outputs."""
        x = pixels / 255.0
        feats = tf.concat([tf.reduce_mean(x, [1, 2, 3]), tf.math.reduce_std(x, [1, 2, 3])], -1)
        probs = tf.nn.softmax(feats @ self.kernel + self.bias)
        scores, classes = tf.math.top_k(probs, k=TOP_K)
        names = tf.io.read_file(self.labels_asset)
        table = tf.strings.split(tf.strings.strip(names), "\n")
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: tf.cast(classes, tf.int32),
                LABELS_OUTPUT: tf.gather(table, classes), SCORES_OUTPUT: scores}

    def _from_jpegs(self, frames):
        size = (self.image_size, self.image_size)
        pixels = tf.map_fn(lambda clip: decode_frames(clip, size), frames,
                           fn_output_signature=tf.TensorSpec(
                               [self.clip_frames, *size, 3], tf.float32))
        return self._head(pixels)

    def _from_examples(self, examples):
        parsed = tf.io.parse_example(examples, {"frames": tf.io.RaggedFeature(tf.string)})
        return self._from_jpegs(parsed["frames"].to_tensor())

    def _from_pixels(self, frames):
        return self._head(frames)

    def _multi(self, x, tag):
        return {"y": tf.reduce_sum(x, -1) + self.bias[0],
                "echo_bytes": tf.strings.join([tag, tf.constant(b"\xff")])}

    def _single(self, x):
        return {"y": x * 2.0 + self.bias[0]}


def toy_clip(clip_frames: int = 16, size: int = 32, seed: int = 0) -> list[bytes]:
    """One clip of JPEG frames as ``kvid predict`` sends them: smooth random images, so
    they compress like video frames rather than like noise."""
    from kvid.video import encode_jpeg, resize_frame

    rng = np.random.default_rng(seed)
    return [encode_jpeg(resize_frame(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8),
                                     size=(size, size)))
            for _ in range(clip_frames)]


def write_toy_model(base_path: str, version: int = 1, *, clip_frames: int = 16,
                    image_size: int = 32, warmup: bool = True) -> str:
    """Writes ``<base_path>/<version>/`` atomically (temp folder, then rename)."""
    final = os.path.join(base_path, str(version))
    tmp = os.path.join(base_path, f".tmp-{version}")
    os.makedirs(tmp, exist_ok=True)
    labels = os.path.join(tmp, LABELS_FILE)
    with open(labels, "w") as f:
        f.write("\n".join(TOY_LABELS) + "\n")
    model = _ToyModel(version, clip_frames, image_size, labels)
    sigs = {DEFAULT_SIGNATURE: model.serving_default, EXAMPLES_SIGNATURE: model.serving_examples,
            TENSOR_SIGNATURE: model.serving_tensor, "multi": model.multi, "single": model.single}
    export = os.path.join(tmp, "export")
    tf.saved_model.save(model, export, signatures=sigs)
    if warmup:
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = DEFAULT_SIGNATURE
        request.inputs[FRAMES_INPUT].CopyFrom(
            to_tensor_proto(np.array([toy_clip(clip_frames)], dtype=object), tf.string))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        os.makedirs(os.path.join(export, ASSETS_EXTRA_DIR), exist_ok=True)
        with tf.io.TFRecordWriter(os.path.join(export, WARMUP_PATH)) as w:
            w.write(log.SerializeToString())
    os.replace(export, final)
    os.remove(labels)
    os.rmdir(tmp)
    return final
