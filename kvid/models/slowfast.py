"""SlowFast networks: a slow, wide pathway and a fast, thin one joined by lateral connections.

Feichtenhofer et al., "SlowFast Networks for Video Recognition", ICCV 2019
(https://arxiv.org/abs/1812.03982). Layout, padding and head exactly as PyTorchVideo's
``create_slowfast`` (``pytorchvideo.models.slowfast``), so the hub checkpoints
``slowfast_r50`` / ``slowfast_r101`` convert (:mod:`kvid.pretrained.pytorchvideo_slowfast`).

```
clip [B, T, H, W, 3] --T//alpha frames (PackPathway)--> slow [B, T/alpha, ...] (channels C)
                    \\--all frames-------------------->  fast [B, T, ...]      (channels C/beta)
stem -> lateral -> res2 -> lateral -> res3 -> lateral -> res4 -> lateral -> res5
stem: 1x7x7 (slow) / 5x7x7 (fast) conv, stride (1,2,2), then 1x3x3 max pool, stride (1,2,2)
lateral: fast --(k x1x1 conv, stride alpha in time, 2C/beta)--> concatenated after slow
head: per pathway the mean of fixed-window means (PyTorchVideo's AvgPool3d (8,7,7) / (32,7,7),
      stride 1, then its global average) or a plain global average; concatenate slow|fast,
      dropout, logits
```
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    check_choice,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    max_pool,
    video_input,
)

RESNET_BOTTLENECK_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Temporal kernel of each stage's first conv: slow pathway uses none in res2/res3.
SLOW_TEMPORAL_KERNELS = (1, 1, 3, 3)
FAST_TEMPORAL_KERNELS = (3, 3, 3, 3)
# PyTorchVideo's Kinetics-400 hub models (pytorchvideo.models.hub.slowfast), 8x8: 32 fast
# frames, alpha 4, head windows (8,7,7) / (32,7,7); R50 fuses with 7x1x1, R101 with 5x1x1.
VARIANTS = {
    "slowfast_r50": {"depth": 50, "alpha": 4, "fusion_kernel": 7,
                     "head_pool_sizes": ((8, 7, 7), (32, 7, 7))},
    "slowfast_r101": {"depth": 101, "alpha": 4, "fusion_kernel": 5,
                      "head_pool_sizes": ((8, 7, 7), (32, 7, 7))},
}


def slow_frame_indices(frames: int, alpha: int) -> np.ndarray:
    """The ``frames // alpha`` frames the slow pathway sees, as PyTorchVideo/PySlowFast pick them.

    Their ``PackPathway`` takes ``torch.linspace(0, T - 1, T // alpha).long()``: evenly
    spread from the first frame to the last, not every alpha-th frame (32 frames, alpha 4:
    0, 4, 8, 13, 17, 22, 26, 31). The float32 arithmetic of torch's CPU linspace is
    reproduced (start + step*i in the first half, end - step*(n-1-i) in the second), because
    the exact rational value truncates differently where it is an integer (T=95, alpha=4).
    Checked equal to torch's for every T <= 512, alpha <= 16 (the tests: T <= 256, alpha <= 8).
    """
    n = frames // alpha
    if n < 1:
        raise ValueError(f"The clip needs at least alpha={alpha} frames. Received: {frames}")
    if n == 1:
        return np.zeros(1, np.int32)
    end = np.float32(frames - 1)
    step = end / np.float32(n - 1)
    i = np.arange(n)
    values = np.where(i < n // 2, step * i.astype(np.float32),
                      end - step * (n - 1 - i).astype(np.float32))
    return values.astype(np.float32).astype(np.int32)


@keras.saving.register_keras_serializable(package="kvid")
class SlowPathwayFrames(layers.Layer):
    """[B, T, H, W, C] -> [B, T // alpha, H, W, C] at :func:`slow_frame_indices`.

    The indices are constants when T is known; for a variable T they are computed in the
    graph with the same float32 formula.
    """

    def __init__(self, alpha: int, **kwargs):
        super().__init__(**kwargs)
        self.alpha = int(alpha)

    def call(self, x):
        frames = x.shape[1]
        if frames is not None:
            return ops.take(x, slow_frame_indices(frames, self.alpha), axis=1)
        frames = ops.shape(x)[1]
        n = frames // self.alpha
        end = ops.cast(frames - 1, "float32")
        step = end / ops.cast(ops.maximum(n - 1, 1), "float32")
        i = ops.arange(n)
        values = ops.where(i < n // 2, step * ops.cast(i, "float32"),
                           end - step * ops.cast(n - 1 - i, "float32"))
        indices = ops.where(n > 1, ops.cast(values, "int32"), ops.zeros_like(i, "int32"))
        return ops.take(x, indices, axis=1)

    def compute_output_shape(self, input_shape):
        frames = input_shape[1]
        return (input_shape[0], None if frames is None else frames // self.alpha,
                *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def _window_weights(size, window: int, dtype):
    """Weight of each position in the mean of all length-``window`` means (stride 1, valid)."""
    window = ops.minimum(window, size)
    count = size - window + 1
    i = ops.arange(size)
    covered = ops.minimum(ops.minimum(i + 1, size - i), ops.minimum(window, count))
    return ops.cast(covered, dtype) / ops.cast(window * count, dtype)


@keras.saving.register_keras_serializable(package="kvid")
class WindowedMeanPool(layers.Layer):
    """[B, T, H, W, C] -> [B, C]: the mean over all ``pool_size`` windows (stride 1, no
    padding) of each window's mean.

    PyTorchVideo's SlowFast head does ``AvgPool3d(kernel, stride=1)`` and averages the
    projected result over what remains; the projection is linear, so this is the same
    function with the pooling first. At the training size the window is the whole map
    (a global average); on larger clips the border positions weigh less. A window larger
    than the map is clipped to it (global average), where the reference raises an error.
    """

    def __init__(self, pool_size, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)

    def call(self, x):
        for axis, window in zip((1, 2, 3), self.pool_size):
            size = x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]
            shape = [1] * len(x.shape)
            shape[axis] = -1
            weights = ops.reshape(_window_weights(size, window, x.dtype), shape)
            x = ops.sum(x * weights, axis=axis, keepdims=True)
        return ops.reshape(x, (-1, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


def bottleneck_block(x, inner: int, out: int, *, temporal_kernel: int, strides: int, name: str):
    """ResNet bottleneck with a (t x 1 x 1) first conv and the spatial stride on the 3x3."""
    shortcut = x
    if strides != 1 or x.shape[-1] != out:
        shortcut = conv_bn_act(x, out, 1, strides=(1, strides, strides), activation=None,
                               padding=0, name=f"{name}_proj")
    y = conv_bn_act(x, inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                    name=f"{name}_a")
    y = conv_bn_act(y, inner, (1, 3, 3), strides=(1, strides, strides), padding=(0, 1, 1),
                    name=f"{name}_b")
    y = conv_bn_act(y, out, 1, activation=None, padding=0, name=f"{name}_c")
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _lateral(slow, fast, *, alpha: int, fusion_kernel: int, ratio: int, name: str):
    lateral = conv_bn_act(fast, ratio * fast.shape[-1], (fusion_kernel, 1, 1),
                          strides=(alpha, 1, 1), padding=(fusion_kernel // 2, 0, 0), name=name)
    return layers.Concatenate(name=f"{name}_concat")([slow, lateral])


def _stem(x, filters: int, temporal_kernel: int, name: str):
    x = conv_bn_act(x, filters, (temporal_kernel, 7, 7), strides=(1, 2, 2),
                    padding=(temporal_kernel // 2, 3, 3), name=name)
    return max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding=(0, 1, 1), name=f"{name}_pool")


def build_slowfast(input_shape=(32, 224, 224, 3), num_classes: int = 400, *, depth: int = 50,
                   alpha: int = 8, beta_inv: int = 8, width: int = 64,
                   fusion_conv_channel_ratio: int = 2, fusion_kernel: int = 5, blocks=None,
                   head_pool_sizes=None, dropout: float = 0.5,
                   name: str = "slowfast") -> keras.Model:
    """SlowFast R50/R101 (Feichtenhofer et al. 2019); default 4x16 (alpha 8, beta 1/8).

    Args:
        input_shape: ``(T, H, W, 3)`` of the fast pathway; the slow pathway takes
            ``T // alpha`` frames spread over the clip (:func:`slow_frame_indices`), so T must
            be a multiple of ``alpha`` (reference 32x224x224: "4x16" with alpha 8, "8x8" with
            alpha 4); T, H, W may be None.
        num_classes: 400 for Kinetics.
        depth: 50 or 101 (bottleneck blocks per stage).
        alpha: frame-rate ratio between the pathways (also the lateral convs' time stride).
        beta_inv: channel ratio 1/beta (fast pathway width = width / beta_inv).
        width: stem width of the slow pathway (stage outputs are 4, 8, 16, 32 x width).
        fusion_conv_channel_ratio, fusion_kernel: lateral conv width (x fast channels) and
            temporal kernel (PySlowFast: 5 for 4x16 and R101 8x8, 7 for R50 8x8).
        blocks: overrides ``depth`` with explicit blocks per stage (small test models).
        head_pool_sizes: the slow and fast pathways' head averaging windows
            ``((t, h, w), (t_fast, h, w))``, as PyTorchVideo's fixed-kernel ``AvgPool3d``
            head (``head_pool_kernel_sizes``; its pooled maps must then have equal sizes,
            which only T=32 gives for 8x8's ((8,7,7), (32,7,7))); None averages the whole
            maps (the same at the training size).
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
    if head_pool_sizes is not None:
        if len(head_pool_sizes) != 2:
            raise ValueError(f"head_pool_sizes must be (slow, fast) windows. "
                             f"Received: head_pool_sizes={head_pool_sizes!r}")
        head_pool_sizes = tuple(check_int_tuple(size, "head_pool_sizes", length=3)
                                for size in head_pool_sizes)
    check_rate(dropout)
    if input_shape[0] is not None and input_shape[0] % alpha:
        raise ValueError(f"The number of frames must be a multiple of alpha={alpha}. "
                         f"Received: input_shape={input_shape}")
    fast_width = max(1, width // beta_inv)
    lateral = dict(alpha=alpha, fusion_kernel=fusion_kernel, ratio=fusion_conv_channel_ratio)

    inputs = video_input(input_shape, "rgb")
    slow = SlowPathwayFrames(alpha, name="slow_frames")(inputs)
    slow = _stem(slow, width, 1, "slow_stem")
    fast = _stem(inputs, fast_width, 5, "fast_stem")
    slow = _lateral(slow, fast, name="lateral_stem", **lateral)
    for stage, count in enumerate(blocks):
        inner = width * 2**stage
        fast_inner = max(1, inner // beta_inv)
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            slow = bottleneck_block(slow, inner, 4 * inner, strides=strides,
                                    temporal_kernel=SLOW_TEMPORAL_KERNELS[stage],
                                    name=f"slow_res{stage + 2}_{block}")
            fast = bottleneck_block(fast, fast_inner, 4 * fast_inner, strides=strides,
                                    temporal_kernel=FAST_TEMPORAL_KERNELS[stage],
                                    name=f"fast_res{stage + 2}_{block}")
        if stage < 3:
            slow = _lateral(slow, fast, name=f"lateral_res{stage + 2}", **lateral)
    if head_pool_sizes is None:
        slow = layers.GlobalAveragePooling3D(name="slow_pool")(slow)
        fast = layers.GlobalAveragePooling3D(name="fast_pool")(fast)
    else:
        slow = WindowedMeanPool(head_pool_sizes[0], name="slow_pool")(slow)
        fast = WindowedMeanPool(head_pool_sizes[1], name="fast_pool")(fast)
    x = layers.Concatenate(name="head_concat")([slow, fast])
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _variant(name: str, description: str, params: float) -> ModelInfo:
    return make_info(
        functools.partial(build_slowfast, **VARIANTS[name], name=name), "rgb", description,
        "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019",
        (32, 224, 224, 3), normalization="kinetics_ptv", fps=15.0, published_params=params,
        params_source="pytorchvideo model zoo (docs/source/model_zoo.md), Kinetics-400 "
                      f"SlowFast {name[-4:].upper()} 8x8: {params / 1e6:.2f}M",
        tiny_input_shape=(8, 32, 32, 3),
        tiny_kwargs={"width": 8, "beta_inv": 4, "blocks": (1, 1, 1, 1), "dropout": 0.0})


# The 8x8 recipe (PySlowFast SLOWFAST_8x8_R50/R101): 32 frames taken every 2nd frame of 30 fps
# video (15 fps), the slow pathway 8 of them; short side 256, crop 224 (256 at test time).
ZOO = {
    "slowfast_r50": _variant("slowfast_r50", "PyTorchVideo SlowFast R50 8x8 (Kinetics-400 "
                             "importable).", 34.57e6),
    "slowfast_r101": _variant("slowfast_r101", "PyTorchVideo SlowFast R101 8x8 (Kinetics-400 "
                              "importable).", 62.83e6),
}
