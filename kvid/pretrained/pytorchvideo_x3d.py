"""PyTorchVideo's Kinetics-400 X3Ds (``x3d_xs``, ``x3d_s``, ``x3d_m``, ``x3d_l``) into
:func:`kvid.models.x3d.build_x3d`.

pytorchvideo names (``pytorchvideo.models.x3d.create_x3d``): ``blocks.0`` is the stem, whose
``Conv2plus1d`` calls its 1x3x3 spatial conv ``conv_t`` and its 5x1x1 depthwise temporal
conv ``conv_xy`` (swapped, but run spatial first); ``blocks.1`` ... ``blocks.4`` are the
stages of ``res_blocks`` with ``branch1_conv``/``branch1_norm`` (shortcut) and ``branch2``
(``conv_a``/``norm_a``, depthwise ``conv_b``, ``norm_b.0`` = BN and ``norm_b.1`` = SE with
``block.0``/``block.2`` its 1x1x1 convs, ``conv_c``/``norm_c``); ``blocks.5`` is the head:
``pool.pre_conv``/``pool.pre_norm``, ``pool.post_conv`` (1x1x1, no BN) and ``proj``.
The hub files (``X3D_M.pyth``) nest the state dict under ``"model_state"``.

pytorchvideo's hub X3Ds end in a softmax (``head_activation=nn.Softmax``): they return
probabilities, kvid returns the logits before it. The references here are built with
``head_activation=None`` (no weights change) so that the parity checks compare logits.
"""

from __future__ import annotations

import math

from kvid.models.x3d import BASE_DEPTHS, X3D_VARIANTS
from kvid.pretrained.checkpoint import channels_first

# pytorchvideo's hub docstrings (hub/x3d.py) and docs/source/model_zoo.md (XS, S, M).
_TOP1 = {"XS": 69.12, "S": 73.33, "M": 75.94, "L": 77.44}
_POST_CONV = "blocks.5.pool.post_conv.weight"


def convert_state(state: dict) -> dict:
    """The head's 1x1x1 post-pool conv ``(2048, 432, 1, 1, 1)`` as the linear layer it is on
    the pooled 1x1x1 map (kvid's ``head_fc`` Dense)."""
    w = state.get(_POST_CONV)
    if w is not None and w.ndim == 5 and w.shape[2:] == (1, 1, 1):
        state = {**state, _POST_CONV: w.reshape(w.shape[:2])}
    return state


def pairs(variant: str) -> list[tuple[str, str]]:
    """Keras layer -> pytorchvideo state-dict prefix for every weighted layer of X3D-``variant``
    (block counts and shortcut/SE placement from the variant's spec, as create_x3d builds)."""
    spec = X3D_VARIANTS[variant]
    out = [("stem_xy_conv", "blocks.0.conv.conv_t"), ("stem_t_conv", "blocks.0.conv.conv_xy"),
           ("stem_t_bn", "blocks.0.norm")]
    for stage, base in enumerate(BASE_DEPTHS):
        for block in range(int(math.ceil(spec.depth_factor * base))):
            k, t = f"res{stage + 2}_{block}", f"blocks.{stage + 1}.res_blocks.{block}"
            if block == 0:  # strided shortcut; its BN only where the width changes (not res2)
                out.append((f"{k}_proj_conv", f"{t}.branch1_conv"))
                if stage > 0:
                    out.append((f"{k}_proj_bn", f"{t}.branch1_norm"))
            out += [(f"{k}_a_conv", f"{t}.branch2.conv_a"), (f"{k}_a_bn", f"{t}.branch2.norm_a"),
                    (f"{k}_b_conv", f"{t}.branch2.conv_b"), (f"{k}_b_bn", f"{t}.branch2.norm_b.0")]
            if block % 2 == 0:
                out += [(f"{k}_se_reduce", f"{t}.branch2.norm_b.1.block.0"),
                        (f"{k}_se_expand", f"{t}.branch2.norm_b.1.block.2")]
            out += [(f"{k}_c_conv", f"{t}.branch2.conv_c"), (f"{k}_c_bn", f"{t}.branch2.norm_c")]
    out += [("head_conv_conv", "blocks.5.pool.pre_conv"),
            ("head_conv_bn", "blocks.5.pool.pre_norm"),
            ("head_fc", "blocks.5.pool.post_conv"), ("logits", "blocks.5.proj")]
    return out


def reference_model(variant: str, input_shape=None):
    """pytorchvideo's X3D-``variant`` (random weights, eval mode, logits out).

    Without ``input_shape`` it is the hub model itself (``pytorchvideo.models.hub.x3d_m``),
    whose head pool kernel fits the recipe clip. For another clip ``(T, H, W, 3)`` it is
    ``create_x3d`` built for that clip (the hub function fixes the clip arguments), with the
    pool kernel widened to ``ceil(W / 32)`` where ``W != H`` (create_x3d takes square crops
    only): the same weights, the pool covering the whole feature map as at the recipe size.
    """
    if input_shape is None:
        from pytorchvideo.models import hub

        return getattr(hub, f"x3d_{variant.lower()}")(pretrained=False,
                                                      head_activation=None).eval()
    from pytorchvideo.models.x3d import create_x3d

    frames, height, width = input_shape[:3]
    model = create_x3d(input_clip_length=frames, input_crop_size=height,
                       depth_factor=X3D_VARIANTS[variant].depth_factor, head_activation=None)
    model.blocks[5].pool.pool.kernel_size = (frames, math.ceil(height / 32), math.ceil(width / 32))
    return model.eval()


def _importer(variant: str):
    from kvid.pretrained import Importer

    name = f"x3d_{variant.lower()}"
    return Importer(
        source="pytorchvideo", name=name, pairs=lambda model: pairs(variant),
        head_prefixes=("blocks.5.proj",), top1=_TOP1[variant],
        top1_source=f"pytorchvideo hub {name} docstring (pytorchvideo/models/hub/x3d.py)"
        + ("" if variant == "L" else " and docs/source/model_zoo.md, 3 crops x 10 clips"),
        reference=lambda: reference_model(variant), reference_inputs=channels_first,
        checkpoint_name=f"X3D_{variant}.pyth", convert_state=convert_state,
        wrapper="model_state")


IMPORTERS = [_importer(variant) for variant in X3D_VARIANTS]
