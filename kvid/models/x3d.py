"""X3D: a tiny 2D net expanded along time, space, width and depth (XS, S, M, L as data).

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020
(https://arxiv.org/abs/2004.04730). Computes exactly what pytorchvideo's ``create_x3d``
(the ``torch.hub`` models ``x3d_xs`` ... ``x3d_l``) computes, so their checkpoints convert
(:mod:`kvid.pretrained.pytorchvideo_x3d`); padding is PyTorch's, symmetric, because
TensorFlow's "same" pads stride-2 convs one more at the end and shifts every window.

```
[B,T,S,S,3] -> stem (1x3x3/(1,2,2) conv 24 -> 5x1x1 depthwise -> BN, ReLU) -> res2 24
  -> res3 48 -> res4 96 -> res5 192 (each stage /2 in space) -> 1x1x1 conv 432, BN, ReLU
  -> global pool -> fc 2048 (no BN), ReLU -> dropout -> logits
block: 1x1x1 (x2.25) -> 3x3x3 depthwise -> BN -> SE (every other block) -> swish -> 1x1x1
  -> BN, + shortcut (1x1x1 conv, BN only where the width changes), ReLU
```
pytorchvideo's head averages with a fixed ``AvgPool3d`` whose kernel is the feature map
of the build-time clip (e.g. 16x7x7 for X3D-M at 16x224x224): at that size it is the
global pool used here, which also takes any other clip size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import keras
from keras import layers

from kvid.models.info import make_info
from kvid.models.layers import (
    DepthwiseConv3D,
    check_choice,
    check_input_shape,
    check_positive_float,
    check_positive_int,
    check_rate,
    classifier_head,
    explicit_padding,
    video_input,
)

# PyTorch's BatchNorm3d(eps=1e-5, momentum=0.1) as X3D is trained: Keras' momentum is
# the weight of the old running statistic (1 - 0.1).
BN_EPSILON, BN_MOMENTUM = 1e-5, 0.9


@dataclass(frozen=True)
class X3DSpec:
    """One X3D variant: its recipe input (frames, one every ``sample_rate`` of 30 fps,
    crop size) and depth expansion."""

    frames: int
    crop_size: int
    depth_factor: float
    sample_rate: int  # pytorchvideo model_zoo.md "frame length x sample rate" (Kinetics, 30 fps)
    gflops: float  # published, single view at the training crop (PySlowFast MODEL_ZOO.md)
    params_m: float  # published, millions (pytorchvideo model_zoo.md; PySlowFast: 3.8 / 6.2)


# L is not in pytorchvideo's model zoo table: its hub docstring, PySlowFast's X3D_L config
# (16x5, 312px) and the parameters of pytorchvideo's x3d_l built (6,153,384).
X3D_VARIANTS: dict[str, X3DSpec] = {
    "XS": X3DSpec(4, 160, 2.2, 12, 0.60, 3.79),
    "S": X3DSpec(13, 160, 2.2, 6, 1.96, 3.79),
    "M": X3DSpec(16, 224, 2.2, 5, 4.73, 3.79),
    "L": X3DSpec(16, 312, 5.0, 5, 18.37, 6.15),
}
BASE_DEPTHS = (1, 2, 5, 3)
STAGE_WIDTHS = (24, 48, 96, 192)


def round_width(width: float, multiplier: float = 1.0, min_width: int = 8, divisor: int = 8) -> int:
    """Rounds ``width * multiplier`` to a multiple of ``divisor`` (X3D / MobileNet rule)."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


def batch_norm(x, name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def conv_bn(x, filters: int, *, strides=1, activation: str | None = "relu", use_bn: bool = True,
            name: str):
    """1x1x1 conv (no bias) -> BN -> activation, layers ``{name}_conv/_bn/_{activation}``."""
    x = layers.Conv3D(filters, 1, strides=strides, use_bias=False, name=f"{name}_conv")(x)
    if use_bn:
        x = batch_norm(x, f"{name}_bn")
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def depthwise_bn(x, kernel_size, *, strides=1, name: str):
    """Depthwise conv padded ``k // 2`` on both sides (as PyTorch) -> BN."""
    x = DepthwiseConv3D(kernel_size, strides=strides, padding=[k // 2 for k in kernel_size],
                        name=f"{name}_conv")(x)
    return batch_norm(x, f"{name}_bn")


def squeeze_excite(x, ratio: float, *, name: str):
    """Squeeze-and-excitation (Hu et al. 2018) over a 5D feature map (fvcore's: biased
    1x1x1 convs, reduced width ``round_width(channels * ratio)``, at least 8)."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling3D(keepdims=True, name=f"{name}_squeeze")(x)
    s = layers.Conv3D(round_width(channels, ratio), 1, activation="relu", name=f"{name}_reduce")(s)
    s = layers.Conv3D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return layers.Multiply(name=f"{name}_scale")([x, s])


def x3d_block(x, width: int, inner: int, *, strides: int, use_se: bool, se_ratio: float, name: str):
    """pytorchvideo's X3D residual block: the shortcut is a strided 1x1x1 conv where the
    block downsamples, with a BN only where the width changes too (res2's first block,
    24 -> 24 at stride 2, has none)."""
    shortcut = x
    if strides != 1 or x.shape[-1] != width:
        shortcut = conv_bn(x, width, strides=(1, strides, strides), activation=None,
                           use_bn=x.shape[-1] != width, name=f"{name}_proj")
    y = conv_bn(x, inner, name=f"{name}_a")
    y = depthwise_bn(y, (3, 3, 3), strides=(1, strides, strides), name=f"{name}_b")
    if use_se:
        y = squeeze_excite(y, se_ratio, name=f"{name}_se")
    y = layers.Activation("swish", name=f"{name}_b_swish")(y)
    y = conv_bn(y, width, activation=None, name=f"{name}_c")
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
    x, padding = explicit_padding(inputs, (0, 1, 1), (1, 3, 3), (1, 2, 2), name="stem_xy")
    x = layers.Conv3D(widths[0], (1, 3, 3), strides=(1, 2, 2), padding=padding, use_bias=False,
                      name="stem_xy_conv")(x)
    x = depthwise_bn(x, (5, 1, 1), name="stem_t")
    x = layers.Activation("relu", name="stem_t_relu")(x)
    for stage, (base, width) in enumerate(zip(BASE_DEPTHS, widths)):
        inner = int(bottleneck_factor * width)
        for block in range(int(math.ceil(depth_factor * base))):
            x = x3d_block(x, width, inner, strides=2 if block == 0 else 1, use_se=block % 2 == 0,
                          se_ratio=se_ratio, name=f"res{stage + 2}_{block}")
    x = conv_bn(x, int(bottleneck_factor * widths[-1]), name="head_conv")
    x = layers.GlobalAveragePooling3D(name="head_pool")(x)
    # pytorchvideo's 1x1x1 post-pool conv (no BN: bn_lin5_on=False) on the 1x1x1 map.
    x = layers.Dense(head_width, activation="relu", use_bias=False, name="head_fc")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name or f"x3d_{variant.lower()}")


def _zoo_entry(variant: str):
    spec = X3D_VARIANTS[variant]
    name = f"x3d_{variant.lower()}"
    return make_info(
        functools.partial(build_x3d, variant=variant, name=name), "rgb",
        f"pytorchvideo X3D-{variant} (Kinetics-400 importable): {spec.frames} frames, one every "
        f"{spec.sample_rate} of 30 fps, {spec.crop_size}px crops.",
        "Feichtenhofer, X3D: Expanding Architectures for Efficient Video Recognition, CVPR 2020",
        (spec.frames, spec.crop_size, spec.crop_size, 3), normalization="kinetics_ptv",
        fps=30.0 / spec.sample_rate, published_params=spec.params_m * 1e6,
        params_source=(f"pytorchvideo model zoo (docs/source/model_zoo.md) X3D {variant}: "
                       f"{spec.params_m}M" if variant != "L" else
                       "pytorchvideo x3d_l as built: 6,153,384 (PySlowFast MODEL_ZOO.md: 6.2M)"),
        tiny_kwargs={"width_multiplier": 0.25, "depth_factor": 0.2, "head_width": 16,
                     "dropout": 0.0})


# pytorchvideo's torch.hub X3Ds, by their hub names.
ZOO = {f"x3d_{variant.lower()}": _zoo_entry(variant) for variant in X3D_VARIANTS}
