"""X3D: a tiny 2D net expanded along time, space, width and depth (XS, S, M, L as data).

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020
(https://arxiv.org/abs/2004.04730). Layout as pytorchvideo's ``create_x3d``.

```
[B,T,S,S,3] -> stem (1x3x3/(1,2,2) conv 24 -> 5x1x1 depthwise) -> res2 24 -> res3 48 -> res4 96
  -> res5 192 (each stage /2 in space) -> 1x1x1 conv 432 -> global pool -> fc 2048 -> logits
block: 1x1x1 (x2.25) -> 3x3x3 depthwise -> SE (every other block) -> swish -> 1x1x1 (+ residual)
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

from kvid.models.layers import (
    check_choice,
    check_input_shape,
    check_positive_float,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    depthwise_bn_act,
    video_input,
)


@dataclass(frozen=True)
class X3DSpec:
    """One X3D variant: its input (frames, crop size) and depth expansion."""

    frames: int
    crop_size: int
    depth_factor: float
    gflops: float  # published, single view at the training crop (PySlowFast model zoo)
    params_m: float  # published, millions (pytorchvideo model zoo; the paper rounds: 3.8 / 6.1)


X3D_VARIANTS: dict[str, X3DSpec] = {
    "XS": X3DSpec(4, 160, 2.2, 0.60, 3.79),
    "S": X3DSpec(13, 160, 2.2, 1.96, 3.79),
    "M": X3DSpec(16, 224, 2.2, 4.73, 3.79),
    "L": X3DSpec(16, 312, 5.0, 18.37, 6.15),
}
BASE_DEPTHS = (1, 2, 5, 3)
STAGE_WIDTHS = (24, 48, 96, 192)


def round_width(width: float, multiplier: float = 1.0, min_width: int = 8, divisor: int = 8) -> int:
    """Rounds ``width * multiplier`` to a multiple of ``divisor`` (X3D / MobileNet rule)."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


def squeeze_excite(x, ratio: float, *, name: str):
    """Squeeze-and-excitation (Hu et al. 2018) over a 5D feature map."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling3D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv3D(round_width(channels, ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv3D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def x3d_block(x, width: int, inner: int, *, strides: int, use_se: bool, se_ratio: float, name: str):
    shortcut = x
    if strides != 1 or x.shape[-1] != width:
        shortcut = conv_bn_act(x, width, 1, strides=(1, strides, strides), activation=None,
                               name=f"{name}_proj")
    y = conv_bn_act(x, inner, 1, name=f"{name}_a")
    y = depthwise_bn_act(y, 3, strides=(1, strides, strides), activation=None, name=f"{name}_b")
    if use_se:
        y = squeeze_excite(y, se_ratio, name=f"{name}_se")
    y = layers.Activation("swish", name=f"{name}_b_swish")(y)
    y = conv_bn_act(y, width, 1, activation=None, name=f"{name}_c")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_x3d(input_shape=(16, 224, 224, 3), num_classes: int = 400, *, variant: str = "M",
              width_multiplier: float = 1.0, depth_factor: float | None = None,
              bottleneck_factor: float = 2.25, se_ratio: float = 0.0625, head_width: int = 2048,
              dropout: float = 0.5, name: str | None = None) -> keras.Model:
    """X3D-XS/S/M/L (Feichtenhofer 2020); the variants differ in input and depth only.

    Args:
        input_shape: ``(T, H, W, 3)``; the variant's reference input is
            ``(X3D_VARIANTS[v].frames, crop, crop, 3)`` (T, H, W may be None).
        num_classes: 400 for Kinetics.
        variant: ``"XS"``, ``"S"``, ``"M"`` or ``"L"`` (see :data:`X3D_VARIANTS`).
        width_multiplier: scales stage widths (1.0 = paper; for tiny test models).
        depth_factor: overrides the variant's depth expansion (blocks = ceil(factor * base)).
        bottleneck_factor: inner width of each block relative to its output (2.25).
        se_ratio: squeeze-excitation reduction, applied in every other block.
        head_width: width of the fully connected layer before the logits.
        dropout: before the logits layer.
    """
    check_choice(variant, X3D_VARIANTS, "variant")
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(head_width, "head_width")
    check_rate(dropout)
    spec = X3D_VARIANTS[variant]
    depth_factor = spec.depth_factor if depth_factor is None else depth_factor
    check_positive_float(depth_factor, "depth_factor")
    check_positive_float(width_multiplier, "width_multiplier")

    widths = [round_width(w, width_multiplier) for w in STAGE_WIDTHS]
    inputs = video_input(input_shape, "rgb")
    x = layers.Conv3D(widths[0], (1, 3, 3), strides=(1, 2, 2), padding="same", use_bias=False,
                      name="stem_xy_conv")(inputs)
    x = depthwise_bn_act(x, (5, 1, 1), name="stem_t")
    for stage, (base, width) in enumerate(zip(BASE_DEPTHS, widths)):
        inner = int(bottleneck_factor * width)
        for block in range(int(math.ceil(depth_factor * base))):
            x = x3d_block(x, width, inner, strides=2 if block == 0 else 1, use_se=block % 2 == 0,
                          se_ratio=se_ratio, name=f"res{stage + 2}_{block}")
    x = conv_bn_act(x, int(bottleneck_factor * widths[-1]), 1, name="head_conv")
    x = layers.GlobalAveragePooling3D(name="head_pool")(x)
    x = layers.Dense(head_width, activation="relu", use_bias=False, name="head_fc")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name or f"x3d_{variant.lower()}")
