"""R(2+1)D and R3D video ResNets: 3D convs factorized into spatial 2D then temporal 1D.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
CVPR 2018 (https://arxiv.org/abs/1711.11248). Layout as torchvision's ``r2plus1d_18``.

```
[B,16,112,112,3] -> stem (1x7x7/(1,2,2) -> 3x1x1) -> res2 64 -> res3 128/2 -> res4 256/2
  -> res5 512/2 -> global average pool -> logits
(2+1)D conv: 1x3x3 (stride 1,s,s) -> BN -> ReLU -> 3x1x1 (stride s,1,1); the middle width M
keeps the parameters of the 3x3x3 conv it replaces: M = 27 N_in N_out / (9 N_in + 3 N_out).
```
"""

from __future__ import annotations

import keras
from keras import layers

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


def midplanes(in_planes: int, out_planes: int) -> int:
    """Width between the 2D and 1D convs matching a 3x3x3 conv's parameter count."""
    return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


def st_conv(x, filters: int, *, mid: int, strides: int, conv_type: str, name: str,
            activation: str | None = "relu", temporal_stride: bool = True):
    """One spatiotemporal conv + BN (+ activation): a (2+1)D pair or a full 3x3x3 conv."""
    t_stride = strides if temporal_stride else 1
    if conv_type == "3d":
        return conv_bn_act(x, filters, 3, strides=(t_stride, strides, strides), name=name,
                           activation=activation)
    x = conv_bn_act(x, mid, (1, 3, 3), strides=(1, strides, strides), name=f"{name}_s")
    return conv_bn_act(x, filters, (3, 1, 1), strides=(t_stride, 1, 1), name=f"{name}_t",
                       activation=activation)


def basic_block(x, filters: int, *, strides: int, conv_type: str, name: str,
                temporal_stride: bool = True):
    """Residual basic block of two spatiotemporal convs (1x1x1 projection shortcut if needed)."""
    in_planes = x.shape[-1]
    mid = midplanes(in_planes, filters)  # torchvision uses the block's input width for both
    shortcut = x
    if strides != 1 or in_planes != filters:
        t_stride = strides if temporal_stride else 1
        shortcut = conv_bn_act(x, filters, 1, strides=(t_stride, strides, strides),
                               activation=None, name=f"{name}_proj")
    y = st_conv(x, filters, mid=mid, strides=strides, conv_type=conv_type, name=f"{name}_conv1",
                temporal_stride=temporal_stride)
    y = st_conv(y, filters, mid=mid, strides=1, conv_type=conv_type, name=f"{name}_conv2",
                activation=None)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def video_resnet_trunk(x, *, depth: int, widths, conv_type: str, temporal_strides: bool = True,
                       prefix: str = ""):
    """Stem and the four residual stages of R(2+1)D / R3D; returns the last feature map."""
    stem_width = widths[0]
    if conv_type == "3d":
        x = conv_bn_act(x, stem_width, (3, 7, 7), strides=(1, 2, 2), name=f"{prefix}stem")
    else:
        x = conv_bn_act(x, max(1, stem_width * 45 // 64), (1, 7, 7), strides=(1, 2, 2),
                        name=f"{prefix}stem_s")
        x = conv_bn_act(x, stem_width, (3, 1, 1), name=f"{prefix}stem_t")
    for stage, (blocks, width) in enumerate(zip(RESNET_DEPTHS[depth], widths)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = basic_block(x, width, strides=strides, conv_type=conv_type,
                            temporal_stride=temporal_strides,
                            name=f"{prefix}res{stage + 2}_{block}")
    return x


def check_resnet_args(depth, widths, conv_type):
    check_choice(depth, RESNET_DEPTHS, "depth")
    check_choice(conv_type, ("2plus1d", "3d"), "conv_type")
    return check_int_tuple(widths, "widths", length=4)


def build_r2plus1d(input_shape=(16, 112, 112, 3), num_classes: int = 400, *, depth: int = 18,
                   widths=STAGE_WIDTHS, conv_type: str = "2plus1d", dropout: float = 0.0,
                   name: str = "r2plus1d") -> keras.Model:
    """R(2+1)D-18 (Tran et al. 2018); ``conv_type="3d"`` gives R3D-18 with the same layout.

    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses 8 or 16 frames of 112x112 (T, H, W may
            be None for variable clip sizes).
        num_classes: 400 for Kinetics.
        depth: 10, 18 or 34 (basic blocks per stage from :data:`RESNET_DEPTHS`).
        widths: output channels of the four stages.
        conv_type: ``"2plus1d"`` or ``"3d"``.
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
