"""S3D: I3D's Inception-V1 with every spatiotemporal conv separated into 2D then 1D.

Xie et al., "Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in
Video Classification", ECCV 2018 (https://arxiv.org/abs/1712.04851). Layout, padding
and head exactly as torchvision's ``s3d`` (``torchvision.models.video.s3d``), so its
Kinetics-400 checkpoint converts (:mod:`kvid.pretrained.torchvision_s3d`).

```
[B,64,224,224,3] -> sep conv 7 /2 -> pool 1x3x3/(1,2,2) -> conv 1x1x1 -> sep conv 3
  -> pool 1x3x3/(1,2,2) -> Mixed 3b,3c -> pool 3x3x3/2 -> Mixed 4b..4f -> pool 2x2x2/2
  -> Mixed 5b,5c -> average pool 2x7x7 (stride 1) -> mean over positions -> logits
sep conv k: 1xkxk (stride 1,s,s) -> BN -> ReLU -> kx1x1 (stride s,1,1) -> BN -> ReLU
```

The channel table is I3D's (:data:`kvid.models.i3d.INCEPTION_V1`, which the paper
separates); every conv and pool pads ``(k - 1) // 2`` on both sides as PyTorch does
(the 2x2x2 pool none), in floor mode, and BatchNorm uses epsilon 1e-3 like torchvision's.
"""

from __future__ import annotations

import keras
from keras import layers

from kvid.models.i3d import INCEPTION_V1
from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    check_input_shape,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    max_pool,
    scaled,
    video_input,
)

BN_EPSILON = 1e-3  # torchvision: BatchNorm3d(eps=0.001, momentum=0.001)
HEAD_POOL = (2, 7, 7)  # torchvision's AvgPool3d before the classifier: 2x7x7 at 64x224x224


def _pad(kernel) -> tuple[int, ...]:
    return tuple((k - 1) // 2 for k in kernel)


def _unit(x, filters: int, kernel, *, name: str):
    """1x1x1 conv -> BN -> ReLU (torchvision's ``Conv3dNormActivation``)."""
    return conv_bn_act(x, filters, kernel, padding=_pad(kernel), bn_epsilon=BN_EPSILON, name=name)


def sep_conv(x, filters: int, kernel: int, *, strides: int = 1, name: str):
    """1xkxk conv (spatial stride) -> BN -> ReLU -> kx1x1 conv (temporal stride) -> BN -> ReLU:
    torchvision's ``TemporalSeparableConv``; both convs output ``filters`` channels."""
    pad = (kernel - 1) // 2
    x = conv_bn_act(x, filters, (1, kernel, kernel), strides=(1, strides, strides),
                    padding=(0, pad, pad), bn_epsilon=BN_EPSILON, name=f"{name}_s")
    return conv_bn_act(x, filters, (kernel, 1, 1), strides=(strides, 1, 1), padding=(pad, 0, 0),
                       bn_epsilon=BN_EPSILON, name=f"{name}_t")


def sep_inception(x, filters, *, name: str):
    """Inception block whose 3x3x3 branches are separable convs (``SepInceptionBlock3D``)."""
    b0, b1r, b1, b2r, b2, b3 = filters
    one = (1, 1, 1)
    branch0 = _unit(x, b0, one, name=f"{name}_b0")
    branch1 = sep_conv(_unit(x, b1r, one, name=f"{name}_b1a"), b1, 3, name=f"{name}_b1b")
    branch2 = sep_conv(_unit(x, b2r, one, name=f"{name}_b2a"), b2, 3, name=f"{name}_b2b")
    branch3 = max_pool(x, (3, 3, 3), strides=1, padding=(1, 1, 1), name=f"{name}_b3pool")
    branch3 = _unit(branch3, b3, one, name=f"{name}_b3b")
    return layers.Concatenate(name=f"{name}_concat")([branch0, branch1, branch2, branch3])


def s3d_features(x, *, width_multiplier: float = 1.0):
    """The trunk (torchvision's ``features``), layer names from the I3D table."""
    for kind, name, *spec in INCEPTION_V1:
        if kind == "conv":
            filters, kernel, strides = spec
            filters = scaled(filters, width_multiplier)
            if kernel[0] == 1:  # conv3d_2b_1x1
                x = _unit(x, filters, kernel, name=name)
            else:  # the 7x7x7/2 stem and conv3d_2c_3x3, separated
                x = sep_conv(x, filters, kernel[0], strides=strides[0], name=name)
        elif kind == "pool":
            kernel, strides = spec
            x = max_pool(x, kernel, strides=strides, padding=_pad(kernel), name=name)
        else:
            x = sep_inception(x, [scaled(f, width_multiplier) for f in spec[0]], name=name)
    return x


def build_s3d(input_shape=(64, 224, 224, 3), num_classes: int = 400, *,
              width_multiplier: float = 1.0, head_pool=HEAD_POOL, dropout: float = 0.2,
              name: str = "s3d") -> keras.Model:
    """S3D (Xie et al. 2018) as torchvision builds it; its Kinetics weights convert.

    The head average-pools ``head_pool`` windows at stride 1 and averages the logits over
    the remaining positions, as torchvision does: equal to a global average at 64x224x224
    (a 2x7x7 final map), a mean of overlapping windows on bigger clips; the final map must
    be at least ``head_pool`` (13+ frames, 209+ pixels). Since the 1x1x1 classifier conv
    is linear, it is the Dense ``logits`` layer after the mean here.

    Args:
        input_shape: ``(T, H, W, 3)``; torchvision trains on 64x224x224 and evaluates 128
            frames (T, H, W may be None).
        num_classes: 400 for Kinetics.
        width_multiplier: scales every conv's filters (1.0 = torchvision's).
        head_pool: the head's average pool window; ``(1, 1, 1)`` makes the head a global
            average (small inputs).
        dropout: before the logits layer (torchvision: 0.2).
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    check_positive_float(width_multiplier, "width_multiplier")
    head_pool = check_int_tuple(head_pool, "head_pool", length=3)
    check_rate(dropout)
    inputs = video_input(input_shape, "rgb")
    x = s3d_features(inputs, width_multiplier=width_multiplier)
    x = layers.AveragePooling3D(head_pool, strides=1, padding="valid", name="head_avgpool")(x)
    x = layers.GlobalAveragePooling3D(name="head_pool")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


# torchvision's recipe (references/video_classification/README.md, "S3D"): 64-frame
# clips at 15 fps, resized to 256x256 and cropped to 224; evaluated on 128-frame clips.
ZOO: dict[str, ModelInfo] = {
    "s3d": make_info(
        build_s3d, "rgb", "torchvision S3D: Inception-V1 with separable 2D + 1D convs "
        "(Kinetics-400 importable).",
        "Xie et al., Rethinking Spatiotemporal Feature Learning, ECCV 2018", (64, 224, 224, 3),
        normalization="kinetics", fps=15.0, published_params=8_320_048,
        params_source="torchvision s3d KINETICS400_V1 weights meta num_params",
        tiny_input_shape=(8, 32, 32, 3),
        tiny_kwargs={"width_multiplier": 1 / 16, "head_pool": (1, 1, 1), "dropout": 0.0}),
}
