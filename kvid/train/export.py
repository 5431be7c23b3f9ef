"""Export a trained Keras model as a SavedModel with kvid's three serving signatures.

- ``serving_default``: ``frames`` string [batch, T] of JPEG bytes (REST clients send
  ``{"b64": ...}``), decoded, resized and normalized in the graph.
- ``serving_examples``: ``examples`` string [batch] of serialized clip records
  (kvid/schema.py); what TFMA's Evaluator calls.
- ``serving_tensor``: ``frames`` float32 [batch, T, H, W, 3] of pixel values in [0, 255].

All three return ``probabilities`` [batch, C], and the top-k ``classes``, ``labels`` and
``scores``. A model fused from several runs (``kvid fuse``) takes one input per stream its
members read (``frames``, ``flow`` and/or ``frame_pairs``, an RGB difference model's frames
i and i + 1 at each position); each member makes its own clip from it, and the
probabilities are the members' weighted mean of softmax scores. The label map ships as ``assets/labels.txt``, the preprocessing as
``assets/kvid.json``, and TF Serving warm-up requests as
``assets.extra/tf_serving_warmup_requests``.

A version folder may be watched by a running server (TF Serving, ``kvid serve``), so an
export never writes into it: the SavedModel is written to a hidden sibling
(``.<version>.tmp-XXXX``, which no server takes for a version: they load numeric names
only) and renamed into place; an existing version is replaced only with ``overwrite``.

A stream model (a causal MoViNet, ``movinet_*_stream``) also gets ``stream_init``
(``batch_size`` -> zero states) and ``stream_step`` (``frames`` [batch, n] JPEG, any n, and
the states -> the same outputs for everything seen so far, and the new states): TF Serving
keeps no state between requests, so its client sends them back each step.

A further signature, ``kvid_metadata``, answers the same preprocessing JSON (label map, clip
frames, image size, normalization, fps) through the serving API itself, because TF
Serving's metadata endpoint exposes signatures but not assets: ``request`` string [batch]
(any values) -> ``metadata`` string [batch]. ``kvid predict`` reads the model's fps there.

Every name above is a constant of :mod:`kvid.serving.contract`, which the server and the
clients share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from kvid import schema
from kvid.data.pipeline import (CHANNELS, SOURCES, InputConfig, gather_streams,
                                sample_positions, stream_values)
from kvid.data.preprocess import decode_frames, normalize, resize_cover_crop
from kvid.data.sampling import temporal_indices
from kvid.models import clip_logits
from kvid.serving.contract import (ASSETS_DIR, ASSETS_EXTRA_DIR, BATCH_SIZE_INPUT,
                                   CLASSES_OUTPUT, DEFAULT_SIGNATURE, EXAMPLES_INPUT,
                                   EXAMPLES_SIGNATURE, FRAMES_INPUT, STREAM_INIT_SIGNATURE,
                                   STREAM_STEP_SIGNATURE,
                                   LABELS_FILE, LABELS_OUTPUT, METADATA_INPUT,
                                   METADATA_OUTPUT, METADATA_SIGNATURE, PREPROCESSING_FILE,
                                   PROBABILITIES_OUTPUT, SCORES_OUTPUT, STREAM_INPUTS,
                                   TENSOR_SIGNATURE, WARMUP_FILE)

INPUTS = STREAM_INPUTS  # the signatures' input of each stream
# The record feature of each image source (Member.sources).
_FEATURES = {"rgb": schema.FRAMES, "flow": schema.FLOW, "flow_backward": schema.FLOW_BACKWARD}
_STREAMS = {name: stream for stream, name in INPUTS.items()}


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


def swap_in(new: str, export_dir: str, aside: str, overwrite: bool) -> None:
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


@contextlib.contextmanager
def staged(output_dir: str, overwrite: bool = False):
    """Writes a folder atomically: yields ``(tmp, new)``, a hidden temp folder beside
    ``output_dir`` for scratch files and the path to write the result at; on success
    ``new`` is swapped in (:func:`swap_in`), and the temp folder, with any replaced
    version, is deleted either way. Hidden and non-numeric: TF Serving and kvid serve
    never take it for a version."""
    output_dir = os.path.normpath(output_dir)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    try:
        new = os.path.join(tmp, "new")
        yield tmp, new
        swap_in(new, output_dir, os.path.join(tmp, "replaced"), overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Member:
    """One model in an export and the input it was trained on (its
    :class:`~kvid.data.InputConfig`): the whole export for one model, one stream of a fused
    one (``kvid fuse``), whose probabilities are the members' ``weight``-ed mean of softmax
    scores.

    ``label_order``: for each of the export's labels, its index among the model's outputs
    (None: the same order), so runs with the same classes in another order fuse by name.
    """

    model: keras.Model
    input: InputConfig
    clip_aggregation: str = "mean"
    weight: float = 1.0
    label_order: tuple[int, ...] | None = None
    metadata: dict | None = None  # e.g. the member's model name, fps and flow settings

    @property
    def streams(self) -> tuple[str, ...]:
        return self.input.streams

    @property
    def image_size(self) -> tuple[int, int]:
        return self.input.image_size

    @property
    def input_name(self) -> str:
        """The input of a one-stream member."""
        return INPUTS[self.streams[0]]

    def describe(self) -> dict:
        """What a client needs to make this member's input (kvid.json, kvid_metadata)."""
        cfg = self.input
        meta = {"clip_frames": cfg.clip_frames, "image_size": list(cfg.image_size),
                "normalization": cfg.normalization_of(self.streams[0]),
                "sampling": cfg.sampling, "frame_step": cfg.frame_step,
                "num_segments": cfg.num_segments, "clip_aggregation": self.clip_aggregation,
                "modality": cfg.modality}
        if "flow" in self.streams:
            meta.update(flow_direction=cfg.flow_direction, flow_stack=cfg.flow_stack)
        if len(self.streams) == 1:
            meta["input"] = self.input_name
        else:
            meta["inputs"] = {INPUTS[s]: cfg.images_of(s) for s in self.streams}
        return {**meta, **(self.metadata or {})}

    @property
    def sources(self) -> tuple[str, ...]:
        """The record images (kvid.data.pipeline SOURCES) this member's clips are made of."""
        names = {SOURCES[s] for s in self.streams}
        if self.input.flow_direction == "bidirectional":
            names.add("flow_backward")
        return tuple(sorted(names))

    def sample(self, record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """A record's images (``{"rgb", "flow", "flow_backward"}``, as :attr:`sources`) ->
        the images evaluation shows this member, by the training's own gather: its sampling
        over the first stream, a two-stream flow centred on that clip, frame pairs."""
        cfg = self.input
        idx = temporal_indices(sample_positions(record, cfg), cfg.clip_frames,
                               sampling=cfg.sampling,
                               training=False, num_segments=cfg.num_segments,
                               frame_step=cfg.frame_step)
        return gather_streams(record, cfg, idx)

    def decode(self, jpegs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One clip's JPEG images per stream -> float32 pixels [images, H, W, C]."""
        return {s: decode_frames(x, self.image_size)[..., :CHANNELS[s]]
                for s, x in jpegs.items()}

    def parse_record(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """One serialized record -> its images by :attr:`sources` name."""
        sources = self.sources
        parsed = schema.parse_clip(serialized, with_flow="flow" in sources,
                                   with_backward="flow_backward" in sources)
        return {k: parsed[_FEATURES[k]] for k in sources}

    def record_pixels(self, record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """A record's images -> the pixels of the clip evaluation shows this member."""
        return self.decode(self.sample(record))

    def probabilities(self, pixels: dict[str, tf.Tensor]) -> tf.Tensor:
        """float32 pixels in [0, 255] per stream -> softmax scores in the export's label
        order."""
        x = {s: stream_values(normalize(p, self.input.normalization_of(s)), s)
             for s, p in pixels.items()}
        logits = clip_logits(self.model(x if len(x) > 1 else x[self.streams[0]],
                                        training=False), self.clip_aggregation)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        return probs if self.label_order is None else tf.gather(probs, self.label_order,
                                                                axis=-1)


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
    flow_frames: int | None = None,
) -> str:
    """Writes one model's SavedModel to ``export_dir`` atomically: a hidden temp folder
    beside it, then a rename, so a server watching the parent never loads half a SavedModel.

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
    them (JPEG bytes; 2 channels as pixels), normalized as in training; ``"rgb+flow"``: a
    two-stream model, the signatures take both (``flow_frames`` flow images a clip).
    """
    member = Member(model, InputConfig(clip_frames=clip_frames, image_size=image_size,
                                       sampling=sampling, num_segments=num_segments,
                                       frame_step=frame_step, modality=modality,
                                       normalize=normalization, flow_frames=flow_frames),
                    clip_aggregation)
    warmup = {member.input_name: warmup_frames} if warmup_frames else None
    return export_members([member], export_dir, labels=labels, top_k=top_k,
                          model_name=model_name, warmup=warmup, extra_metadata=extra_metadata,
                          overwrite=overwrite)


def _stream_inputs(members: Sequence[Member]) -> dict[str, tuple[int, int]]:
    """{input name: (T, channels)} in INPUTS order; the members reading one input must
    agree on its T (they share the clip a request sends)."""
    inputs = {}
    for m in members:
        for s in m.streams:
            name, frames = INPUTS[s], m.input.images_of(s)
            t, _ = inputs.setdefault(name, (frames, CHANNELS[s]))
            if t != frames:
                raise ValueError(f"the models reading {name!r} take clips of {t} and {frames} "
                                 "frames; a request sends one clip per input, so they must "
                                 "agree")
    order = list(INPUTS.values())
    return dict(sorted(inputs.items(), key=lambda kv: order.index(kv[0])))


def export_members(members: Sequence[Member], export_dir: str, *, labels: Sequence[str],
                   top_k: int | None = None, model_name: str = "kvid",
                   warmup: dict[str, Sequence[bytes]] | None = None,
                   extra_metadata: dict | None = None, overwrite: bool = False) -> str:
    """The SavedModel of :func:`export_saved_model` for one or more :class:`Member` models.

    Each signature takes one input per stream the members read (``frames`` and/or
    ``flow``); every member makes its own clip from it (its size, normalization and, from a
    record, its own frames) and the ``probabilities`` are the members' weighted mean of
    softmax scores. ``warmup``: JPEG frames per input name for the warm-up request.
    """
    if not members:
        raise ValueError("export needs at least one model")
    labels = [str(x) for x in labels]
    for m in members:
        outputs = m.model.outputs[0].shape[-1]
        if outputs != len(labels) or len(m.label_order or labels) != len(labels):
            raise ValueError(f"The model has {outputs} outputs but {len(labels)} labels were "
                             "given.")
    k = _check_top_k(top_k, len(labels))
    export_dir = os.path.normpath(export_dir)
    check_export_dir(export_dir, overwrite)
    inputs = _stream_inputs(members)
    names = list(inputs)
    label_table = tf.constant(labels)
    total_weight = float(sum(m.weight for m in members))

    def outputs_of(probs):
        scores, classes = tf.math.top_k(probs, k=k)
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: classes,
                LABELS_OUTPUT: tf.gather(label_table, classes), SCORES_OUTPUT: scores}

    def outputs_from_pixels(pixels_per_member):
        probs = None
        for m, pixels in zip(members, pixels_per_member):
            p = m.probabilities(pixels) * (m.weight / total_weight)
            probs = p if probs is None else probs + p
        return outputs_of(probs)

    def per_member(fn, tensors, keys=lambda m: m.streams):
        """fn(member, {key: one clip's tensor}) -> {stream: [images, H, W, C] float32},
        over the batch, for each member; ``tensors`` by key (default: by stream)."""
        out = []
        for m in members:
            specs = {s: tf.TensorSpec([m.input.images_of(s), *m.image_size, CHANNELS[s]],
                                      tf.float32) for s in m.streams}
            out.append(tf.map_fn(lambda x, m=m: fn(m, x), {k: tensors[k] for k in keys(m)},
                                 fn_output_signature=specs))
        return out

    def by_stream(tensors):
        return dict(zip([_STREAMS[n] for n in names], tensors))

    def serving_default(*jpegs):
        return outputs_from_pixels(per_member(Member.decode, by_stream(jpegs)))

    sources = sorted({k for m in members for k in m.sources})

    def serving_examples(examples):
        parsed = schema.parse_clips(examples, with_flow="flow" in sources,
                                    with_backward="flow_backward" in sources)
        return outputs_from_pixels(per_member(Member.record_pixels,
                                              {k: parsed[_FEATURES[k]] for k in sources},
                                              keys=lambda m: m.sources))

    def serving_tensor(*frames):
        return outputs_from_pixels(per_member(
            lambda m, clips: {s: resize_cover_crop(c, m.image_size) for s, c in clips.items()},
            by_stream(frames)))

    stream = _stream_signatures(members, outputs_of)
    if len(members) == 1:  # one model: its settings at the top level, as clients read them
        meta = {"labels": labels, **members[0].describe(), "top_k": k}
    else:
        meta = {"labels": labels, "top_k": k,
                "modality": "+".join(s for s, n in INPUTS.items() if n in inputs),
                "inputs": {n: t for n, (t, _) in inputs.items()},
                "members": [{**m.describe(), "weight": m.weight} for m in members]}
    if stream:  # the signatures a client runs frame by frame, carrying the states
        meta["stream"] = {"init": STREAM_INIT_SIGNATURE, "step": STREAM_STEP_SIGNATURE}
    meta.update(extra_metadata or {})
    meta_json = json.dumps(meta, indent=2)

    def kvid_metadata(request):
        return {METADATA_OUTPUT: tf.fill(tf.shape(request)[:1], meta_json)}

    with staged(export_dir, overwrite) as (tmp, out):
        asset_dir = os.path.join(tmp, "_assets_src")
        os.makedirs(asset_dir)
        labels_path = os.path.join(asset_dir, LABELS_FILE)
        with open(labels_path, "w") as f:
            f.write("\n".join(labels) + "\n")
        meta_path = os.path.join(asset_dir, PREPROCESSING_FILE)
        with open(meta_path, "w") as f:
            f.write(meta_json)

        # A plain tf.Module root: the Keras models' variables, the assets and the signature
        # functions are saved together (what keras.export.ExportArchive does, plus assets,
        # which its public API cannot attach).
        root = tf.Module()
        root.model = members[0].model
        root.members = [m.model for m in members]
        root.labels_asset = tf.saved_model.Asset(labels_path)
        root.metadata_asset = tf.saved_model.Asset(meta_path)
        signatures = {
            DEFAULT_SIGNATURE: tf.function(serving_default, input_signature=[
                tf.TensorSpec([None, t], tf.string, name=n) for n, (t, _) in inputs.items()]),
            EXAMPLES_SIGNATURE: tf.function(serving_examples, input_signature=[
                tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)]),
            TENSOR_SIGNATURE: tf.function(serving_tensor, input_signature=[
                tf.TensorSpec([None, t, None, None, c], tf.float32, name=n)
                for n, (t, c) in inputs.items()]),
            METADATA_SIGNATURE: tf.function(kvid_metadata, input_signature=[
                tf.TensorSpec([None], tf.string, name=METADATA_INPUT)]),
        }
        if stream:
            root.step_model = stream.pop("_step")
            signatures.update(stream)
        for name, fn in signatures.items():
            setattr(root, name, fn)
        tf.saved_model.save(root, out, signatures=signatures)
        warmup = dict(warmup or {})
        for n, (t, _) in inputs.items():  # a real clip when given, else a gray one
            frames = list(warmup.get(n) or [])
            warmup[n] = (frames * t)[:t] if frames else _gray_clip(t, *members[0].image_size)
        _write_warmup(out, model_name, {n: warmup[n] for n in inputs})
    return export_dir


def _stream_signatures(members: Sequence[Member], outputs_of) -> dict:
    """``stream_init`` and ``stream_step`` of a one-model export of a causal MoViNet
    (through its step model, which shares the model's weights); {} for any other."""
    from kvid.models.movinet import build_movinet_step, is_stream_model

    if len(members) != 1 or not is_stream_model(members[0].model):
        return {}
    m = members[0]
    step = build_movinet_step(m.model, m.image_size)
    states = [t for t in step.inputs if t.name != "rgb"]

    def stream_init(batch_size):
        return {t.name: tf.zeros(tf.concat([[batch_size], t.shape[1:]], 0), t.dtype)
                for t in states}

    def stream_step(frames, *values):
        pixels = tf.map_fn(lambda clip: decode_frames(clip, m.image_size), frames,
                           fn_output_signature=tf.TensorSpec([None, *m.image_size, 3],
                                                             tf.float32))
        probs, new = step_outputs(m, step, pixels, {t.name: v for t, v in zip(states, values)})
        return {**outputs_of(probs), **new}

    return {
        "_step": step,
        STREAM_INIT_SIGNATURE: tf.function(stream_init, input_signature=[
            tf.TensorSpec([], tf.int32, name=BATCH_SIZE_INPUT)]),
        STREAM_STEP_SIGNATURE: tf.function(stream_step, input_signature=[
            tf.TensorSpec([None, None], tf.string, name=FRAMES_INPUT),
            *(tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in states)]),
    }


def step_outputs(member: Member, step: keras.Model, pixels: tf.Tensor,
                 states: dict[str, tf.Tensor]) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """A stream model's step on float32 pixels [B, n, H, W, 3] in [0, 255] -> (softmax
    scores so far, in the export's label order; the new states)."""
    x = normalize(pixels, member.input.normalization_of("rgb"))
    out = step({"rgb": x, **states}, training=False)
    probs = tf.nn.softmax(tf.cast(out["logits"], tf.float32), axis=-1)
    if member.label_order is not None:
        probs = tf.gather(probs, member.label_order, axis=-1)
    return probs, {k: out[k] for k in states}


def _gray_clip(t: int, h: int, w: int) -> list[bytes]:
    from kvid.video.frames import encode_jpeg

    frame = encode_jpeg(np.full((h, w, 3), 128, np.uint8))
    return [frame] * t


def _write_warmup(saved_model_dir: str, model_name: str,
                  frames: dict[str, Sequence[bytes]]) -> None:
    """TF Serving replays these PredictionLogs at load (``--enable_model_warmup``)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=DEFAULT_SIGNATURE))
    for input_name, clip in frames.items():
        request.inputs[input_name].CopyFrom(tf.make_tensor_proto([list(clip)],
                                                                 dtype=tf.string))
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
