"""torchvision's Kinetics-400 video ResNets (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) into
:func:`kvid.models.r2plus1d.build_r2plus1d`.

torchvision names (``torchvision.models.video.resnet``): ``stem`` is a Sequential of
conv/BN/ReLU (two pairs for R(2+1)D); a block's ``conv1``/``conv2`` are ``Sequential(conv,
BN[, ReLU])`` where the conv of R(2+1)D is itself ``Sequential(spatial conv, BN, ReLU,
temporal conv)``; ``downsample`` is ``Sequential(1x1x1 conv, BN)``; the head is ``fc``.
"""

from __future__ import annotations

from kvid.models.r2plus1d import RESNET_DEPTHS, VARIANTS, stage_conv_types
from kvid.pretrained.checkpoint import (channels_first, conv_bn_pairs, torchvision_video,
                                        weighted_layers)

_TOP1 = {"r2plus1d_18": 67.463, "r3d_18": 63.200, "mc3_18": 63.960}
_FILES = {"r2plus1d_18": "r2plus1d_18-91a641e6.pth", "r3d_18": "r3d_18-b3b3357e.pth",
          "mc3_18": "mc3_18-a90a0ba3.pth"}


def pairs(model, conv_type: str, depth: int = 18) -> list[tuple[str, str]]:
    """Keras layer -> torchvision state-dict prefix, for every weighted layer."""
    out = []
    if conv_type == "2plus1d":
        out += conv_bn_pairs("stem_s", "stem.0", "stem.1")
        out += conv_bn_pairs("stem_t", "stem.3", "stem.4")
    else:
        out += conv_bn_pairs("stem", "stem.0", "stem.1")
    for stage, (blocks, conv) in enumerate(zip(RESNET_DEPTHS[depth], stage_conv_types(conv_type))):
        for block in range(blocks):
            k, t = f"res{stage + 2}_{block}", f"layer{stage + 1}.{block}"
            for i in (1, 2):
                if conv == "2plus1d":
                    out += conv_bn_pairs(f"{k}_conv{i}_s", f"{t}.conv{i}.0.0", f"{t}.conv{i}.0.1")
                    out += conv_bn_pairs(f"{k}_conv{i}_t", f"{t}.conv{i}.0.3", f"{t}.conv{i}.1")
                else:
                    out += conv_bn_pairs(f"{k}_conv{i}", f"{t}.conv{i}.0", f"{t}.conv{i}.1")
            out += conv_bn_pairs(f"{k}_proj", f"{t}.downsample.0", f"{t}.downsample.1")
    out.append(("logits", "fc"))
    present = {layer.name for layer in weighted_layers(model)}
    return [(k, t) for k, t in out if k in present]  # blocks without a projection


def _importer(name: str):
    from kvid.pretrained import Importer

    conv_type = VARIANTS[name]["conv_type"]

    return Importer(
        source="torchvision", name=name, pairs=lambda model: pairs(model, conv_type),
        top1=_TOP1[name], top1_source=f"torchvision {name} KINETICS400_V1 meta acc@1 "
        "(video level: 5 clips of 16 frames at 15 fps)",
        reference=torchvision_video(name), reference_inputs=channels_first,
        checkpoint_name=_FILES[name])


IMPORTERS = [_importer(name) for name in VARIANTS]
