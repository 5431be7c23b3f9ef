"""I3D: Inception-V1 (BN) inflated to 3D, and the 2D -> 3D weight inflation it is known for.

Carreira & Zisserman, "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset", CVPR 2017 (https://arxiv.org/abs/1705.07750).

```
[B,64,224,224,3] -> conv 7x7x7/2 -> pool 1x3x3/(1,2,2) -> conv 1x1x1 -> conv 3x3x3
  -> pool 1x3x3/(1,2,2) -> Mixed 3b,3c -> pool 3x3x3/2 -> Mixed 4b..4f -> pool 2x2x2/2
  -> Mixed 5b,5c -> global average pool -> dropout -> logits
```

The same layer table builds the 2D Inception-V1 (:func:`build_inception_v1_2d`), so
:func:`kvid.models.inflate.inflate_2d_weights` can bootstrap I3D from it (an ImageNet
GoogLeNet-BN checkpoint, if the user has one as a Keras model).

DeepMind's released Kinetics models (github deepmind/kinetics-i3d, ``i3d.py``) are this
network with Sonnet's BatchNorm (no scale, eps 1e-3) and their own head: a 2x7x7 "valid"
average pool at stride 1, a 1x1x1 conv per position, and the mean of those logits over
time. :data:`VARIANTS` declares them (``i3d_rgb``, ``i3d_flow``, ``i3d_rgb600``);
:mod:`kvid.pretrained.deepmind_i3d` loads their checkpoints. Keras' "same" convs and pools
pad as TF's "SAME" (one more at the end at stride 2), which is what DeepMind's code uses.
"""

from __future__ import annotations

import functools

import keras
from keras import layers

from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    MeanOverAxis,
    SamePad3D,
    check_choice,
    check_input_shape,
    check_int_tuple,
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


def _unit(x, filters, kernel, strides, *, name, dims, temporal_padding, bn_scale, bn_epsilon):
    """Conv-BN-ReLU; in 3D with "symmetric" temporal padding when the kernel spans time.

    ``bn_scale=False`` is Sonnet's BatchNorm (offset only), which DeepMind's I3D uses.
    """
    if dims == 2:
        kernel, strides, padding = kernel[1:], strides[1:], "same"
    elif temporal_padding == "symmetric" and kernel[0] > 1:
        x = SamePad3D(kernel, strides, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    x = conv_bn_act(x, filters, kernel, strides=strides, padding=padding, dims=dims,
                    use_bn=False, use_bias=False, activation=None, name=name)
    x = layers.BatchNormalization(epsilon=bn_epsilon, scale=bn_scale, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _pool(x, kernel, strides, *, name, dims):
    if dims == 2:
        return layers.MaxPooling2D(kernel[1:], strides[1:], padding="same", name=name)(x)
    return layers.MaxPooling3D(kernel, strides, padding="same", name=name)(x)


def _mixed(x, filters, *, name, dims, **unit):
    b0, b1r, b1, b2r, b2, b3 = filters
    one, three = (1, 1, 1), (3, 3, 3)
    unit = dict(dims=dims, **unit)
    branch0 = _unit(x, b0, one, one, name=f"{name}_b0", **unit)
    branch1 = _unit(x, b1r, one, one, name=f"{name}_b1a", **unit)
    branch1 = _unit(branch1, b1, three, one, name=f"{name}_b1b", **unit)
    branch2 = _unit(x, b2r, one, one, name=f"{name}_b2a", **unit)
    branch2 = _unit(branch2, b2, three, one, name=f"{name}_b2b", **unit)
    branch3 = _pool(x, three, one, name=f"{name}_b3pool", dims=dims)
    branch3 = _unit(branch3, b3, one, one, name=f"{name}_b3b", **unit)
    return layers.Concatenate(name=f"{name}_concat")([branch0, branch1, branch2, branch3])


def _trunk(inputs, *, dims, width_multiplier, **unit):
    x = inputs
    for kind, layer_name, *spec in INCEPTION_V1:
        if kind == "conv":
            filters, kernel, strides = spec
            x = _unit(x, scaled(filters, width_multiplier), kernel, strides, name=layer_name,
                      dims=dims, **unit)
        elif kind == "pool":
            x = _pool(x, *spec, name=layer_name, dims=dims)
        else:
            x = _mixed(x, [scaled(f, width_multiplier) for f in spec[0]], name=layer_name,
                       dims=dims, **unit)
    return x


def _dense_head(x, num_classes, *, dims, dropout):
    pool = layers.GlobalAveragePooling3D if dims == 3 else layers.GlobalAveragePooling2D
    return classifier_head(pool(name="head_pool")(x), num_classes, dropout=dropout)


def _deepmind_head(x, num_classes, *, dropout, head_pool):
    """DeepMind's ``Logits`` block: "valid" average pool at stride 1, dropout, a 1x1x1 conv
    with bias per position, then the mean of the logits over time (their ``reduce_mean``).

    At 193-224 px frames the pooled map is 1x1 in space, where DeepMind squeezes it; larger
    frames (which DeepMind's squeeze refuses) average the positions' logits as well.
    """
    x = layers.AveragePooling3D(head_pool, strides=1, padding="valid", name="head_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="logits_dropout")(x)
    x = layers.Conv3D(num_classes, 1, use_bias=True, dtype="float32", name="logits")(x)
    return MeanOverAxis(axis=(1, 2, 3), dtype="float32", name="logits_mean")(x)


def _check_head_input(input_shape, head_pool):
    """The smallest clip the DeepMind head's "valid" pool takes: the trunk divides T by 8
    and H, W by 32 (rounding up), and the pool needs ``head_pool`` of that."""
    for size, factor, pool, what in zip(input_shape[:3], (8, 32, 32), head_pool,
                                        ("frames", "height", "width")):
        if size is not None and -(-size // factor) < pool:
            raise ValueError(
                f"head='deepmind' needs at least {(pool - 1) * factor + 1} {what} for its "
                f"{'x'.join(map(str, head_pool))} average pool (a trunk stride of {factor}). "
                f"Received: input_shape={input_shape}")


def _check_common(num_classes, width_multiplier, dropout):
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)
    check_positive_float(width_multiplier, "width_multiplier")


HEADS = ("dense", "deepmind")


def build_i3d(input_shape=(64, 224, 224, 3), num_classes: int = 400, *,
              width_multiplier: float = 1.0, dropout: float = 0.5, modality: str = "rgb",
              temporal_padding: str = "zeros", bn_scale: bool = True, bn_epsilon: float = 1e-5,
              head: str = "dense", head_pool=(2, 7, 7), name: str = "i3d") -> keras.Model:
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
            2D network's features, see :func:`kvid.models.inflate.inflate_2d_weights`).
        bn_scale: whether BatchNorm has a learned scale (DeepMind's Sonnet BN has none).
        bn_epsilon: BatchNorm's epsilon (DeepMind: 1e-3).
        head: ``"dense"`` (global average pool, Dense logits) or ``"deepmind"`` (average
            pool ``head_pool`` "valid", 1x1x1 conv logits, mean over time; needs
            ``T >= 8 * (head_pool[0] - 1) + 1`` and ``H, W >= 32 * (head_pool[1] - 1) + 1``,
            i.e. 9 frames of 193 px for DeepMind's 2x7x7).
        head_pool: the ``"deepmind"`` head's average pool window.
    """
    input_shape = check_modality_input(input_shape, modality,
                                       allow_none=temporal_padding == "zeros")
    check_choice(temporal_padding, ("zeros", "symmetric"), "temporal_padding")
    check_choice(head, HEADS, "head")
    if not isinstance(bn_scale, bool):
        raise ValueError(f"`bn_scale` must be a bool. Received: bn_scale={bn_scale!r}")
    bn_epsilon = check_positive_float(bn_epsilon, "bn_epsilon")
    head_pool = check_int_tuple(head_pool, "head_pool", length=3)
    _check_common(num_classes, width_multiplier, dropout)
    if head == "deepmind":
        _check_head_input(input_shape, head_pool)
    inputs = video_input(input_shape, modality)
    x = _trunk(inputs, dims=3, width_multiplier=width_multiplier,
               temporal_padding=temporal_padding, bn_scale=bn_scale, bn_epsilon=bn_epsilon)
    if head == "deepmind":
        logits = _deepmind_head(x, num_classes, dropout=dropout, head_pool=head_pool)
    else:
        logits = _dense_head(x, num_classes, dims=3, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def build_inception_v1_2d(input_shape=(224, 224, 3), num_classes: int = 1000, *,
                          width_multiplier: float = 1.0, dropout: float = 0.0,
                          name: str = "inception_v1") -> keras.Model:
    """The 2D Inception-V1 (BN) that I3D inflates, with I3D's layer names (an image model)."""
    input_shape = check_input_shape(input_shape, rank=3)
    _check_common(num_classes, width_multiplier, dropout)
    inputs = keras.Input(shape=input_shape, name="image")
    x = _trunk(inputs, dims=2, width_multiplier=width_multiplier, temporal_padding="zeros",
               bn_scale=True, bn_epsilon=1e-5)
    return keras.Model(inputs, _dense_head(x, num_classes, dims=2, dropout=dropout), name=name)


# DeepMind's Kinetics I3D (github deepmind/kinetics-i3d): Sonnet BN, their logits head.
_DEEPMIND = {"bn_scale": False, "bn_epsilon": 1e-3, "head": "deepmind", "head_pool": (2, 7, 7)}
VARIANTS = {
    "i3d_rgb": {**_DEEPMIND, "modality": "rgb"},
    "i3d_flow": {**_DEEPMIND, "modality": "flow"},
    "i3d_rgb600": {**_DEEPMIND, "modality": "rgb"},
}


def _variant(name: str, description: str, classes: int = 400) -> ModelInfo:
    modality = VARIANTS[name]["modality"]
    channels = 2 if modality == "flow" else 3
    return make_info(
        functools.partial(build_i3d, **VARIANTS[name], name=name), modality, description,
        "Carreira & Zisserman, Quo Vadis, Action Recognition?, CVPR 2017",
        (64, 224, 224, channels), normalization="symmetric", fps=25.0,
        reference_num_classes=classes, tiny_input_shape=(4, 64, 64, channels),
        tiny_kwargs={"width_multiplier": 1 / 16, "dropout": 0.0, "head_pool": (1, 2, 2)})


# DeepMind's recipe (kinetics-i3d README): frames at 25 fps, the shorter side resized to 256,
# a center 224x224 crop, RGB in [-1, 1]; flow is TV-L1 x/y truncated to [-20, 20] and
# rescaled to [-1, 1]. Training clips are 64 frames; evaluation takes whole videos.
ZOO = {
    "i3d_rgb": _variant("i3d_rgb", "DeepMind RGB I3D (Kinetics-400 importable: rgb_imagenet, "
                        "rgb_scratch)."),
    "i3d_flow": _variant("i3d_flow", "DeepMind optical-flow I3D (Kinetics-400 importable: "
                         "flow_imagenet, flow_scratch); 2-channel TV-L1 flow in [-1, 1]."),
    "i3d_rgb600": _variant("i3d_rgb600", "DeepMind RGB I3D trained on Kinetics-600 "
                           "(importable: rgb_scratch_kin600).", classes=600),
}
