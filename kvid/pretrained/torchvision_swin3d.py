"""torchvision's Kinetics-400 Video Swin Transformers (``swin3d_t``, ``swin3d_s``,
``swin3d_b``) into :func:`kvid.models.swin3d.build_swin3d`.

torchvision names (``torchvision.models.video.swin_transformer``): ``patch_embed.proj`` /
``patch_embed.norm``; ``features`` alternates stages (``features.0, 2, 4, 6``: Sequentials
of blocks with ``norm1``, ``attn.{qkv, proj, relative_position_bias_table,
relative_position_index}``, ``norm2``, ``mlp.0`` / ``mlp.3``) and patch mergings
(``features.1, 3, 5``: ``norm``, ``reduction``); then ``norm`` and the head ``head``.
"""

from __future__ import annotations

import numpy as np

from kvid.models.swin3d import VARIANTS, SwinWindowAttention3D
from kvid.pretrained.checkpoint import (CheckpointMismatch, channels_first, register_converter,
                                        torchvision_video)

# Weights meta acc@1 (KINETICS400_V1) and _ops (GFLOPs at 32x224x224) in torchvision 0.29.
_TOP1 = {"swin3d_t": 77.715, "swin3d_s": 79.521, "swin3d_b": 79.427}
_FILES = {"swin3d_t": "swin3d_t-7615ae03.pth", "swin3d_s": "swin3d_s-da41c237.pth",
          "swin3d_b": "swin3d_b_1k-24f7c7c6.pth"}


def _window_attention(layer, state, prefix):
    """qkv / proj linears (transposed), the bias table as is; the stored relative position
    index is checked against the layer's window (a checkpoint of another window fails)."""
    names = ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias", "relative_position_bias_table")
    qkv_w, qkv_b, proj_w, proj_b, table = (state[f"{prefix}.{n}"] for n in names)
    index_key = f"{prefix}.relative_position_index"
    index = state[index_key]
    if index.shape == layer.full_index.shape and not np.array_equal(index, layer.full_index):
        raise CheckpointMismatch(f"{index_key} is not the relative position index of a "
                                 f"{layer.window_size} window ({layer.name})")
    return ([qkv_w.T, qkv_b, proj_w.T, proj_b, table],
            [f"{prefix}.{n}" for n in names] + [index_key])


register_converter(SwinWindowAttention3D, _window_attention)


def pairs(model, depths) -> list[tuple[str, str]]:
    """Keras layer -> torchvision state-dict prefix, for every weighted layer."""
    out = [("patch_embed_proj", "patch_embed.proj"), ("patch_embed_norm", "patch_embed.norm")]
    for stage, depth in enumerate(depths):
        for block in range(depth):
            k, t = f"stage{stage + 1}_block{block}", f"features.{2 * stage}.{block}"
            out += [(f"{k}_norm1", f"{t}.norm1"), (f"{k}_attn", f"{t}.attn"),
                    (f"{k}_norm2", f"{t}.norm2"), (f"{k}_mlp_fc1", f"{t}.mlp.0"),
                    (f"{k}_mlp_fc2", f"{t}.mlp.3")]
        if stage < len(depths) - 1:
            k, t = f"merge{stage + 1}", f"features.{2 * stage + 1}"
            out += [(f"{k}_norm", f"{t}.norm"), (f"{k}_reduction", f"{t}.reduction")]
    return out + [("norm", "norm"), ("logits", "head")]


def _importer(name: str):
    from kvid.pretrained import Importer

    depths = VARIANTS[name]["depths"]

    return Importer(
        source="torchvision", name=name, pairs=lambda model: pairs(model, depths),
        head_prefixes=("head",), top1=_TOP1[name],
        top1_source=f"torchvision {name} KINETICS400_V1 meta acc@1 (video level: 12 clips "
        "of 32 frames at 15 fps)",
        reference=torchvision_video(name), reference_inputs=channels_first,
        checkpoint_name=_FILES[name])


IMPORTERS = [_importer(name) for name in VARIANTS]
