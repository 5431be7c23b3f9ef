"""torchvision's Kinetics-400 MViTs (``mvit_v2_s``, ``mvit_v1_b``) into
:func:`kvid.models.mvit.build_mvit`.

torchvision names (``torchvision.models.video.mvit``): ``conv_proj`` the patch embedding,
``pos_encoding`` the class token (and v1's ``spatial_pos``/``temporal_pos``/``class_pos``);
block ``i`` is ``blocks.i`` with ``norm1``, ``norm2``, ``attn.qkv``, ``attn.project.0``,
``attn.pool_{q,k,v}`` = ``Pool(pool=depthwise Conv3d, norm_act=Sequential(LayerNorm))``,
v2's ``attn.rel_pos_{h,w,t}``, ``mlp.0``/``mlp.3`` (Linear, GELU, Dropout, Linear) and
``project`` where the channels change; then ``norm`` and ``head = Sequential(Dropout,
Linear)``. The Keras layers carry the same names with ``_`` for ``.`` (``mlp_fc1``/``fc2``
for ``mlp.0``/``mlp.3``), paired here from the same block lists the builder reads.

The position tables are sized by the clip, so the published checkpoints (16x224x224) fit a
model of that size only; :func:`reference` builds torchvision's own configuration at
another size for parity checks there.
"""

from __future__ import annotations

import numpy as np

from kvid.models.mvit import (
    VARIANTS,
    ClassTokenPosition,
    PoolingAttention,
    TokenPool,
    block_specs,
)
from kvid.pretrained.checkpoint import channels_first, register_converter, torchvision_video

_TOP1 = {"mvit_v2_s": 80.757, "mvit_v1_b": 78.477}
_FILES = {"mvit_v2_s": "mvit_v2_s-ae3be167.pth", "mvit_v1_b": "mvit_v1_b-dbeb1030.pth"}


def _named(names):
    def convert(layer, state, prefix):
        keys = [f"{prefix}.{n}" for n in names(layer)]
        return [state[k] for k in keys], keys
    return convert


def _token_pool(layer, state, prefix):
    """Depthwise Conv3d weight (C, 1, kt, kh, kw) -> (kt, kh, kw, C, 1)."""
    key = f"{prefix}.weight"
    return [np.transpose(state[key], (2, 3, 4, 0, 1))], [key]


register_converter(ClassTokenPosition, _named(lambda layer: (
    ["class_token", "spatial_pos", "temporal_pos", "class_pos"] if layer.absolute
    else ["class_token"])))
register_converter(PoolingAttention, _named(lambda layer: ["rel_pos_h", "rel_pos_w",
                                                           "rel_pos_t"]))
register_converter(TokenPool, _token_pool)


def pairs(model, name: str) -> list[tuple[str, str]]:
    """Keras layer -> torchvision state-dict prefix, for every weighted layer of ``name``."""
    variant = VARIANTS[name]
    out = [("conv_proj", "conv_proj"), ("pos_encoding", "pos_encoding")]
    for i, spec in enumerate(block_specs(variant["blocks"])):
        k, t = f"blocks_{i}", f"blocks.{i}"
        out += [(f"{k}_norm1", f"{t}.norm1"), (f"{k}_norm2", f"{t}.norm2"),
                (f"{k}_attn_qkv", f"{t}.attn.qkv"), (f"{k}_attn_project", f"{t}.attn.project.0"),
                (f"{k}_mlp_fc1", f"{t}.mlp.0"), (f"{k}_mlp_fc2", f"{t}.mlp.3")]
        pooled = (["q"] if spec.pool_q else []) + (["k", "v"] if spec.pool_kv else [])
        for p in pooled:
            out += [(f"{k}_attn_pool_{p}", f"{t}.attn.pool_{p}.pool"),
                    (f"{k}_attn_pool_{p}_norm", f"{t}.attn.pool_{p}.norm_act.0")]
        if variant["rel_pos_embed"]:
            out.append((f"{k}_attn", f"{t}.attn"))
        if spec.project:
            out.append((f"{k}_project", f"{t}.project"))
    return out + [("norm", "norm"), ("logits", "head.1")]


def reference(name: str, temporal_size: int = 16, spatial_size=(224, 224)):
    """torchvision's ``name`` (random weights, eval mode) built for another clip size.

    ``mvit_v2_s()``/``mvit_v1_b()`` fix 16x224x224, so their own arguments to torchvision's
    ``_mvit`` (block lists and flags) are captured and passed on with the size replaced.
    """
    from unittest import mock

    from torchvision.models.video import mvit

    captured = {}
    with mock.patch.object(mvit, "_mvit", lambda **kwargs: captured.update(kwargs)):
        getattr(mvit, name)(weights=None)
    captured.update(temporal_size=temporal_size, spatial_size=tuple(spatial_size))
    return mvit._mvit(**captured).eval()


def _importer(name: str):
    from kvid.pretrained import Importer

    return Importer(
        source="torchvision", name=name, pairs=lambda model: pairs(model, name),
        head=("logits",), head_prefixes=("head",), top1=_TOP1[name],
        top1_source=f"torchvision {name} KINETICS400_V1 meta acc@1 (video level: 5 clips of "
        "16 frames at 7.5 fps)",
        reference=torchvision_video(name), reference_inputs=channels_first,
        checkpoint_name=_FILES[name])


IMPORTERS = [_importer(name) for name in VARIANTS]
