"""PyTorchVideo's Kinetics-400 SlowFast hub models (``slowfast_r50``, ``slowfast_r101``) into
:func:`kvid.models.slowfast.build_slowfast`.

PyTorchVideo names (``pytorchvideo.models.slowfast.create_slowfast``): ``blocks.0`` is the
stem, ``blocks.1``-``blocks.4`` the res2-res5 stages; each holds
``multipathway_blocks.{0: slow, 1: fast}`` and a ``multipathway_fusion`` (the lateral
``conv_fast_to_slow`` + ``norm``; none after res5). A stem is ``conv``/``norm``; a residual
block ``res_blocks.{i}`` has ``branch1_conv``/``branch1_norm`` (projection shortcut) and
``branch2.conv_{a,b,c}``/``norm_{a,b,c}``. ``blocks.5`` pools, ``blocks.6.proj`` is the head.
The hub's ``.pyth`` files nest the state dict under ``"model_state"``.
"""

from __future__ import annotations

from kvid.models.slowfast import RESNET_BOTTLENECK_DEPTHS, VARIANTS, slow_frame_indices
from kvid.pretrained.checkpoint import channels_first, conv_bn_pairs

# pytorchvideo docs/source/model_zoo.md, Kinetics-400 table (the hub docstrings say 76.4 for
# R50 and 77.9 for R101).
_TOP1 = {"slowfast_r50": 76.94, "slowfast_r101": 77.90}
_FILES = {"slowfast_r50": "SLOWFAST_8x8_R50.pyth", "slowfast_r101": "SLOWFAST_8x8_R101.pyth"}
_PATHWAYS = ("slow", "fast")


def pairs(model, depth: int) -> list[tuple[str, str]]:
    """Keras layer -> PyTorchVideo state-dict prefix, for every weighted layer."""
    out = []
    for p, pathway in enumerate(_PATHWAYS):
        stem = f"blocks.0.multipathway_blocks.{p}"
        out += conv_bn_pairs(f"{pathway}_stem", f"{stem}.conv", f"{stem}.norm")
    for stage, blocks in enumerate(RESNET_BOTTLENECK_DEPTHS[depth]):
        for p, pathway in enumerate(_PATHWAYS):
            for block in range(blocks):
                k = f"{pathway}_res{stage + 2}_{block}"
                t = f"blocks.{stage + 1}.multipathway_blocks.{p}.res_blocks.{block}"
                if block == 0:  # every stage's first block changes width: a projection
                    out += conv_bn_pairs(f"{k}_proj", f"{t}.branch1_conv", f"{t}.branch1_norm")
                for conv in "abc":
                    out += conv_bn_pairs(f"{k}_{conv}", f"{t}.branch2.conv_{conv}",
                                    f"{t}.branch2.norm_{conv}")
    for stage, keras_name in enumerate(("lateral_stem", "lateral_res2", "lateral_res3",
                                        "lateral_res4")):
        fusion = f"blocks.{stage}.multipathway_fusion"
        out += conv_bn_pairs(keras_name, f"{fusion}.conv_fast_to_slow", f"{fusion}.norm")
    out.append(("logits", "blocks.6.proj"))
    return out


def pack_pathways(clip, alpha: int = 4):
    """[B, T, H, W, C] numpy -> ``[slow, fast]`` [B, C, T, H, W] tensors, as PyTorchVideo's
    ``PackPathway``: fast is the clip, slow its ``torch.linspace(0, T-1, T//alpha).long()``
    frames (the frames kvid's model takes itself, :func:`slow_frame_indices`)."""
    import torch

    fast = channels_first(clip)
    index = torch.linspace(0, fast.shape[2] - 1, fast.shape[2] // alpha).long()
    if index.tolist() != slow_frame_indices(fast.shape[2], alpha).tolist():
        raise RuntimeError(f"kvid's slow frames differ from torch.linspace's: {index.tolist()}")
    return [torch.index_select(fast, 2, index), fast]


def _importer(name: str):
    from kvid.pretrained import Importer

    variant = VARIANTS[name]

    def reference():
        from pytorchvideo.models import hub

        return getattr(hub, name)(pretrained=False).eval()

    return Importer(
        source="pytorchvideo", name=name, pairs=lambda model: pairs(model, variant["depth"]),
        head_prefixes=("blocks.6.proj",),
        top1=_TOP1[name], top1_source="pytorchvideo docs/source/model_zoo.md, Kinetics-400 "
        f"SlowFast {name[-4:].upper()} 8x8 top 1 (3 crops x 10 clips)",
        reference=reference, reference_inputs=lambda clip: pack_pathways(clip, variant["alpha"]),
        checkpoint_name=_FILES[name], wrapper="model_state")


IMPORTERS = [_importer(name) for name in VARIANTS]
