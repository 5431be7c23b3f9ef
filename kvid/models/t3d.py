"""T3D: a 3D DenseNet whose transition layers mix several temporal depths (TTL).

Diba et al., "Temporal 3D ConvNets: New Architecture and Transfer Learning for Video
Classification", arXiv 2017 (https://arxiv.org/abs/1711.08200).

```
[B,32,224,224,3] -> conv 7x7x7/(1,2,2) -> max pool 3x3x3/2
  -> dense block 1 -> TTL -> dense block 2 -> TTL -> dense block 3 -> TTL -> dense block 4
  -> BN-ReLU -> global pool -> logits
dense layer: BN-ReLU-conv 1x1x1 (4k) -> BN-ReLU-conv 3x3x3 (k), concatenated to its input
TTL: BN-ReLU -> [conv 1x1x1 | conv 3x3x3 | conv 6x3x3] concatenated -> 3D avg pool 2x2x2/2
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
    classifier_head,
    conv_bn_act,
    video_input,
)

# Dense layers per block (DenseNet-121 / -169 layouts, as inflated in the paper).
T3D_DEPTHS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32)}


def _bn_relu_conv(x, filters, kernel, *, name):
    """Pre-activation conv (DenseNet order): BN -> ReLU -> conv."""
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv3D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)


def _dense_block(x, layers_count, growth_rate, *, name):
    for i in range(layers_count):
        y = _bn_relu_conv(x, 4 * growth_rate, 1, name=f"{name}_{i}_a")
        y = _bn_relu_conv(y, growth_rate, 3, name=f"{name}_{i}_b")
        x = layers.Concatenate(name=f"{name}_{i}_concat")([x, y])
    return x


def temporal_transition(x, filters: int, depths, *, name: str):
    """TTL: parallel 3D convs of temporal depths ``depths``, concatenated, then 2x2x2 avg pool."""
    x = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    widths = [filters // len(depths) + (i < filters % len(depths)) for i in range(len(depths))]
    branches = [
        layers.Conv3D(width, (depth, 1, 1) if depth == 1 else (depth, 3, 3), padding="same",
                      use_bias=False, name=f"{name}_t{depth}_conv")(x)
        for depth, width in zip(depths, widths)
    ]
    x = layers.Concatenate(name=f"{name}_concat")(branches) if len(branches) > 1 else branches[0]
    return layers.AveragePooling3D(2, 2, padding="same", name=f"{name}_pool")(x)


def build_t3d(input_shape=(32, 224, 224, 3), num_classes: int = 400, *, depth: int = 121,
              growth_rate: int = 32, init_features: int = 64, compression: float = 0.5,
              ttl_depths=(1, 3, 6), blocks=None, dropout: float = 0.0,
              name: str = "t3d") -> keras.Model:
    """T3D (Diba et al. 2017): DenseNet-121/169 in 3D with temporal transition layers.

    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses 32 frames of 224x224 (T, H, W may be None).
        num_classes: 400 for Kinetics.
        depth: 121 or 169, the dense layers per block from :data:`T3D_DEPTHS`.
        growth_rate: k, channels added per dense layer.
        init_features: stem width.
        compression: channels kept by each transition (0.5).
        ttl_depths: temporal depths of the TTL's parallel convs.
        blocks: overrides ``depth`` with explicit dense layers per block (small test models).
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    check_choice(depth, T3D_DEPTHS, "depth")
    check_positive_int(growth_rate, "growth_rate")
    check_positive_int(init_features, "init_features")
    ttl_depths = check_int_tuple(ttl_depths, "ttl_depths")
    blocks = check_int_tuple(blocks, "blocks") if blocks is not None else T3D_DEPTHS[depth]
    check_rate(dropout)
    if not 0 < compression <= 1:
        raise ValueError(f"`compression` must be in (0, 1]. Received: compression={compression!r}")

    inputs = video_input(input_shape, "rgb")
    x = conv_bn_act(inputs, init_features, 7, strides=(1, 2, 2), name="stem")
    x = layers.MaxPooling3D(3, 2, padding="same", name="stem_pool")(x)
    for i, count in enumerate(blocks):
        x = _dense_block(x, count, growth_rate, name=f"dense{i + 1}")
        if i < len(blocks) - 1:
            x = temporal_transition(x, max(len(ttl_depths), int(x.shape[-1] * compression)),
                                    ttl_depths, name=f"ttl{i + 1}")
    x = layers.BatchNormalization(epsilon=1.001e-5, name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    x = layers.GlobalAveragePooling3D(name="head_pool")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)
