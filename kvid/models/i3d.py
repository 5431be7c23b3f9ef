"""I3D: Inception-V1 (BN) inflated to 3D, and the 2D -> 3D weight inflation it is known for.

Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset", CVPR 2017 (https://arxiv.org/abs/1705.07750).

```
[B,64,224,224,3] -> conv 7x7x7/2 -> pool 1x3x3/(1,2,2) -> conv 1x1x1 -> conv 3x3x3
  -> pool 1x3x3/(1,2,2) -> Mixed 3b,3c -> pool 3x3x3/2 -> Mixed 4b..4f -> pool 2x2x2/2
  -> Mixed 5b,5c -> global average pool -> dropout -> logits
```

The same layer table builds the 2D Inception-V1 (:func:`build_inception_v1_2d`) with the
same layer names, so :func:`inflate_2d_weights` can bootstrap I3D from it (an ImageNet
GoogLeNet-BN checkpoint, if the user has one as a Keras model).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from kvid.models.layers import (
    SamePad3D,
    check_choice,
    check_input_shape,
    check_modality_input,
    check_positive_float,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    scaled,
    video_input,
)

# ("conv", name, filters, kernel, strides) | ("pool", name, kernel, strides)
# | ("mixed", name, (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj))
INCEPTION_V1 = (
    ("conv", "conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    ("pool", "maxpool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    ("conv", "conv3d_2b_1x1", 64, (1, 1, 1), (1, 1, 1)),
    ("conv", "conv3d_2c_3x3", 192, (3, 3, 3), (1, 1, 1)),
    ("pool", "maxpool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    ("mixed", "mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("mixed", "mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("pool", "maxpool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("mixed", "mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("mixed", "mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("mixed", "mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("mixed", "mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("mixed", "mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("pool", "maxpool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("mixed", "mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("mixed", "mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def _unit(x, filters, kernel, strides, *, name, dims, temporal_padding):
    """Conv-BN-ReLU; in 3D with "symmetric" temporal padding when the kernel spans time."""
    if dims == 2:
        return conv_bn_act(x, filters, kernel[1:], strides=strides[1:], dims=2, name=name)
    if temporal_padding == "symmetric" and kernel[0] > 1:
        x = SamePad3D(kernel, strides, name=f"{name}_pad")(x)
        return conv_bn_act(x, filters, kernel, strides=strides, padding="valid", name=name)
    return conv_bn_act(x, filters, kernel, strides=strides, name=name)


def _pool(x, kernel, strides, *, name, dims):
    if dims == 2:
        return layers.MaxPooling2D(kernel[1:], strides[1:], padding="same", name=name)(x)
    return layers.MaxPooling3D(kernel, strides, padding="same", name=name)(x)


def _mixed(x, filters, *, name, dims, temporal_padding):
    b0, b1r, b1, b2r, b2, b3 = filters
    one, three = (1, 1, 1), (3, 3, 3)
    unit = dict(dims=dims, temporal_padding=temporal_padding)
    branch0 = _unit(x, b0, one, one, name=f"{name}_b0", **unit)
    branch1 = _unit(x, b1r, one, one, name=f"{name}_b1a", **unit)
    branch1 = _unit(branch1, b1, three, one, name=f"{name}_b1b", **unit)
    branch2 = _unit(x, b2r, one, one, name=f"{name}_b2a", **unit)
    branch2 = _unit(branch2, b2, three, one, name=f"{name}_b2b", **unit)
    branch3 = _pool(x, three, one, name=f"{name}_b3pool", dims=dims)
    branch3 = _unit(branch3, b3, one, one, name=f"{name}_b3b", **unit)
    return layers.Concatenate(name=f"{name}_concat")([branch0, branch1, branch2, branch3])


def _inception_v1(inputs, num_classes, *, dims, width_multiplier, dropout, temporal_padding,
                  name):
    x = inputs
    for kind, layer_name, *spec in INCEPTION_V1:
        if kind == "conv":
            filters, kernel, strides = spec
            x = _unit(x, scaled(filters, width_multiplier), kernel, strides, name=layer_name, dims=dims,
                      temporal_padding=temporal_padding)
        elif kind == "pool":
            x = _pool(x, *spec, name=layer_name, dims=dims)
        else:
            x = _mixed(x, [scaled(f, width_multiplier) for f in spec[0]], name=layer_name, dims=dims,
                       temporal_padding=temporal_padding)
    pool = layers.GlobalAveragePooling3D if dims == 3 else layers.GlobalAveragePooling2D
    x = pool(name="head_pool")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _check_common(num_classes, width_multiplier, dropout):
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)
    check_positive_float(width_multiplier, "width_multiplier")


def build_i3d(input_shape=(64, 224, 224, 3), num_classes: int = 400, *,
              width_multiplier: float = 1.0, dropout: float = 0.5, modality: str = "rgb",
              temporal_padding: str = "zeros", name: str = "i3d") -> keras.Model:
    """I3D (Carreira & Zisserman 2017): Inception-V1 with every kernel inflated to 3D.

    The first two max-pools do not pool time. Fully convolutional up to the head, so T, H
    and W may be None (variable clip sizes, multigrid training).

    Args:
        input_shape: ``(T, H, W, C)``, C = 3 for RGB, 2 for flow; the paper uses 64x224x224.
        num_classes: 400 for Kinetics.
        width_multiplier: scales every conv's filters (1.0 = paper).
        dropout: before the logits layer.
        modality: ``"rgb"`` or ``"flow"`` (the paper trains one I3D per stream).
        temporal_padding: ``"zeros"`` (the paper's "same" convs) or ``"symmetric"``
            (mirrored frames at the clip ends: a repeated-frame video then gives exactly the
            2D network's features, see :func:`inflate_2d_weights`).
    """
    input_shape = check_modality_input(input_shape, modality,
                                       allow_none=temporal_padding == "zeros")
    check_choice(temporal_padding, ("zeros", "symmetric"), "temporal_padding")
    _check_common(num_classes, width_multiplier, dropout)
    return _inception_v1(video_input(input_shape, modality), num_classes, dims=3,
                         width_multiplier=width_multiplier, dropout=dropout,
                         temporal_padding=temporal_padding, name=name)


def build_inception_v1_2d(input_shape=(224, 224, 3), num_classes: int = 1000, *,
                          width_multiplier: float = 1.0, dropout: float = 0.0,
                          name: str = "inception_v1") -> keras.Model:
    """The 2D Inception-V1 (BN) that I3D inflates, with I3D's layer names (an image model)."""
    input_shape = check_input_shape(input_shape, rank=3)
    _check_common(num_classes, width_multiplier, dropout)
    inputs = keras.Input(shape=input_shape, name="image")
    return _inception_v1(inputs, num_classes, dims=2, width_multiplier=width_multiplier,
                         dropout=dropout, temporal_padding="zeros", name=name)


def _weighted_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer


def inflate_2d_weights(model_2d: keras.Model, model_3d: keras.Model) -> int:
    """Copies a 2D model's weights into a 3D model, inflating conv kernels over time.

    A ``k x k`` kernel becomes ``t x k x k``: the 2D kernel repeated ``t`` times and divided
    by ``t``, so a video of one repeated frame gives the 2D activations (Carreira &
    Zisserman 2017, Sec. 2.2). Every other weight (BatchNorm, Dense, biases) is copied.

    Layers are paired by name when every weighted layer of ``model_3d`` has a namesake in
    ``model_2d`` (nested models are searched), else in order; a shape that cannot be
    inflated raises ValueError.

    Returns:
        The number of layers whose weights were set.
    """
    layers_3d = list(_weighted_layers(model_3d))
    layers_2d = list(_weighted_layers(model_2d))
    by_name = {layer.name: layer for layer in layers_2d}
    if all(layer.name in by_name for layer in layers_3d):
        pairs = [(by_name[layer.name], layer) for layer in layers_3d]
    elif len(layers_2d) == len(layers_3d):
        pairs = list(zip(layers_2d, layers_3d))
    else:
        raise ValueError(
            f"Cannot pair the layers: {len(layers_2d)} weighted 2D layers and {len(layers_3d)} "
            f"3D ones with different names. Received: model_2d={model_2d.name!r}, "
            f"model_3d={model_3d.name!r}")
    for source, target in pairs:
        weights = [_inflate(a, b.shape, f"{source.name} -> {target.name}")
                   for a, b in zip(source.get_weights(), target.get_weights(), strict=True)]
        target.set_weights(weights)
    return len(pairs)


def _inflate(weight: np.ndarray, shape, where: str) -> np.ndarray:
    shape = tuple(shape)
    if weight.shape == shape:
        return weight
    if len(shape) == weight.ndim + 1 and shape[1:] == weight.shape:
        return np.repeat(weight[None], shape[0], axis=0) / shape[0]
    raise ValueError(f"Cannot inflate a weight of shape {weight.shape} to {shape} ({where}).")
