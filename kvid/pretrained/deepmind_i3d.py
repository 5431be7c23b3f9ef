"""DeepMind's Kinetics I3D checkpoints (github deepmind/kinetics-i3d, ``data/checkpoints``)
into the ``i3d_rgb`` / ``i3d_flow`` / ``i3d_rgb600`` variants of
:func:`kvid.models.i3d.build_i3d`.

They are TF1 checkpoints of Sonnet modules (read with ``tf.train.load_checkpoint``, no
Sonnet needed): every ``Unit3D`` has ``<unit>/conv_3d/w`` (already Keras' ``(kt, kh, kw,
in, out)`` layout) and ``<unit>/batch_norm/{beta,moving_mean,moving_variance}``; the head
is ``Logits/Conv3d_0c_1x1/conv_3d/{w,b}``. The Kinetics-400 files put them under
``RGB/inception_i3d/`` or ``Flow/inception_i3d/`` with BN statistics of shape ``[C]``;
``rgb_scratch_kin600`` has no scope, ``[1, 1, 1, 1, C]`` statistics and the SGD
``.../Momentum`` slots (DeepMind's evaluate_sample.py strips the scope and restores with
``reshape=True``). One quirk of DeepMind's i3d.py is kept: Mixed_5b's Branch_2 3x3x3 conv
is named ``Conv3d_0a_3x3``.

The same weights as a TF1 Hub module or SavedModel folder (``saved_model.pb`` beside
``variables/``) are read from its variables; a scope around DeepMind's (a graph that
imported the module as ``module/``) is dropped, DeepMind's own scope is still required.
"""

from __future__ import annotations

import numpy as np

from kvid.models.i3d import INCEPTION_V1

# Per checkpoint: the variable scope, labels, published top-1 and the file DeepMind ships.
_CHECKPOINTS = {
    "i3d_rgb": ("RGB/inception_i3d/", "kinetics400", 71.1, "rgb_imagenet/model.ckpt"),
    "i3d_flow": ("Flow/inception_i3d/", "kinetics400", 63.4, "flow_imagenet/model.ckpt"),
    "i3d_rgb600": ("", "kinetics600", None, "rgb_scratch_kin600/model.ckpt"),
}
_TOP1_SOURCE = {
    "i3d_rgb": "deepmind/kinetics-i3d README.md, Kinetics test set top-1: RGB-I3D 71.1 "
               "(rgb_imagenet, ImageNet + Kinetics); 68.4 for rgb_scratch (Kinetics only)",
    "i3d_flow": "deepmind/kinetics-i3d README.md, Kinetics test set top-1: Flow-I3D 63.4 "
                "(flow_imagenet, ImageNet + Kinetics); 61.5 for flow_scratch (Kinetics only)",
    "i3d_rgb600": "deepmind/kinetics-i3d publishes no accuracy for rgb_scratch_kin600",
}

# kvid branch suffix -> DeepMind's Branch_k/Conv3d_... name inside a Mixed block.
_BRANCHES = {"b0": "Branch_0/Conv3d_0a_1x1", "b1a": "Branch_1/Conv3d_0a_1x1",
             "b1b": "Branch_1/Conv3d_0b_3x3", "b2a": "Branch_2/Conv3d_0a_1x1",
             "b2b": "Branch_2/Conv3d_0b_3x3", "b3b": "Branch_3/Conv3d_0b_1x1"}
# DeepMind's i3d.py names this one 0a (every other Mixed block's is 0b).
_QUIRKS = {("mixed_5b", "b2b"): "Branch_2/Conv3d_0a_3x3"}
HEAD_UNIT = "Logits/Conv3d_0c_1x1"
_BN = {"beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _endpoint(layer_name: str) -> str:
    return layer_name[0].upper() + layer_name[1:]  # conv3d_1a_7x7 -> Conv3d_1a_7x7


def units() -> list[tuple[str, str]]:
    """``(kvid layer prefix, DeepMind unit path)`` of every Unit3D but the logits, from
    kvid's layer table."""
    out = []
    for kind, name, *_ in INCEPTION_V1:
        if kind == "conv":
            out.append((name, _endpoint(name)))
        elif kind == "mixed":
            out += [(f"{name}_{b}", f"{_endpoint(name)}/{_QUIRKS.get((name, b), path)}")
                    for b, path in _BRANCHES.items()]
    return out


def pairs(scope: str) -> list[tuple[str, str]]:
    """Keras layer -> checkpoint prefix (after :func:`convert_state`), every weighted layer."""
    out = []
    for keras_name, unit in units():
        out += [(f"{keras_name}_conv", f"{scope}{unit}/conv_3d"),
                (f"{keras_name}_bn", f"{scope}{unit}/batch_norm")]
    return out + [("logits", f"{scope}{HEAD_UNIT}/conv_3d")]


STEM = "Conv3d_1a_7x7/conv_3d/w"


def _outer_scope(state: dict, scope: str) -> str:
    """What precedes ``scope`` in the stem's name (``""`` in DeepMind's files)."""
    for key in state:
        if key.endswith(scope + STEM):
            return key[: -len(scope + STEM)]
    return ""


def convert_state(state: dict[str, np.ndarray], scope: str = "") -> dict[str, np.ndarray]:
    """Sonnet's names and layouts -> the ``.weight``/``.bias``/``.running_*`` convention
    :func:`kvid.pretrained.checkpoint.assign` pairs by (conv kernels channels-first).

    Optimizer slots (``.../Momentum``) and ``global_step`` are dropped; any other unknown
    tensor is kept as it is, so :func:`assign` reports it as unexpected.
    """
    outer = _outer_scope(state, scope)
    out = {}
    for key, value in state.items():
        if outer and key.startswith(outer):
            key = key[len(outer):]
        if key == "global_step":
            continue
        parent, _, leaf = key.rpartition("/")
        if leaf == "Momentum":
            continue
        module = parent.rpartition("/")[2]
        if module == "conv_3d" and leaf == "w" and value.ndim == 5:
            out[f"{parent}.weight"] = np.transpose(value, (4, 3, 0, 1, 2))
        elif module == "conv_3d" and leaf == "b":
            out[f"{parent}.bias"] = value
        elif module == "batch_norm" and leaf in _BN:
            if value.ndim > 1 and all(d == 1 for d in value.shape[:-1]):
                value = value.reshape(value.shape[-1:])  # newer Sonnet keeps [1, 1, 1, 1, C]
            out[f"{parent}.{_BN[leaf]}"] = value
        else:
            out[key] = value
    return out


def _importer(name: str):
    from kvid.pretrained import Importer

    scope, labels, top1, checkpoint = _CHECKPOINTS[name]
    return Importer(
        source="deepmind", name=name, pairs=lambda model: pairs(scope), head=("logits",),
        head_prefixes=(f"{scope}{HEAD_UNIT}/conv_3d",), labels=labels, top1=top1,
        top1_source=_TOP1_SOURCE[name], reference=None, reference_inputs=None,
        checkpoint_name=checkpoint,
        convert_state=lambda state: convert_state(state, scope))


IMPORTERS = [_importer(name) for name in _CHECKPOINTS]
