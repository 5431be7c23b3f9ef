"""SlowFast networks: a slow, wide pathway and a fast, thin one joined by lateral connections.

Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019
(https://arxiv.org/abs/1812.03982). Layout as pytorchvideo's ``create_slowfast`` (R50).

```
clip [B, T, H, W, 3] --every alpha-th frame--> slow [B, T/alpha, ...]  (channels C)
                    \\--all frames----------->  fast [B, T, ...]       (channels beta*C)
stem -> lateral -> res2 -> lateral -> res3 -> lateral -> res4 -> lateral -> res5
lateral: fast --(7x1x1 conv, stride alpha in time, 2*beta*C)--> concatenated to slow
head: global pool each pathway, concatenate, dropout, logits
```
"""

from __future__ import annotations

import keras
from keras import layers

from kvid.models.layers import (
    SliceAxis,
    check_choice,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    video_input,
)

RESNET_BOTTLENECK_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Temporal kernel of each stage's first conv: slow pathway uses none in res2/res3.
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (3, 3, 3, 3)


def bottleneck_block(x, inner: int, out: int, *, temporal_kernel: int, strides: int, name: str):
    """ResNet bottleneck with a (t x 1 x 1) first conv and the spatial stride on the 3x3."""
    shortcut = x
    if strides != 1 or x.shape[-1] != out:
        shortcut = conv_bn_act(x, out, 1, strides=(1, strides, strides), activation=None,
                               name=f"{name}_proj")
    y = conv_bn_act(x, inner, (temporal_kernel, 1, 1), name=f"{name}_a")
    y = conv_bn_act(y, inner, (1, 3, 3), strides=(1, strides, strides), name=f"{name}_b")
    y = conv_bn_act(y, out, 1, activation=None, name=f"{name}_c")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _lateral(slow, fast, *, alpha: int, fusion_kernel: int, ratio: int, name: str):
    lateral = conv_bn_act(fast, ratio * fast.shape[-1], (fusion_kernel, 1, 1),
                          strides=(alpha, 1, 1), name=name)
    return layers.Concatenate(name=f"{name}_concat")([slow, lateral])


def build_slowfast(input_shape=(32, 224, 224, 3), num_classes: int = 400, *, depth: int = 50,
                   alpha: int = 8, beta_inv: int = 8, width: int = 64,
                   fusion_conv_channel_ratio: int = 2, fusion_kernel: int = 7, blocks=None,
                   dropout: float = 0.5, name: str = "slowfast") -> keras.Model:
    """SlowFast R50 (Feichtenhofer et al. 2019); default 4x16 (alpha 8, beta 1/8).

    Args:
        input_shape: ``(T, H, W, 3)`` of the fast pathway; the slow pathway takes every
            ``alpha``-th frame, so T must be a multiple of ``alpha`` (reference 32x224x224,
            "4x16": 4 slow frames; alpha=4 gives "8x8"); T, H, W may be None.
        num_classes: 400 for Kinetics.
        depth: 50 or 101 (bottleneck blocks per stage).
        alpha: frame-rate ratio between the pathways.
        beta_inv: channel ratio 1/beta (fast pathway width = width / beta_inv).
        width: stem width of the slow pathway (stage outputs are 4, 8, 16, 32 x width).
        fusion_conv_channel_ratio, fusion_kernel: lateral conv width (x fast channels) and
            temporal kernel.
        blocks: overrides ``depth`` with explicit blocks per stage (small test models).
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    check_choice(depth, RESNET_BOTTLENECK_DEPTHS, "depth")
    if blocks is None:
        blocks = RESNET_BOTTLENECK_DEPTHS[depth]
    blocks = check_int_tuple(blocks, "blocks", length=4)
    for arg, value in (("alpha", alpha), ("beta_inv", beta_inv), ("width", width),
                       ("fusion_kernel", fusion_kernel)):
        check_positive_int(value, arg)
    check_rate(dropout)
    if input_shape[0] is not None and input_shape[0] % alpha:
        raise ValueError(f"The number of frames must be a multiple of alpha={alpha}. "
                         f"Received: input_shape={input_shape}")
    fast_width = max(1, width // beta_inv)
    lateral = dict(alpha=alpha, fusion_kernel=fusion_kernel, ratio=fusion_conv_channel_ratio)

    inputs = video_input(input_shape, "rgb")
    slow = SliceAxis(0, None, axis=1, step=alpha, name="slow_frames")(inputs)
    slow = conv_bn_act(slow, width, (1, 7, 7), strides=(1, 2, 2), name="slow_stem")
    fast = conv_bn_act(inputs, fast_width, (5, 7, 7), strides=(1, 2, 2), name="fast_stem")
    slow = layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="same", name="slow_stem_pool")(slow)
    fast = layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="same", name="fast_stem_pool")(fast)
    slow = _lateral(slow, fast, name="lateral_stem", **lateral)
    for stage, count in enumerate(blocks):
        inner = width * 2**stage
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            slow = bottleneck_block(slow, inner, 4 * inner, strides=strides,
                                    temporal_kernel=SLOW_TEMPORAL_KERNELS[stage],
                                    name=f"slow_res{stage + 2}_{block}")
            fast = bottleneck_block(fast, max(1, inner // beta_inv), 4 * max(1, inner // beta_inv),
                                    strides=strides, temporal_kernel=FAST_TEMPORAL_KERNELS[stage],
                                    name=f"fast_res{stage + 2}_{block}")
        if stage < 3:
            slow = _lateral(slow, fast, name=f"lateral_res{stage + 2}", **lateral)
    slow = layers.GlobalAveragePooling3D(name="slow_pool")(slow)
    fast = layers.GlobalAveragePooling3D(name="fast_pool")(fast)
    x = layers.Concatenate(name="head_concat")([slow, fast])
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)
