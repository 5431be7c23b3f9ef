"""TF Lite export of one model, for phones and edge devices (``kvid export --tflite``).

The output is a folder: ``model.tflite``, ``labels.txt`` and ``kvid.json`` (the export's
preprocessing JSON plus a ``"tflite"`` entry). The ``.tflite`` file has

- ``serving_default``: one float32 input per stream (``frames``, ``flow``, ``frame_pairs``),
  [1, T, H, W, C] pixels in [0, 255] at the model's own size -> ``probabilities`` [1, C].
  A device's camera gives pixels and TF Lite's builtin ops decode no JPEG, so the app
  resizes (``kvid.json`` says to what); normalization is in the graph, as in the SavedModel.
- for a stream MoViNet, ``stream_step``: ``frames`` [1, 1, H, W, 3] and the states ->
  ``probabilities`` for everything seen so far and the new states (names as the SavedModel's
  ``stream_step``). The app starts a video with zeros of the input shapes and carries the
  states, as a TF Serving client does.

``float16`` stores the weights as float16; ``int8`` quantizes weights and activations,
calibrated on clips of the run's training shards (each also stepped frame by frame for
``stream_step``), with float32 inputs and outputs so one app serves all three. int8 is refused
for a model with 3D convolutions (TF Lite's CONV_3D is float only; MoViNet's 1 x k x k ones
are computed as 2D convs) or recurrent layers (the calibrator crashes on their loop).
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kvid.data.pipeline import CHANNELS
from kvid.serving.contract import (DEFAULT_SIGNATURE, FRAMES_INPUT, LABELS_FILE,
                                   PREPROCESSING_FILE, PROBABILITIES_OUTPUT,
                                   STREAM_STEP_SIGNATURE, TFLITE_FILE)
from kvid.train.export import INPUTS, Member, check_export_dir, staged, step_outputs

QUANTIZATIONS = ("float32", "float16", "int8")


def clip_specs(member: Member) -> dict[str, tf.TensorSpec]:
    """The clip signature's inputs: pixels at the model's size, a batch of one."""
    return {INPUTS[s]: tf.TensorSpec([1, member.input.images_of(s), *member.image_size,
                                      CHANNELS[s]], tf.float32, name=INPUTS[s])
            for s in member.streams}


def calibration_clips(member: Member, data_dir: str, *, split: str = "train",
                      count: int = 100) -> tf.data.Dataset:
    """Up to ``count`` clips of a split's shards as the TF Lite model takes them ({input
    name: pixels [T, H, W, C]}), gathered and decoded as ``serving_examples`` does."""
    from kvid.data.sources import resolve_files

    files, compression = resolve_files(data_dir, split)
    records = tf.data.TFRecordDataset(files, compression_type=compression).take(count)
    return records.map(lambda r: {INPUTS[s]: p for s, p in
                                  member.record_pixels(member.parse_record(r)).items()})


def export_tflite(member: Member, output_dir: str, *, labels: Sequence[str],
                  quantization: str = "float32",
                  calibration: Iterable[dict[str, np.ndarray]] | None = None,
                  metadata: dict | None = None, overwrite: bool = False) -> str:
    """Writes ``output_dir`` (see the module doc) atomically: a hidden temp folder beside
    it, then a rename; an existing non-empty one is replaced only with ``overwrite``.

    ``calibration`` (``int8`` only, required there): clips as :func:`calibration_clips`
    gives them.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}. "
                         f"Received: {quantization!r}")
    if quantization == "int8" and calibration is None:
        raise ValueError("int8 quantization needs calibration clips")
    if quantization == "int8":
        _check_int8(member.model)
    labels = [str(x) for x in labels]
    output_dir = os.path.normpath(output_dir)
    check_export_dir(output_dir, overwrite)
    step = _step_model(member)
    specs = clip_specs(member)

    def clip(*pixels):
        probs = member.probabilities({member.streams[i]: p for i, p in enumerate(pixels)})
        return {PROBABILITIES_OUTPUT: probs}

    # keras' ExportArchive: it saves the Keras variables as the converter can freeze them
    # (under a plain tf.Module they stay resource variables the interpreter leaves empty)
    archive = keras.export.ExportArchive()
    archive.track(member.model)
    archive.add_endpoint(DEFAULT_SIGNATURE, clip, input_signature=list(specs.values()))
    signatures = [DEFAULT_SIGNATURE]
    states = {}
    if step is not None:
        archive.track(step)
        states = {t.name: tf.TensorSpec([1, *t.shape[1:]], t.dtype, name=t.name)
                  for t in step.inputs if t.name != "rgb"}
        frame = tf.TensorSpec([1, 1, *member.image_size, 3], tf.float32, name=FRAMES_INPUT)

        def stream_step(frames, *values):
            probs, new = step_outputs(member, step, frames, dict(zip(states, values)))
            return {PROBABILITIES_OUTPUT: probs, **new}

        archive.add_endpoint(STREAM_STEP_SIGNATURE, stream_step,
                             input_signature=[frame, *states.values()])
        signatures.append(STREAM_STEP_SIGNATURE)

    with staged(output_dir, overwrite) as (tmp, out):
        saved = os.path.join(tmp, "saved_model")
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved,
                                                             signature_keys=signatures)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = lambda: _representative(member, step,
                                                                       calibration, states)
        content = converter.convert()
        os.makedirs(out)
        with open(os.path.join(out, TFLITE_FILE), "wb") as f:
            f.write(content)
        with open(os.path.join(out, LABELS_FILE), "w") as f:
            f.write("\n".join(labels) + "\n")
        meta = {"labels": labels, **member.describe(), **(metadata or {}),
                "tflite": {"file": TFLITE_FILE, "quantization": quantization,
                           "inputs": {n: list(spec.shape) for n, spec in specs.items()},
                           "pixels": "float32 in [0, 255] at image_size",
                           "signatures": signatures}}
        if states:
            meta["tflite"]["states"] = {n: list(s.shape) for n, s in states.items()}
        with open(os.path.join(out, PREPROCESSING_FILE), "w") as f:
            json.dump(meta, f, indent=2)
    return output_dir


def _check_int8(model) -> None:
    """Refuses the layers TF Lite cannot run in int8: CONV_3D has float kernels only, and
    the calibrator crashes the process on a Keras RNN's loop."""
    from kvid.models.movinet import FrameConv  # a Conv3D computed as 2D convs
    from kvid.pretrained.checkpoint import weighted_layers

    for layer in weighted_layers(model):
        conv3d = isinstance(layer, keras.layers.Conv3D) and not isinstance(layer, FrameConv)
        kind = ("3D convolutions" if conv3d else
                "recurrent layers" if isinstance(layer, (keras.layers.RNN,
                                                         keras.layers.Bidirectional))
                else None)
        if kind:
            raise ValueError(f"int8 TF Lite cannot quantize this model's {kind} (layer "
                             f"{layer.name!r}); export it with --tflite float16 or float32")


def _step_model(member: Member):
    from kvid.models.movinet import build_movinet_step, is_stream_model

    if is_stream_model(member.model) and member.streams == ("rgb",):
        return build_movinet_step(member.model, member.image_size, frames=1)
    return None


def _representative(member: Member, step, clips, states: dict):
    """What the int8 calibrator runs: each clip whole and, for a stream model, stepped a
    frame at a time from zero states by the Keras step model (so the states' ranges are
    those of real videos)."""
    for c in clips:
        c = {k: np.asarray(v, np.float32)[None] for k, v in c.items()}
        yield DEFAULT_SIGNATURE, c
        if step is None:
            continue
        s = {k: tf.zeros(spec.shape, spec.dtype) for k, spec in states.items()}
        for t in range(c[FRAMES_INPUT].shape[1]):
            frame = c[FRAMES_INPUT][:, t:t + 1]
            yield STREAM_STEP_SIGNATURE, {FRAMES_INPUT: frame,
                                          **{k: v.numpy() for k, v in s.items()}}
            _, s = step_outputs(member, step, tf.constant(frame), s)


class TFLiteModel:
    """An exported TF Lite folder run in the TF Lite interpreter (what an app does)."""

    def __init__(self, path: str, num_threads: int | None = None):
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        with open(os.path.join(folder, PREPROCESSING_FILE)) as f:
            self.meta = json.load(f)
        self.interpreter = tf.lite.Interpreter(
            model_path=os.path.join(folder, self.meta["tflite"]["file"]),
            num_threads=num_threads)
        self._clip = self.interpreter.get_signature_runner(DEFAULT_SIGNATURE)
        self._step = (self.interpreter.get_signature_runner(STREAM_STEP_SIGNATURE)
                      if STREAM_STEP_SIGNATURE in self.meta["tflite"]["signatures"] else None)

    @property
    def labels(self) -> list[str]:
        return self.meta["labels"]

    def clip(self, **pixels: np.ndarray) -> np.ndarray:
        """Pixels [T, H, W, C] per input -> probabilities [C]."""
        out = self._clip(**{k: np.asarray(v, np.float32)[None] for k, v in pixels.items()})
        return out[PROBABILITIES_OUTPUT][0]

    def _stream_step(self):
        if self._step is None:
            raise ValueError("this TF Lite model has no stream_step (not a stream MoViNet)")
        return self._step

    def initial_states(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(d["shape"], d["dtype"])
                for k, d in self._stream_step().get_input_details().items()
                if k != FRAMES_INPUT}

    def step(self, frame: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        """One frame [H, W, 3] and the states -> (probabilities so far [C], new states)."""
        out = self._stream_step()(**{FRAMES_INPUT: np.asarray(frame, np.float32)[None, None]},
                         **states)
        probs = out.pop(PROBABILITIES_OUTPUT)[0]
        return probs, out
