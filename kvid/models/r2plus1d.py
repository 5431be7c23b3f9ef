"""R(2+1)D, R3D and MC3 video ResNets: 3D convs factorized into spatial 2D then temporal 1D.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
CVPR 2018 (https://arxiv.org/abs/1711.11248). Layout and padding exactly as torchvision's
``r2plus1d_18``, ``r3d_18`` and ``mc3_18`` (``torchvision.models.video.resnet``), so their
Kinetics checkpoints convert (:mod:`kvid.pretrained.torchvision_resnet`).

```
[B,16,112,112,3] -> stem (1x7x7/(1,2,2) -> 3x1x1) -> res2 64 -> res3 128/2 -> res4 256/2
  -> res5 512/2 -> global average pool -> logits
(2+1)D conv: 1x3x3 (stride 1,s,s) -> BN -> ReLU -> 3x1x1 (stride s,1,1); the middle width M
keeps the parameters of the 3x3x3 conv it replaces: M = 27 N_in N_out / (9 N_in + 3 N_out).
```
"""

from __future__ import annotations

import functools

import keras
from keras import layers

from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    check_choice,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    conv_bn_act,
    pool_and_classify,
    video_input,
)

# Blocks per stage by depth (basic residual blocks).
RESNET_DEPTHS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
STAGE_WIDTHS = (64, 128, 256, 512)
CONV_TYPES = ("2plus1d", "3d", "mc3")
# torchvision's three Kinetics-400 video ResNets, as builder kwargs.
VARIANTS = {"r2plus1d_18": {"conv_type": "2plus1d"}, "r3d_18": {"conv_type": "3d"},
            "mc3_18": {"conv_type": "mc3"}}


def midplanes(in_planes: int, out_planes: int) -> int:
    """Width between the 2D and 1D convs matching a 3x3x3 conv's parameter count."""
    return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


def _strides(strides: int, temporal: bool) -> tuple[int, int, int]:
    return (strides if temporal else 1, strides, strides)


def st_conv(x, filters: int, *, mid: int, strides: int, conv_type: str, name: str,
            activation: str | None = "relu", temporal_stride: bool = True):
    """One spatiotemporal conv + BN (+ activation): a (2+1)D pair, a 3x3x3 conv (``"3d"``)
    or a 1x3x3 conv (``"2d"``: MC3's later stages, no temporal stride)."""
    if conv_type == "3d":
        return conv_bn_act(x, filters, 3, strides=_strides(strides, temporal_stride),
                           padding=(1, 1, 1), name=name, activation=activation)
    if conv_type == "2d":
        return conv_bn_act(x, filters, (1, 3, 3), strides=(1, strides, strides),
                           padding=(0, 1, 1), name=name, activation=activation)
    x = conv_bn_act(x, mid, (1, 3, 3), strides=(1, strides, strides), padding=(0, 1, 1),
                    name=f"{name}_s")
    return conv_bn_act(x, filters, (3, 1, 1), strides=_strides(strides, temporal_stride)[:1] + (1, 1),
                       padding=(1, 0, 0), name=f"{name}_t", activation=activation)


def basic_block(x, filters: int, *, strides: int, conv_type: str, name: str,
                temporal_stride: bool = True):
    """Residual basic block of two spatiotemporal convs (1x1x1 projection shortcut if needed)."""
    in_planes = x.shape[-1]
    mid = midplanes(in_planes, filters)  # torchvision uses the block's input width for both
    shortcut = x
    if strides != 1 or in_planes != filters:
        temporal = temporal_stride and conv_type != "2d"
        shortcut = conv_bn_act(x, filters, 1, strides=_strides(strides, temporal),
                               padding=(0, 0, 0), activation=None, name=f"{name}_proj")
    y = st_conv(x, filters, mid=mid, strides=strides, conv_type=conv_type, name=f"{name}_conv1",
                temporal_stride=temporal_stride)
    y = st_conv(y, filters, mid=mid, strides=1, conv_type=conv_type, name=f"{name}_conv2",
                activation=None)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def stage_conv_types(conv_type: str) -> tuple[str, str, str, str]:
    """The conv of each stage: MC3 ("mixed convolutions") keeps 3D convs in the first stage
    only and 1x3x3 convs after it."""
    return ("3d", "2d", "2d", "2d") if conv_type == "mc3" else (conv_type,) * 4


def video_resnet_trunk(x, *, depth: int, widths, conv_type: str, temporal_strides: bool = True,
                       prefix: str = ""):
    """Stem and the four residual stages of R(2+1)D / R3D / MC3; returns the last feature map."""
    stem_width = widths[0]
    if conv_type == "2plus1d":
        x = conv_bn_act(x, max(1, stem_width * 45 // 64), (1, 7, 7), strides=(1, 2, 2),
                        padding=(0, 3, 3), name=f"{prefix}stem_s")
        x = conv_bn_act(x, stem_width, (3, 1, 1), padding=(1, 0, 0), name=f"{prefix}stem_t")
    else:
        x = conv_bn_act(x, stem_width, (3, 7, 7), strides=(1, 2, 2), padding=(1, 3, 3),
                        name=f"{prefix}stem")
    for stage, (blocks, width, conv) in enumerate(zip(RESNET_DEPTHS[depth], widths,
                                                     stage_conv_types(conv_type))):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = basic_block(x, width, strides=strides, conv_type=conv,
                            temporal_stride=temporal_strides,
                            name=f"{prefix}res{stage + 2}_{block}")
    return x


def check_resnet_args(depth, widths, conv_type):
    check_choice(depth, RESNET_DEPTHS, "depth")
    check_choice(conv_type, CONV_TYPES, "conv_type")
    return check_int_tuple(widths, "widths", length=4)


def build_r2plus1d(input_shape=(16, 112, 112, 3), num_classes: int = 400, *, depth: int = 18,
                   widths=STAGE_WIDTHS, conv_type: str = "2plus1d", dropout: float = 0.0,
                   name: str = "r2plus1d") -> keras.Model:
    """R(2+1)D-18 (Tran et al. 2018); ``conv_type="3d"`` gives R3D-18 and ``"mc3"`` MC3-18
    with the same layout (:data:`VARIANTS`).

    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses 8 or 16 frames of 112x112 (T, H, W may
            be None for variable clip sizes).
        num_classes: 400 for Kinetics.
        depth: 10, 18 or 34 (basic blocks per stage from :data:`RESNET_DEPTHS`).
        widths: output channels of the four stages.
        conv_type: ``"2plus1d"``, ``"3d"`` or ``"mc3"``.
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    widths = check_resnet_args(depth, widths, conv_type)
    check_rate(dropout)
    inputs = video_input(input_shape, "rgb")
    x = video_resnet_trunk(inputs, depth=depth, widths=widths, conv_type=conv_type)
    logits = pool_and_classify(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _variant(name: str, description: str, params: int) -> ModelInfo:
    return make_info(
        functools.partial(build_r2plus1d, **VARIANTS[name], name=name), "rgb", description,
        "Tran et al., A Closer Look at Spatiotemporal Convolutions, CVPR 2018",
        (16, 112, 112, 3), normalization="kinetics", fps=15.0, published_params=params,
        params_source=f"torchvision {name} KINETICS400_V1 weights meta num_params",
        tiny_kwargs={"depth": 10, "widths": (4, 8, 8, 16)})


# torchvision's recipe: 16 frames at 15 fps, resized to 128x171 and center-cropped to 112.
ZOO = {
    "r2plus1d_18": _variant("r2plus1d_18", "torchvision R(2+1)D-18 (Kinetics-400 importable).",
                            31_505_325),
    "r3d_18": _variant("r3d_18", "torchvision R3D-18: 3x3x3 convs throughout.", 33_371_472),
    "mc3_18": _variant("mc3_18", "torchvision MC3-18: 3D convs in the first stage, 2D after.",
                       11_695_440),
}
