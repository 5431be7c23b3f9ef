"""Export a trained Keras model as a SavedModel with kvid's three serving signatures.

- ``serving_default``: ``frames`` string [batch, T] of JPEG bytes (REST clients send
  ``{"b64": ...}``), decoded, resized and normalized in the graph.
- ``serving_examples``: ``examples`` string [batch] of serialized clip records
  (kvid/schema.py); what TFMA's Evaluator calls.
- ``serving_tensor``: ``frames`` float32 [batch, T, H, W, 3] of pixel values in [0, 255].

All three return ``probabilities`` [batch, C], and the top-k ``classes``, ``labels`` and
``scores``. The label map ships as ``assets/labels.txt``, the preprocessing as
``assets/kvid.json``, and TF Serving warm-up requests as
``assets.extra/tf_serving_warmup_requests``.

A version folder may be watched by a running server (TF Serving, ``kvid serve``), so an
export never writes into it: the SavedModel is written to a hidden sibling
(``.<version>.tmp-XXXX``, which no server takes for a version: they load numeric names
only) and renamed into place; an existing version is replaced only with ``overwrite``.

A fourth signature, ``kvid_metadata``, answers the same preprocessing JSON (label map, clip
frames, image size, normalization, fps) through the serving API itself, because TF
Serving's metadata endpoint exposes signatures but not assets: ``request`` string [batch]
(any values) -> ``metadata`` string [batch]. ``kvid predict`` reads the model's fps there.

Every name above is a constant of :mod:`kvid.serving.contract`, which the server and the
clients share.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kvid import schema
from kvid.data.pipeline import CHANNELS, FLOW_NORMALIZE
from kvid.data.preprocess import decode_frames, normalize, resize_cover_crop
from kvid.data.sampling import temporal_indices
from kvid.models import clip_logits
from kvid.serving.contract import (ASSETS_DIR, ASSETS_EXTRA_DIR, CLASSES_OUTPUT,
                                   DEFAULT_SIGNATURE, EXAMPLES_INPUT, EXAMPLES_SIGNATURE,
                                   FLOW_INPUT, FRAMES_INPUT, LABELS_FILE, LABELS_OUTPUT, METADATA_INPUT,
                                   METADATA_OUTPUT, METADATA_SIGNATURE, PREPROCESSING_FILE,
                                   PROBABILITIES_OUTPUT, SCORES_OUTPUT, TENSOR_SIGNATURE,
                                   WARMUP_FILE)


INPUTS = {"rgb": FRAMES_INPUT, "flow": FLOW_INPUT}  # a one-stream model's input, by modality


def check_export_dir(export_dir: str, overwrite: bool = False) -> None:
    """Refuses a non-empty ``export_dir`` unless ``overwrite``: it may be a served version."""
    if os.path.lexists(export_dir) and not os.path.isdir(export_dir):
        raise NotADirectoryError(f"export folder {export_dir} is a file")
    if os.path.isdir(export_dir) and os.listdir(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} already holds a model (a served version?); pass "
                              "--overwrite to replace it or export to a new version folder.")


def _check_top_k(top_k: int | None, num_classes: int) -> int:
    """The top-k size: ``top_k`` if 1 <= top_k <= classes; None gives min(5, classes)."""
    from kvid import validate

    if top_k is None:
        return min(5, num_classes)
    validate.positive("top_k", top_k, integer=True)
    if top_k > num_classes:
        raise ValueError(f"top_k (--top-k) must be at most the number of classes "
                         f"({num_classes}). Received: top_k={top_k}")
    return int(top_k)


def _swap_in(new: str, export_dir: str, aside: str, overwrite: bool) -> None:
    """Renames ``new`` to ``export_dir``; an existing one is first renamed to ``aside`` (a
    hidden path the caller deletes), so ``export_dir`` is never a half-written model."""
    check_export_dir(export_dir, overwrite)  # again: another process may have written it
    moved = False
    if os.path.lexists(export_dir):
        os.rename(export_dir, aside)
        moved = True
    try:
        os.rename(new, export_dir)
    except BaseException:
        if moved:
            os.rename(aside, export_dir)  # keep serving the old version
        raise


def export_saved_model(
    model: keras.Model,
    export_dir: str,
    *,
    labels: Sequence[str],
    clip_frames: int,
    image_size: tuple[int, int],
    normalization: str,
    top_k: int | None = None,
    model_name: str = "kvid",
    warmup_frames: Sequence[bytes] | None = None,
    extra_metadata: dict | None = None,
    overwrite: bool = False,
    clip_aggregation: str = "mean",
    sampling: str = "dense",
    frame_step: int = 1,
    num_segments: int = 3,
    modality: str = "rgb",
) -> str:
    """Writes the SavedModel to ``export_dir`` atomically: a hidden temp folder beside it,
    then a rename, so a server watching the parent never loads half a SavedModel.

    ``top_k``: classes in the top-k outputs, at most the number of labels (default: 5, or
    all of them if fewer). A non-empty ``export_dir`` raises FileExistsError unless
    ``overwrite``; then the old folder is renamed aside, the new one renamed in, and the old
    one deleted. ``warmup_frames``: T JPEG frames of one real clip for the TF Serving warm-up
    records (a gray clip is used when not given). ``clip_aggregation``: how a per-step
    model's (LRCN's) step logits become the clip's, ``"mean"`` or ``"last"``. Returns
    ``export_dir``. ``sampling``, ``frame_step``, ``num_segments``: the training's
    temporal sampling, by which ``serving_examples`` picks a record's T frames (as
    evaluation does) and which ``kvid_metadata`` tells clients (``kvid predict``).
    ``modality="flow"``: the signatures take ``flow``, 8-bit flow images as ingest stores
    them (JPEG bytes; 2 channels as pixels), normalized as in training.
    """
    if modality not in INPUTS:
        raise ValueError(f"export takes modality {' or '.join(INPUTS)} (one stream); "
                         f"Received: modality={modality!r}")
    input_name, c = INPUTS[modality], CHANNELS[modality]
    if modality == "flow":
        normalization = FLOW_NORMALIZE
    labels = [str(x) for x in labels]
    if model.outputs[0].shape[-1] != len(labels):
        raise ValueError(f"The model has {model.outputs[0].shape[-1]} outputs but "
                         f"{len(labels)} labels were given.")
    k = _check_top_k(top_k, len(labels))
    export_dir = os.path.normpath(export_dir)
    check_export_dir(export_dir, overwrite)
    h, w = int(image_size[0]), int(image_size[1])
    t = int(clip_frames)
    label_table = tf.constant(labels)

    def outputs_from_pixels(pixels):
        # Per-step logits [B, T, C] (LRCN trained with the per-step loss) are averaged.
        logits = clip_logits(model(normalize(pixels, normalization), training=False),
                             clip_aggregation)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        scores, classes = tf.math.top_k(probs, k=k)
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: classes,
                LABELS_OUTPUT: tf.gather(label_table, classes), SCORES_OUTPUT: scores}

    def decode_clip(jpegs):
        return decode_frames(jpegs, (h, w))[..., :c]

    def serving_default(frames):
        pixels = tf.map_fn(decode_clip, frames,
                           fn_output_signature=tf.TensorSpec([t, h, w, c], tf.float32))
        return outputs_from_pixels(pixels)

    def serving_examples(examples):
        parsed = schema.parse_clips(examples, with_flow=modality == "flow")

        def one(jpegs):
            idx = temporal_indices(tf.shape(jpegs)[0], t, sampling=sampling, training=False,
                                   num_segments=num_segments, frame_step=frame_step)
            return decode_clip(tf.gather(jpegs, idx))

        pixels = tf.map_fn(one, parsed[schema.FLOW if modality == "flow" else schema.FRAMES],
                           fn_output_signature=tf.TensorSpec([t, h, w, c], tf.float32))
        return outputs_from_pixels(pixels)

    def serving_tensor(frames):
        pixels = tf.map_fn(lambda clip: resize_cover_crop(clip, (h, w)), frames,
                           fn_output_signature=tf.TensorSpec([t, h, w, c], tf.float32))
        return outputs_from_pixels(pixels)

    meta = {"labels": labels, "clip_frames": t, "image_size": [h, w],
            "normalization": normalization, "top_k": k, "sampling": sampling,
            "frame_step": frame_step, "num_segments": num_segments,
            "clip_aggregation": clip_aggregation, "modality": modality,
            "input": input_name, **(extra_metadata or {})}
    meta_json = json.dumps(meta, indent=2)

    def kvid_metadata(request):
        return {METADATA_OUTPUT: tf.fill(tf.shape(request)[:1], meta_json)}

    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    # Hidden and non-numeric: TF Serving and kvid serve never take it for a version.
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(export_dir)}.tmp-", dir=parent)
    try:
        asset_dir = os.path.join(tmp, "_assets_src")
        os.makedirs(asset_dir)
        labels_path = os.path.join(asset_dir, LABELS_FILE)
        with open(labels_path, "w") as f:
            f.write("\n".join(labels) + "\n")
        meta_path = os.path.join(asset_dir, PREPROCESSING_FILE)
        with open(meta_path, "w") as f:
            f.write(meta_json)

        # A plain tf.Module root: the Keras model's variables, the assets and the three
        # signature functions are saved together (what keras.export.ExportArchive does,
        # plus assets, which its public API cannot attach).
        root = tf.Module()
        root.model = model
        root.labels_asset = tf.saved_model.Asset(labels_path)
        root.metadata_asset = tf.saved_model.Asset(meta_path)
        signatures = {
            DEFAULT_SIGNATURE: tf.function(serving_default, input_signature=[
                tf.TensorSpec([None, t], tf.string, name=input_name)]),
            EXAMPLES_SIGNATURE: tf.function(serving_examples, input_signature=[
                tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)]),
            TENSOR_SIGNATURE: tf.function(serving_tensor, input_signature=[
                tf.TensorSpec([None, t, None, None, c], tf.float32, name=input_name)]),
            METADATA_SIGNATURE: tf.function(kvid_metadata, input_signature=[
                tf.TensorSpec([None], tf.string, name=METADATA_INPUT)]),
        }
        for name, fn in signatures.items():
            setattr(root, name, fn)
        out = os.path.join(tmp, "model")
        tf.saved_model.save(root, out, signatures=signatures)
        _write_warmup(out, model_name, warmup_frames or _gray_clip(t, h, w), input_name)
        _swap_in(out, export_dir, os.path.join(tmp, "replaced"), overwrite)
    finally:  # the temp folder, and the replaced version if there was one
        shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def _gray_clip(t: int, h: int, w: int) -> list[bytes]:
    from kvid.video.frames import encode_jpeg

    frame = encode_jpeg(np.full((h, w, 3), 128, np.uint8))
    return [frame] * t


def _write_warmup(saved_model_dir: str, model_name: str, frames: Sequence[bytes],
                  input_name: str = FRAMES_INPUT) -> None:
    """TF Serving replays these PredictionLogs at load (``--enable_model_warmup``)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=DEFAULT_SIGNATURE))
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto([list(frames)], dtype=tf.string))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))
    extra = os.path.join(saved_model_dir, ASSETS_EXTRA_DIR)
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
        writer.write(log.SerializeToString())


def read_preprocessing(saved_model_dir: str) -> dict:
    """The preprocessing and label map an exported model was trained with."""
    with open(os.path.join(saved_model_dir, ASSETS_DIR, PREPROCESSING_FILE)) as f:
        return json.load(f)
