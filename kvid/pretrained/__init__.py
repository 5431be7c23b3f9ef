"""Published checkpoints (torchvision, PyTorchVideo, DeepMind) as kvid Keras models.

``load_pretrained("torchvision:r2plus1d_18", path)`` builds the zoo model of that name and
sets every weight from the user's checkpoint file (nothing is downloaded); with
``num_classes`` it gets a new head for fine-tuning instead of the source's. Each source
model has an :class:`Importer` here: how its checkpoint's tensors pair with the Keras
layers, its classes, and how its reference implementation is built (for the parity tests
and benchmarks, which need the conversion extra: torch, torchvision, pytorchvideo).
The preprocessing a converted model needs (normalization, clip length, frame size, frame
rate) is its :class:`kvid.models.ModelInfo`'s.
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from kvid.pretrained.checkpoint import (CheckpointMismatch, assign, read_checkpoint,
                                        read_torch_checkpoint, torch_required)

SOURCES = ("torchvision", "pytorchvideo", "deepmind")
METADATA_FILE = "kvid.json"  # the zip entry a converted .keras file carries its facts in


@dataclass(frozen=True)
class Importer:
    """How one published model's checkpoint becomes the kvid model of the same name.

    Attributes:
        source: ``"torchvision"``, ``"pytorchvideo"`` or ``"deepmind"``.
        name: the source's model name, also the kvid registry name (``"r2plus1d_18"``).
        pairs: ``model -> [(keras layer name, checkpoint prefix), ...]`` for every
            weighted layer of the kvid model.
        head: Keras layer names of the classification head (new when fine-tuning).
        head_prefixes: checkpoint prefixes of the source's head (unused when fine-tuning).
        labels: the package label list of the source's classes (``"kinetics400"``).
        top1: the publisher's Kinetics top-1 (%) for its checkpoint; ``top1_source`` says
            where it is printed.
        reference: builds the reference implementation (a torch module, random weights,
            eval mode) for tests and benchmarks; needs the conversion extra.
        reference_inputs: [B, T, H, W, C] numpy clip -> the reference's input.
        checkpoint_name: the file name the publisher distributes.
        kwargs: builder keyword arguments beyond the registry entry's.
        convert_state: optional rewrite of the read checkpoint before pairing.
        wrapper: the key the publisher's file nests the state dict under (PyTorchVideo's
            ``"model_state"``), None for a bare state dict; the parity tests save so.
    """

    source: str
    name: str
    pairs: Callable
    head: tuple[str, ...] = ("logits",)
    head_prefixes: tuple[str, ...] = ("fc",)
    labels: str = "kinetics400"
    top1: float | None = None
    top1_source: str = ""
    reference: Callable | None = None
    reference_inputs: Callable | None = None
    checkpoint_name: str = ""
    kwargs: dict = field(default_factory=dict)
    convert_state: Callable | None = None
    wrapper: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.source}:{self.name}"

    def is_head_key(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.head_prefixes)


def _collect() -> dict[str, Importer]:
    from kvid.pretrained import (deepmind_i3d, pytorchvideo_resnet, pytorchvideo_slowfast,
                                 pytorchvideo_x3d, torchvision_mvit, torchvision_resnet,
                                 torchvision_s3d, torchvision_swin3d)

    modules = (torchvision_resnet, torchvision_s3d, torchvision_mvit, torchvision_swin3d,
               pytorchvideo_resnet, pytorchvideo_x3d, pytorchvideo_slowfast, deepmind_i3d)
    return {imp.spec: imp for module in modules for imp in module.IMPORTERS}


IMPORTERS: dict[str, Importer] = _collect()


def get_importer(spec: str) -> Importer:
    """The importer of ``"source:name"``; ValueError listing the valid ones otherwise."""
    if spec in IMPORTERS:
        return IMPORTERS[spec]
    raise ValueError(f"Unknown pretrained source. Valid sources: {', '.join(sorted(IMPORTERS))}. "
                     f"Received: {spec!r}")


def importers_for(model: str) -> list[Importer]:
    """Importers converting into the zoo model ``model`` (``kvid models`` lists them)."""
    return [imp for imp in IMPORTERS.values() if imp.name == model]


def parse_pretrained(value: str, model: str | None = None) -> tuple[Importer | None, str]:
    """``--pretrained``: ``SOURCE:PATH`` (the checkpoint of ``model`` from SOURCE),
    ``SOURCE:NAME:PATH``, or a path to a kvid ``.keras`` / ``.weights.h5`` file (importer None)."""
    head, sep, rest = value.partition(":")
    if not sep or head not in SOURCES:
        return None, value
    name, sep2, path = rest.partition(":")
    if sep2 and f"{head}:{name}" in IMPORTERS:
        return IMPORTERS[f"{head}:{name}"], path
    if model is None:
        raise ValueError(f"--pretrained {value}: say which model, e.g. {head}:NAME:PATH")
    return get_importer(f"{head}:{model}"), rest


def label_names(list_name: str) -> list[str]:
    """A class list shipped with kvid (``kinetics400``, ``kinetics600``), one name per line."""
    path = resources.files("kvid.pretrained") / "labels" / f"{list_name}.txt"
    if not path.is_file():
        raise ValueError(f"Unknown label list {list_name!r}")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_pretrained(spec: str, path: str, num_classes: int | None = None, *,
                    input_shape=None, **kwargs):
    """The kvid model of ``spec`` (``"torchvision:r2plus1d_18"``) with the weights in ``path``.

    Args:
        spec: ``"source:name"``, one of :data:`IMPORTERS`.
        path: the checkpoint file (or TF checkpoint folder) the user has.
        num_classes: None keeps the source's head and classes (``label_names``); a number
            builds a new, randomly initialized head of that many classes for fine-tuning.
        input_shape: ``(T, H, W, 3)``; default the source recipe's (T, H, W may be None).
        kwargs: more builder keyword arguments (e.g. ``dropout``).

    Raises:
        CheckpointMismatch: the file is another architecture or does not fit exactly.
    """
    from kvid.models.registry import build_model, get_model_info

    importer = get_importer(spec)
    info = get_model_info(importer.name)
    source_classes = len(label_names(importer.labels))
    new_head = num_classes is not None
    model = build_model(importer.name, input_shape or info.reference_input_shape,
                        num_classes if num_classes is not None else source_classes,
                        **{**importer.kwargs, **kwargs})
    state = read_checkpoint(path)
    if importer.convert_state is not None:
        state = importer.convert_state(state)
    assign(model, state, importer.pairs(model), source=spec,
           skip_layers=importer.head if new_head else (),
           skip_keys=importer.is_head_key if new_head else None)
    return model


def head_layers(model_name: str, importer: Importer | None = None) -> tuple[str, ...]:
    """The classification head's layer names (what fine-tuning replaces and trains)."""
    importer = importer or next(iter(importers_for(model_name)), None)
    return importer.head if importer is not None else ("logits",)


def freeze_backbone(model, model_name: str, freeze: bool = True, importer=None) -> None:
    """Makes every layer but the head untrainable (BatchNorm then runs in inference mode)."""
    if not freeze:
        return
    head = set(head_layers(model_name, importer))
    missing = head - {layer.name for layer in model.layers}
    if missing:
        raise ValueError(f"cannot freeze the backbone of {model.name!r}: no head layer "
                         f"{', '.join(sorted(missing))}")
    for layer in model.layers:
        layer.trainable = layer.name in head


def transfer_weights(source, target, head: tuple[str, ...], *, origin: str) -> None:
    """Copies a kvid model's weights into ``target`` by layer name, the head only where its
    shape fits: anything else that does not fit raises :class:`CheckpointMismatch`."""
    from kvid.pretrained.checkpoint import weighted_layers

    by_name = {layer.name: layer for layer in weighted_layers(source)}
    missing, shapes, updates = [], [], []
    for layer in weighted_layers(target):
        other = by_name.get(layer.name)
        if other is None:
            if layer.name not in head:
                missing.append(layer.name)
            continue
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(w.shape) for w in other.weights]
        if want != got:
            if layer.name not in head:
                shapes.append(f"{layer.name} {got} -> {want}")
            continue
        updates.append((layer, other.get_weights()))
    if missing or shapes:
        raise CheckpointMismatch(
            f"{origin} does not fit {target.name}: "
            + "; ".join(f"{len(v)} {k}: {', '.join(v[:5])}" for k, v in
                        (("layers missing", missing), ("shape mismatch", shapes)) if v))
    for layer, weights in updates:
        layer.set_weights(weights)


def pretrained_model(value: str, model_name: str, *, input_shape, num_classes: int,
                     freeze: bool = False, **kwargs):
    """The model ``kvid train --pretrained VALUE`` starts from: a published checkpoint
    (``SOURCE:PATH``) or a kvid ``.keras`` file, with a new head of ``num_classes``."""
    import keras

    from kvid.models.registry import build_model

    importer, path = parse_pretrained(value, model_name)
    if importer is not None:
        model = load_pretrained(importer.spec, path, num_classes, input_shape=input_shape,
                                **kwargs)
    else:
        model = build_model(model_name, input_shape, num_classes, **kwargs)
        if path.endswith(".keras"):
            import kvid.models  # noqa: F401  (registers the zoo's layers for loading)

            transfer_weights(keras.models.load_model(path, compile=False), model,
                             head_layers(model_name), origin=path)
        else:
            model.load_weights(path)  # .weights.h5 of the same model: every shape must fit
    freeze_backbone(model, model_name, freeze, importer)
    return model


def metadata(importer: Importer, input_shape=None) -> dict:
    """What a converted model needs to be fed and served as its source was trained."""
    from kvid.models.registry import get_model_info

    info = get_model_info(importer.name)
    frames, height, width, _ = input_shape or info.reference_input_shape
    return {"source": importer.spec, "model": importer.name, "labels": label_names(importer.labels),
            "normalization": info.normalization, "clip_frames": frames,
            "image_size": [height, width], "fps": info.fps}


def save_converted(model, importer: Importer, output: str, *, overwrite: bool = False,
                   input_shape=None) -> str:
    """Writes ``model`` as a ``.keras`` file carrying :func:`metadata` (a ``kvid.json`` zip
    entry, which Keras ignores), atomically: a temp file in the same folder, then a rename."""
    if not output.endswith(".keras"):
        raise ValueError(f"the output must be a .keras file. Received: {output}")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists (use --overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(output)[:-6]}.tmp-{os.getpid()}-"
                               f"{secrets.token_hex(4)}.keras")
    try:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(METADATA_FILE, json.dumps(metadata(importer, input_shape), indent=1))
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output


def read_metadata(path: str) -> dict | None:
    """The facts :func:`save_converted` stored in a ``.keras`` file (None for other files)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(METADATA_FILE))
    except (KeyError, zipfile.BadZipFile, FileNotFoundError, IsADirectoryError):
        return None


def random_clip(input_shape, seed: int = 0, batch: int = 1) -> np.ndarray:
    """A normalized-range float32 clip ``[batch, T, H, W, C]`` for parity checks."""
    return np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)


__all__ = ["IMPORTERS", "SOURCES", "CheckpointMismatch", "Importer", "assign",
           "freeze_backbone", "get_importer", "head_layers", "importers_for", "label_names",
           "load_pretrained", "metadata", "parse_pretrained", "pretrained_model", "random_clip",
           "read_checkpoint", "read_metadata", "read_torch_checkpoint", "save_converted",
           "torch_required", "transfer_weights"]
