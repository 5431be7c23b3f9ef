"""3D ResNets with bottleneck blocks: Slow, C2D, I3D (ResNet-50) and ir-CSN (ResNet-101).

Layout and padding exactly as PyTorchVideo's ``create_resnet`` / ``create_csn``
(``pytorchvideo.models.resnet`` / ``.csn``) with the settings of its hub models
``slow_r50``, ``c2d_r50``, ``i3d_r50`` and ``csn_r101`` (:data:`VARIANTS`), so their
Kinetics checkpoints convert (:mod:`kvid.pretrained.pytorchvideo_resnet`).

```
[B,T,224,224,3] -> stem kt x7x7/(1,2,2) 64 -> max 1x3x3/(1,2,2) -> res2 256 [-> max 2x1x1]
  -> res3 512/2 -> res4 1024/2 -> res5 2048/2 -> avg pool (fixed kernel, stride 1)
  -> global average -> logits
block: conv_a kt x1x1 (per stage and block) -> conv_b 1x3x3 /(1,s,s) -> conv_c 1x1x1 (x4)
  + shortcut (1x1x1 conv + BN where the shape changes) -> ReLU
ir-CSN: conv_a 1x1x1, conv_b 3x3x3 depthwise /(t,s,s) (t = 2 from res3 on)
```
Slow: Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019 (its Slow
pathway alone, temporal convs in res4-5 only); C2D/I3D-R50: Wang et al., "Non-local Neural
Networks", CVPR 2018 baselines; ir-CSN: Tran et al., "Video Classification with
Channel-Separated Convolutional Networks", ICCV 2019.
"""

from __future__ import annotations

import functools

import keras
from keras import layers

from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    DepthwiseConv3D,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    max_pool,
    video_input,
)

# Bottleneck blocks per stage (pytorchvideo's _MODEL_STAGE_DEPTH).
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_RESNET50 = {"blocks": STAGE_DEPTHS[50], "dropout": 0.5}

# PyTorchVideo's hub models as builder kwargs. ``conv_a_kernels_t``: the temporal kernel of
# each block's conv_a, per stage, cycled over the stage's blocks (i3d alternates 3 and 1).
VARIANTS = {
    "slow_r50": {**_RESNET50, "stem_kernel_t": 1, "conv_a_kernels_t": ((1,), (1,), (3,), (3,)),
                 "head_pool_size": (8, 7, 7)},
    "c2d_r50": {**_RESNET50, "stem_kernel_t": 1, "conv_a_kernels_t": ((1,), (1,), (1,), (1,)),
                "stage1_pool": True, "head_pool_size": (4, 7, 7)},
    "i3d_r50": {**_RESNET50, "stem_kernel_t": 5,
                "conv_a_kernels_t": ((3,), (3, 1), (3, 1), (1, 3)),
                "stage1_pool": True, "head_pool_size": (4, 7, 7)},
    "csn_r101": {"blocks": STAGE_DEPTHS[101], "stem_kernel_t": 3,
                 "conv_a_kernels_t": ((1,), (1,), (1,), (1,)), "conv_b_kernel_t": 3,
                 "depthwise": True, "temporal_strides": (1, 2, 2, 2),
                 "head_pool_size": (4, 7, 7), "dropout": 0.0},
}


def bottleneck_block(x, width: int, *, kernel_a_t: int, kernel_b_t: int, strides, depthwise: bool,
                     name: str):
    """``conv_a`` (kt x1x1) -> ``conv_b`` (kb x3x3, strided) -> ``conv_c`` (1x1x1, 4x width),
    each with BN, added to the input (through a strided 1x1x1 conv + BN when the shape
    changes), then ReLU. ``strides`` is conv_b's ``(t, s, s)``; the shortcut takes the same."""
    out_width = 4 * width
    shortcut = x
    if x.shape[-1] != out_width or any(s != 1 for s in strides):
        shortcut = conv_bn_act(x, out_width, 1, strides=strides, padding=(0, 0, 0),
                               activation=None, name=f"{name}_proj")
    y = conv_bn_act(x, width, (kernel_a_t, 1, 1), padding=(kernel_a_t // 2, 0, 0),
                    name=f"{name}_a")
    b_kernel, b_pad = (kernel_b_t, 3, 3), (kernel_b_t // 2, 1, 1)
    if depthwise:
        y = DepthwiseConv3D(b_kernel, strides=strides, padding=b_pad, name=f"{name}_b_conv")(y)
        y = layers.BatchNormalization(epsilon=1e-5, name=f"{name}_b_bn")(y)
        y = layers.Activation("relu", name=f"{name}_b_relu")(y)
    else:
        y = conv_bn_act(y, width, b_kernel, strides=strides, padding=b_pad, name=f"{name}_b")
    y = conv_bn_act(y, out_width, 1, padding=(0, 0, 0), activation=None, name=f"{name}_c")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _check_head_fits(x, head_pool_size):
    """PyTorch refuses a feature map smaller than the head's pool; say so at build time."""
    dims = tuple(x.shape[1:4])
    if any(d is not None and d < k for d, k in zip(dims, head_pool_size)):
        raise ValueError(f"the clip is too small for the head's {head_pool_size} average pool: "
                         f"the last feature map is {dims} (T, H, W). Use a larger clip or "
                         "head_pool_size=None (global average)")


def build_resnet3d(input_shape=(8, 224, 224, 3), num_classes: int = 400, *,
                   blocks=STAGE_DEPTHS[50], stem_width: int = 64, stem_kernel_t: int = 1,
                   conv_a_kernels_t=((1,), (1,), (3,), (3,)), conv_b_kernel_t: int = 1,
                   depthwise: bool = False, temporal_strides=(1, 1, 1, 1),
                   stage1_pool: bool = False, head_pool_size=(8, 7, 7), dropout: float = 0.5,
                   name: str = "resnet3d") -> keras.Model:
    """A PyTorchVideo-layout 3D ResNet; :data:`VARIANTS` holds the Slow, C2D, I3D and ir-CSN
    settings of its hub models.

    Args:
        input_shape: ``(T, H, W, 3)`` (T, H, W may be None).
        num_classes: 400 for Kinetics.
        blocks: bottleneck blocks per stage (:data:`STAGE_DEPTHS`).
        stem_width: stem channels; stage widths are 4x, 8x, 16x, 32x it.
        stem_kernel_t: temporal size of the 7x7 stem conv (1 Slow/C2D, 5 I3D, 3 CSN).
        conv_a_kernels_t: per stage, the temporal kernels of its blocks' conv_a, cycled.
        conv_b_kernel_t: temporal size of conv_b (3 for CSN's 3x3x3, else 1).
        depthwise: conv_b channel-separated (one group per channel), as ir-CSN.
        temporal_strides: per stage, the time stride of its first block's conv_b.
        stage1_pool: a 2x1x1 max pool after res2 (C2D, I3D halve time there).
        head_pool_size: the head's stride-1 average pool before the global average
            (PyTorchVideo's ResNetBasicHead); equals global average pooling at the
            recipe's clip size. None: global average only (any clip size).
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    blocks = check_int_tuple(blocks, "blocks", length=4)
    check_positive_int(stem_width, "stem_width")
    check_positive_int(stem_kernel_t, "stem_kernel_t")
    check_positive_int(conv_b_kernel_t, "conv_b_kernel_t")
    if not isinstance(conv_a_kernels_t, (tuple, list)) or len(conv_a_kernels_t) != 4:
        raise ValueError(f"`conv_a_kernels_t` must have 4 entries (one per stage). "
                         f"Received: conv_a_kernels_t={conv_a_kernels_t!r}")
    conv_a_kernels_t = [check_int_tuple(k, "conv_a_kernels_t") for k in conv_a_kernels_t]
    temporal_strides = check_int_tuple(temporal_strides, "temporal_strides", length=4)
    if head_pool_size is not None:
        head_pool_size = check_int_tuple(head_pool_size, "head_pool_size", length=3)
    check_rate(dropout)

    inputs = video_input(input_shape, "rgb")
    x = conv_bn_act(inputs, stem_width, (stem_kernel_t, 7, 7), strides=(1, 2, 2),
                    padding=(stem_kernel_t // 2, 3, 3), name="stem")
    x = max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding=(0, 1, 1), name="stem_pool")
    for stage, depth in enumerate(blocks):
        width = stem_width * 2 ** stage
        for block in range(depth):
            first = block == 0
            spatial = 2 if stage > 0 and first else 1
            strides = (temporal_strides[stage] if first else 1, spatial, spatial)
            kernels = conv_a_kernels_t[stage]
            x = bottleneck_block(x, width, kernel_a_t=kernels[block % len(kernels)],
                                 kernel_b_t=conv_b_kernel_t, strides=strides,
                                 depthwise=depthwise, name=f"res{stage + 2}_{block}")
        if stage == 0 and stage1_pool:
            x = layers.MaxPooling3D((2, 1, 1), strides=(2, 1, 1), name="res2_pool")(x)
    if head_pool_size is not None:
        # ResNetBasicHead: fixed-kernel average pool, Linear at every position, then the
        # mean over positions; the Linear commutes with that mean, so it comes last here.
        _check_head_fits(x, head_pool_size)
        x = layers.AveragePooling3D(head_pool_size, strides=1, name="head_pool")(x)
    x = layers.GlobalAveragePooling3D(name="head_mean")(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


_PTV_DOCS = "pytorchvideo model zoo (docs/source/model_zoo.md), Kinetics-400"
_TINY = {"blocks": (1, 1, 1, 1), "stem_width": 4, "head_pool_size": None, "dropout": 0.0}


def _variant(name: str, description: str, paper: str, frames: int, sample_rate: int,
             params: float) -> ModelInfo:
    # PySlowFast's Kinetics recipe decodes at 30 fps and takes every sample_rate-th frame.
    return make_info(
        functools.partial(build_resnet3d, **VARIANTS[name], name=name), "rgb", description,
        paper, (frames, 224, 224, 3), normalization="kinetics_ptv", fps=30.0 / sample_rate,
        published_params=params,
        params_source=f"{_PTV_DOCS}, {name} {frames}x{sample_rate}: {params / 1e6:.2f}M",
        tiny_kwargs=_TINY)


_SLOWFAST = "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019"
_NONLOCAL = "Wang et al., Non-local Neural Networks, CVPR 2018 (C2D / I3D ResNet-50 baselines)"
ZOO = {
    "slow_r50": _variant("slow_r50", "PyTorchVideo Slow R50 8x8: 2D stem, 3x1x1 convs in res4-5.",
                         _SLOWFAST, 8, 8, 32.45e6),
    "c2d_r50": _variant("c2d_r50", "PyTorchVideo C2D R50 8x8: 2D convs, one 2x1x1 time pool.",
                        _NONLOCAL, 8, 8, 24.33e6),
    "i3d_r50": _variant("i3d_r50", "PyTorchVideo I3D R50 8x8: 5x7x7 stem, inflated 3x1x1 convs.",
                        _NONLOCAL, 8, 8, 28.04e6),
    "csn_r101": _variant("csn_r101", "PyTorchVideo ir-CSN-101 32x2: depthwise 3x3x3 bottlenecks.",
                         "Tran et al., Video Classification with Channel-Separated "
                         "Convolutional Networks, ICCV 2019", 32, 2, 22.21e6),
}
