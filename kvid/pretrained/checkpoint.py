"""Reading published checkpoints safely and setting their tensors into kvid's Keras layers.

A checkpoint is read into a flat ``{name: numpy array}`` dict (:func:`read_checkpoint`):
PyTorch files with ``torch.load(weights_only=True)`` (tensors only, no pickled code),
safetensors without torch, TensorFlow checkpoints with ``tf.train.load_checkpoint``.
:func:`assign` then sets every weight of a Keras model from it, given the pairing of Keras
layers to checkpoint prefixes, and refuses anything but an exact fit: a missing or unused
tensor or a shape mismatch raises :class:`CheckpointMismatch` naming the first ones, before
any weight is set (never a half-loaded model).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import keras
import numpy as np

from kvid.models.layers import DepthwiseConv3D

# Wrappers publishers put around a state dict: PySlowFast/PyTorchVideo "model_state",
# Lightning and MMAction2 "state_dict", others "model".
_WRAPPERS = ("model_state", "state_dict", "model", "module")
# PyTorch bookkeeping tensors with no Keras counterpart (BatchNorm's step counter).
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_SHOW = 5  # mismatching names listed in an error


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit the model (another architecture, missing/extra tensors,
    or wrong shapes)."""


def torch_required(what: str) -> ImportError:
    from kvid.validate import MissingExtra

    return MissingExtra(f"{what} needs PyTorch, which kvid's main install leaves out: install "
                       "the conversion extra with `bash scripts/install.sh --convert` "
                       "(torch, torchvision, pytorchvideo)")


def checkpoint_exists(path: str) -> bool:
    """A file, a folder, or a TF checkpoint prefix (``model.ckpt`` beside ``model.ckpt.index``)."""
    return os.path.exists(path) or _is_tf_checkpoint(path)


def read_checkpoint(path: str) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` from a PyTorch (.pt/.pth/.pyth), safetensors or TF checkpoint."""
    path = os.fspath(path)
    if os.path.isdir(path) or _is_tf_checkpoint(path):
        return read_tf_checkpoint(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return _as_float32(load_file(path))
    return read_torch_checkpoint(path)


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
    """A PyTorch state dict, loaded with ``weights_only=True``: tensors and plain containers
    only, so a file that would run code when unpickled is refused, not executed."""
    try:
        import torch
    except ImportError:
        raise torch_required(f"reading the PyTorch checkpoint {path}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (pickle and zip errors have no common base)
        raise CheckpointMismatch(f"{path} is not a PyTorch state dict that loads with "
                                 f"weights_only=True: {str(e).splitlines()[0]}") from None
    state = _unwrap(obj, path)
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[_strip_module(key)] = value.detach().cpu().float().numpy() \
                if value.is_floating_point() else value.cpu().numpy()
    return out


def _unwrap(obj, path: str) -> dict:
    for _ in range(3):  # e.g. {"model_state": {...}} or {"state_dict": {"model": {...}}}
        if not isinstance(obj, dict):
            break
        if any(_is_tensor(v) for v in obj.values()):
            return obj
        inner = [obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)]
        if not inner:
            break
        obj = inner[0]
    raise CheckpointMismatch(f"{path} holds no state dict (a dict of tensors, possibly under "
                             f"one of {', '.join(_WRAPPERS)}). Received: {type(obj).__name__}"
                             + (f" with keys {', '.join(map(str, list(obj)[:_SHOW]))}"
                                if isinstance(obj, dict) else ""))


def _is_tensor(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key  # DataParallel saves


def _is_tf_checkpoint(path: str) -> bool:
    return os.path.exists(path + ".index") or path.endswith(".index")


def read_tf_checkpoint(path: str) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint (a prefix, its ``.index`` file or a folder holding
    one, e.g. DeepMind's ``rgb_imagenet/model.ckpt``), or of a SavedModel / TF1 Hub module
    folder (its ``variables/variables`` checkpoint)."""
    import tensorflow as tf

    if path.endswith(".index"):
        path = path[: -len(".index")]
    saved_model = os.path.join(path, "variables", "variables")
    if os.path.isdir(path) and os.path.exists(saved_model + ".index"):
        path = saved_model
    elif os.path.isdir(path):
        found = tf.train.latest_checkpoint(path)
        if found is None:
            indexes = sorted(f for f in os.listdir(path) if f.endswith(".index"))
            if not indexes:
                raise FileNotFoundError(f"{path} holds no TensorFlow checkpoint (*.index)")
            found = os.path.join(path, indexes[0][: -len(".index")])
        path = found
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name)
            for name in reader.get_variable_to_shape_map()}


def _as_float32(state: dict) -> dict[str, np.ndarray]:
    return {_strip_module(k): (v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v)
            for k, v in state.items()}


# --------------------------------------------------------------------------- references


def channels_first(clip):
    """[B, T, H, W, C] numpy -> the [B, C, T, H, W] tensor torch video models take."""
    import torch

    return torch.from_numpy(clip).permute(0, 4, 1, 2, 3).contiguous()


def torchvision_video(name: str):
    """A builder of ``torchvision.models.video.<name>`` with random weights, in eval mode
    (an importer's ``reference``)."""

    def reference():
        from torchvision.models import video

        return getattr(video, name)(weights=None).eval()

    return reference


# --------------------------------------------------------------------------- assigning

# One converter per Keras layer class: (layer, state, prefix) -> (arrays in the order of
# layer.weights, checkpoint keys they used). PyTorch's layouts are channels-first:
# conv (O, I, *k) -> Keras (*k, I, O); linear (O, I) -> (I, O).
Converter = Callable[[keras.layers.Layer, dict, str], tuple[list[np.ndarray], list[str]]]


def _conv(layer, state, prefix):
    w = state[f"{prefix}.weight"]
    arrays, used = [np.transpose(w, (*range(2, w.ndim), 1, 0))], [f"{prefix}.weight"]
    if layer.use_bias:
        arrays.append(state[f"{prefix}.bias"])
        used.append(f"{prefix}.bias")
    return arrays, used


def _dense(layer, state, prefix):
    arrays, used = [state[f"{prefix}.weight"].T], [f"{prefix}.weight"]
    if layer.use_bias:
        arrays.append(state[f"{prefix}.bias"])
        used.append(f"{prefix}.bias")
    return arrays, used


def _batch_norm(layer, state, prefix):
    names = []
    if layer.scale:
        names.append("weight")
    if layer.center:
        names.append("bias")
    names += ["running_mean", "running_var"]
    return [state[f"{prefix}.{n}"] for n in names], [f"{prefix}.{n}" for n in names]


def _layer_norm(layer, state, prefix):
    names = (["weight"] if layer.scale else []) + (["bias"] if layer.center else [])
    return [state[f"{prefix}.{n}"] for n in names], [f"{prefix}.{n}" for n in names]


def _depthwise(layer, state, prefix):
    """A grouped conv, one group per channel: ``(C, 1, kt, kh, kw)`` -> ``(kt, kh, kw, C, 1)``."""
    w = state[f"{prefix}.weight"]
    return [np.transpose(w, (2, 3, 4, 0, 1)) if w.ndim == 5 else w], [f"{prefix}.weight"]


CONVERTERS: dict[type, Converter] = {
    keras.layers.Conv1D: _conv, keras.layers.Conv2D: _conv, keras.layers.Conv3D: _conv,
    keras.layers.Dense: _dense, keras.layers.BatchNormalization: _batch_norm,
    keras.layers.LayerNormalization: _layer_norm, DepthwiseConv3D: _depthwise,
}


def register_converter(layer_class: type, converter: Converter) -> None:
    """How the tensors of a custom layer class come out of a checkpoint."""
    CONVERTERS[layer_class] = converter


def _converter(layer) -> Converter:
    for cls in type(layer).__mro__:
        if cls in CONVERTERS:
            return CONVERTERS[cls]
    raise TypeError(f"no checkpoint converter for {type(layer).__name__} layer {layer.name!r}")


def conv_bn_pairs(keras_name: str, conv: str, bn: str) -> list[tuple[str, str]]:
    """The pairs of a :func:`kvid.models.layers.conv_bn_act` block (``{name}_conv``,
    ``{name}_bn``) with a checkpoint's conv and BatchNorm prefixes."""
    return [(f"{keras_name}_conv", conv), (f"{keras_name}_bn", bn)]


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers owning weights directly (nested models flattened), in graph order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += weighted_layers(layer)
        elif layer.weights:
            out.append(layer)
    return out


def assign(model: keras.Model, state: dict[str, np.ndarray], pairs: Iterable[tuple[str, str]],
           *, source: str, skip_layers: Iterable[str] = (),
           skip_keys: Callable[[str], bool] | None = None) -> int:
    """Sets every weight of ``model`` from ``state``; returns the number of tensors used.

    Args:
        pairs: ``(keras layer name, checkpoint prefix)`` for every weighted layer.
        source: what the checkpoint should be (for errors), e.g. ``"torchvision:r3d_18"``.
        skip_layers: Keras layers left as they are (a new classification head).
        skip_keys: checkpoint names deliberately not used (the old head's).

    Raises:
        CheckpointMismatch: a layer without a pairing, a missing or unused checkpoint
            tensor, or a shape mismatch, listing the first few; nothing is set then.
    """
    skip_layers = set(skip_layers)
    pairs = {k: v for k, v in pairs if k not in skip_layers}
    updates, used, missing, shapes = [], set(), [], []
    unpaired = [layer.name for layer in weighted_layers(model)
                if layer.name not in pairs and layer.name not in skip_layers]
    for layer in weighted_layers(model):
        if layer.name in skip_layers or layer.name not in pairs:
            continue
        prefix = pairs.pop(layer.name)
        try:
            arrays, keys = _converter(layer)(layer, state, prefix)
        except KeyError as e:
            missing.append(f"{e.args[0]} (for {layer.name})")
            continue
        used.update(keys)
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            shapes.append(f"{prefix} {got} -> {layer.name} {expected}")
            continue
        updates.append((layer, arrays))
    stale = sorted(pairs)  # pairings naming layers the model does not have
    unused = sorted(k for k in state if k not in used and not k.endswith(_IGNORED_SUFFIXES)
                    and not (skip_keys and skip_keys(k)))
    problems = [(what, names) for what, names in (
        ("missing from the checkpoint", missing), ("shape mismatch", shapes),
        ("not in the checkpoint's pairing", unpaired), ("pairing names unknown layers", stale),
        ("unexpected in the checkpoint", unused)) if names]
    if problems:
        lines = [f"{len(names)} {what}: {', '.join(names[:_SHOW])}"
                 + (", ..." if len(names) > _SHOW else "") for what, names in problems]
        raise CheckpointMismatch(f"the checkpoint does not fit {source} "
                                 f"({model.name}): " + "; ".join(lines))
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return len(used)
