"""MoViNet A0-A5 (base and causal), block specs as data, as TF Model Garden declares them.

Kondratyuk et al., "MoViNets: Mobile Video Networks for Efficient Video Recognition",
CVPR 2021 (https://arxiv.org/abs/2103.11511). Computes what Model Garden's
``official.projects.movinet`` ``Movinet`` + ``MovinetClassifier`` compute (tested on the
same weights, logits within 1e-4), in both of its published forms, so its checkpoints
convert (:func:`load_model_garden_weights`): the base models (3D convs, swish) and the
stream models (:data:`STREAM`: causal, (2+1)D convs, hard swish, positional encoding from
A3 on, as Model Garden's streaming tutorial builds them).

```
[B,T,H,W,3] -> stem 1x3x3/(1,2,2) conv, BN, swish -> 5 blocks of bottlenecks:
  1x1x1 expand, BN, swish -> kxkxk depthwise (stride (1,2,2) at a block's start), BN, swish
  -> squeeze-excite (mean over T, H, W; 1x1x1 reduce, swish, 1x1x1 expand, sigmoid)
  -> 1x1x1 project, BN -> x rezero scale, + shortcut (3x3 avg pool /2, 1x1x1 conv, BN)
-> 1x1x1 project, BN, swish -> global mean -> 1x1x1 conv 2048, swish -> dropout -> logits
```
Causal (stream) variants pad every temporal kernel with the frames before it only (a
stream buffer of k - 1 frames, zeros at the start) and pool the squeeze-excite
cumulatively (frame t sees the mean of frames <= t), so a frame's features never depend
on later frames. The head still averages the whole clip. :func:`build_movinet_step` makes
the same network as a step model: a chunk of frames and the states (stream buffers,
running sums and frame counts) in, logits of everything seen so far and new states out.
Fed one frame at a time it gives the causal model's logits on the whole clip.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Callable

import keras
from keras import layers, ops

from kvid.models.info import make_info
from kvid.models.layers import (
    DepthwiseConv3D,
    check_choice,
    check_input_shape,
    check_positive_int,
    check_rate,
    video_input,
)

K13, K15, K33, K53 = (1, 3, 3), (1, 5, 5), (3, 3, 3), (5, 3, 3)
S11, S12 = (1, 1, 1), (1, 2, 2)
BN_MOMENTUM, BN_EPSILON = 0.99, 1e-3  # Model Garden's (tf.keras' defaults)


@dataclasses.dataclass(frozen=True)
class Block:
    """One stage: its output width and, per layer, expansion width, kernel and stride."""

    filters: int
    expand: tuple[int, ...]
    kernels: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]


@dataclasses.dataclass(frozen=True)
class Spec:
    stem: int  # stem filters (1x3x3 conv, stride (1, 2, 2))
    blocks: tuple[Block, ...]
    project: int  # head's 1x1x1 projection
    head: int = 2048  # classifier's hidden width


def _b(filters, expand, kernels, first_stride=S12):
    return Block(filters, tuple(expand), tuple(kernels),
                 (first_stride,) + (S11,) * (len(expand) - 1))


# Model Garden's BLOCK_SPECS (official/projects/movinet/modeling/movinet.py).
SPECS: dict[str, Spec] = {
    "a0": Spec(8, (
        _b(8, (24,), (K15,)),
        _b(32, (80, 80, 80), (K33, K33, K33)),
        _b(56, (184, 112, 184), (K53, K33, K33)),
        _b(56, (184, 184, 184, 184), (K53, K33, K33, K33), S11),
        _b(104, (384, 280, 280, 344), (K53, K15, K15, K15)),
    ), 480),
    "a1": Spec(16, (
        _b(16, (40, 40), (K15, K33)),
        _b(40, (96, 120, 96, 96), (K33,) * 4),
        _b(64, (216, 128, 216, 168, 216), (K53, K33, K33, K33, K33)),
        _b(64, (216, 216, 216, 128, 128, 216), (K53, K33, K33, K33, K15, K33), S11),
        _b(136, (456, 360, 360, 360, 456, 456, 544), (K53, K15, K15, K15, K15, K33, K13)),
    ), 600),
    "a2": Spec(16, (
        _b(16, (40, 40, 64), (K15, K33, K33)),
        _b(40, (96, 120, 96, 96, 120), (K33,) * 5),
        _b(72, (240, 160, 240, 192, 240), (K53, K33, K33, K33, K33)),
        _b(72, (240, 240, 240, 240, 144, 240), (K53, K33, K33, K33, K15, K33), S11),
        _b(144, (480, 384, 384, 480, 480, 480, 576), (K53, K15, K15, K15, K15, K33, K13)),
    ), 640),
    "a3": Spec(16, (
        _b(16, (40, 40, 64, 40), (K15, K33, K33, K33)),
        _b(48, (112, 144, 112, 112, 144, 144), (K33, K33, K33, K15, K33, K33)),
        _b(80, (240, 152, 240, 192, 240), (K53, K33, K33, K33, K33)),
        _b(88, (264, 264, 264, 264, 160, 264, 264, 264),
           (K53, K33, K33, K33, K15, K33, K33, K33), S11),
        _b(168, (560, 448, 448, 560, 560, 560, 448, 448, 560, 672),
           (K53, K15, K15, K15, K15, K33, K15, K15, K33, K13)),
    ), 744),
    "a4": Spec(24, (
        _b(24, (64, 64, 96, 64, 96, 64), (K15, K33, K33, K33, K33, K33)),
        _b(56, (168, 168, 136, 136, 168, 168, 168, 136, 136),
           (K33, K33, K33, K33, K33, K33, K33, K15, K33)),
        _b(96, (320, 160, 320, 192, 320, 160, 320, 256, 320), (K53,) + (K33,) * 8),
        _b(96, (320, 320, 320, 320, 192, 320, 320, 192, 320, 320),
           (K53, K33, K33, K33, K15, K33, K33, K33, K33, K33), S11),
        _b(192, (640, 512, 512, 640, 640, 640, 512, 512, 640, 768, 640, 640, 768),
           (K53, K15, K15, K15, K15, K33, K15, K15, K15, K15, K15, K33, K33)),
    ), 856),
    "a5": Spec(24, (
        _b(24, (64, 64, 96, 64, 96, 64), (K15, K15, K33, K33, K33, K33)),
        _b(64, (192, 152, 152, 152, 192, 192, 192, 152, 152, 192, 192), (K53,) + (K33,) * 10),
        _b(112, (376, 224, 376, 376, 296, 376, 224, 376, 376, 296, 376, 376, 376),
           (K53,) + (K33,) * 12),
        _b(120, (376, 376, 376, 376, 224, 376, 376, 224, 376, 376, 376),
           (K53, K33, K33, K33, K15, K33, K33, K33, K33, K33, K33), S11),
        _b(224, (744, 744, 600, 600, 744, 744, 744, 896, 600, 600, 896, 744, 744, 896, 600,
                 600, 744, 744),
           (K53, K33, K15, K15, K15, K15, K33, K15, K15, K15, K15, K15, K33, K15, K15, K15,
            K15, K33)),
    ), 992),
}
# The published training/eval input of each variant (Model Garden's README): frames, size.
INPUTS = {"a0": (50, 172), "a1": (50, 172), "a2": (50, 224), "a3": (120, 256),
          "a4": (80, 290), "a5": (120, 320)}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Model Garden's ``nn_layers.make_divisible`` (squeeze-excite widths)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * value else new)


def hard_swish(x):
    return x * ops.relu6(x + 3.0) * (1.0 / 6.0)


def hard_sigmoid(x):
    return ops.relu6(x + 3.0) * 0.16667  # Model Garden's constant, not 1/6


ACTIVATIONS: dict[str, Callable] = {"swish": ops.silu, "sigmoid": ops.sigmoid,
                                    "hard_swish": hard_swish, "hard_sigmoid": hard_sigmoid}


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="kvid")
class MovinetActivation(layers.Layer):
    """One of :data:`ACTIVATIONS` by name (serializable, unlike a lambda)."""

    def __init__(self, fn: str, **kwargs):
        super().__init__(**kwargs)
        check_choice(fn, ACTIVATIONS, "activation")
        self.fn = fn

    def call(self, x):
        return ACTIVATIONS[self.fn](x)

    def get_config(self):
        return {**super().get_config(), "fn": self.fn}


@keras.saving.register_keras_serializable(package="kvid")
class StreamBuffer(layers.Layer):
    """Prepends the ``size`` frames before a chunk (zeros at the start of a video) so that a
    temporal conv without time padding is causal; returns them with the new buffer."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, x, buffer=None):
        if buffer is None:
            shape = ops.shape(x)
            buffer = ops.zeros((shape[0], self.size, shape[2], shape[3], shape[4]), x.dtype)
        full = ops.concatenate([buffer, x], axis=1)
        return full, full[:, -self.size:]

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="kvid")
class FramePooling(layers.Layer):
    """Average pooling within each frame ("same" padding, as Model Garden's (1, k, k)
    AveragePooling3D): a 2D pool over batch x time, since TF Lite has no 3D pool."""

    def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides = int(pool_size), int(strides)

    def call(self, x):
        shape = ops.shape(x)
        frames = ops.reshape(x, (-1, shape[2], shape[3], x.shape[-1]))
        pooled = ops.average_pool(frames, self.pool_size, self.strides, padding="same")
        out = ops.shape(pooled)
        return ops.reshape(pooled, (shape[0], shape[1], out[1], out[2], x.shape[-1]))

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        return b, t, *(None if d is None else -(-d // self.strides) for d in (h, w)), c

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


@keras.saving.register_keras_serializable(package="kvid")
class FrameConv(layers.Conv3D):
    """A Conv3D whose kernel and stride are 1 in time, computed within each frame as a 2D
    conv: the same weights (kernel [1, kh, kw, in, out]), but TF Lite quantizes CONV_2D
    to int8 and runs CONV_3D in float only."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if self.kernel_size[0] != 1 or self.strides[0] != 1 or self.dilation_rate[0] != 1:
            raise ValueError(f"FrameConv needs kernel, stride and dilation 1 in time; got "
                             f"{self.kernel_size}, {self.strides}, {self.dilation_rate}")

    def call(self, x):
        shape = ops.shape(x)
        frames = ops.reshape(x, (-1, shape[2], shape[3], x.shape[-1]))
        y = ops.conv(frames, self.kernel[0], strides=self.strides[1:], padding=self.padding)
        if self.use_bias:
            y = y + self.bias
        out = ops.shape(y)
        y = ops.reshape(y, (shape[0], shape[1], out[1], out[2], self.filters))
        return y if self.activation is None else self.activation(y)


def _reciprocal(x):
    """1 / x for x > 0 as rsqrt(x)^2: TF Lite's int8 DIV refuses a divisor whose quantized
    value is 0 (any x at the range's zero point), RSQRT has no such check."""
    return ops.square(ops.rsqrt(x))


@keras.saving.register_keras_serializable(package="kvid")
class StreamMean(layers.Layer):
    """Mean over space and over every frame so far, continuing from ``total`` (the sum of
    the earlier frames' spatial means) and ``count`` (their number).

    ``causal``: one output per frame, the mean of the frames up to it (squeeze-excite of a
    causal model); else one output, the mean of all frames seen (the head).
    ``with_frames``: each frame's own spatial mean concatenated after it (squeeze-excite
    "2plus3d"; the mean is then repeated for every frame)."""

    def __init__(self, causal: bool, with_frames: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.causal = bool(causal)
        self.with_frames = bool(with_frames)

    def call(self, x, total=None, count=None):
        frames = ops.shape(x)[1]
        space = ops.mean(x, axis=(2, 3), keepdims=True)  # [B, T, 1, 1, C]
        if total is None:
            total = ops.zeros_like(space[:, :1])
            count = ops.zeros((ops.shape(x)[0], 1), "int32")
        seen = ops.cast(count, x.dtype)[:, :, None, None, None]  # [B, 1, 1, 1, 1]
        if self.causal:
            sums = ops.cumsum(space, axis=1) + total
            steps = ops.cast(ops.arange(1, frames + 1), x.dtype)[None, :, None, None, None]
            mean, new_total = sums * _reciprocal(seen + steps), sums[:, -1:]
        else:
            new_total = ops.sum(space, axis=1, keepdims=True) + total
            mean = new_total * _reciprocal(seen + ops.cast(frames, x.dtype))
            if self.with_frames:
                mean = ops.repeat(mean, frames, axis=1)
        if self.with_frames:
            mean = ops.concatenate([mean, space], axis=-1)
        return mean, new_total, count + frames

    def get_config(self):
        return {**super().get_config(), "causal": self.causal, "with_frames": self.with_frames}


@keras.saving.register_keras_serializable(package="kvid")
class Rezero(layers.Layer):
    """Multiplies by one trainable scalar, initially 0 (ReZero: a new block starts as the
    identity)."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="zeros")

    def call(self, x):
        return x * ops.cast(self.scale, x.dtype)


@keras.saving.register_keras_serializable(package="kvid")
class PositionalEncoding(layers.Layer):
    """Adds a sinusoidal encoding of each frame's position in the video (continuing from
    ``count`` frames already seen), scaled by a trainable scalar that starts at 0: Model
    Garden's, sines of the even channels' angles then cosines of the odd ones'."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer="zeros")

    def call(self, x, count=None):
        frames, channels = ops.shape(x)[1], x.shape[-1]
        start = 0 if count is None else count[0, 0]
        positions = ops.cast(ops.arange(frames) + start, x.dtype)[:, None]
        power = ops.cast(2 * (ops.arange(channels) // 2), x.dtype) / channels
        radians = positions * (1.0 / ops.power(10_000.0, power))[None, :]
        encoding = ops.concatenate([ops.sin(radians[:, 0::2]), ops.cos(radians[:, 1::2])], -1)
        encoding = ops.reshape(encoding, (1, frames, 1, 1, channels))
        if count is None:
            count = ops.zeros((ops.shape(x)[0], 1), "int32")
        return x + ops.cast(self.scale, x.dtype) * encoding, count + frames


# --------------------------------------------------------------------------- network


class _Graph:
    """Builds the network once per call of :meth:`run`, creating each layer the first time
    its name is asked for: the clip model and the step model share every layer."""

    def __init__(self, spec: Spec, num_classes: int, causal: bool, activation: str,
                 gating_activation: str, head_activation: str, dropout: float,
                 conv_type: str = "3d", se_type: str = "3d", positional_encoding: bool = False,
                 bn_momentum: float = BN_MOMENTUM):
        self.spec, self.num_classes, self.causal = spec, num_classes, causal
        self.bn_momentum = bn_momentum
        self.conv_type, self.se_type = conv_type, se_type
        self.positional_encoding = positional_encoding
        self.activation, self.gating, self.head_activation = (activation, gating_activation,
                                                              head_activation)
        self.dropout = dropout
        self.made: dict[str, layers.Layer] = {}

    def layer(self, name: str, make):
        if name not in self.made:
            self.made[name] = make(name)
        return self.made[name]

    def bn(self, x, name):
        return self.layer(name, lambda n: layers.BatchNormalization(
            momentum=self.bn_momentum, epsilon=BN_EPSILON, name=n))(x)

    def act(self, x, fn, name):
        return self.layer(name, lambda n: MovinetActivation(fn, name=n))(x)

    def pointwise(self, x, filters, name, *, bias=False):
        return self.layer(name, lambda n: FrameConv(filters, 1, use_bias=bias, name=n))(x)

    def run(self, x, states: dict | None):
        """-> (logits, new states); ``states`` None: a clip from its start (no state inputs)."""
        new: dict = {}

        def state(key):
            return None if states is None else states[key]

        spec = self.spec
        x = self.layer("stem__stem__conv3d", lambda n: FrameConv(
            spec.stem, K13, strides=S12, padding="same", use_bias=False, name=n))(x)
        x = self.act(self.bn(x, "stem__stem__bn"), self.activation, "stem__stem__act")
        for b, block in enumerate(spec.blocks):
            for i, (expand, kernel, stride) in enumerate(zip(block.expand, block.kernels,
                                                             block.strides)):
                x = self.bottleneck(x, f"block{b}_layer{i}", block.filters, expand, kernel,
                                    stride, state, new)
        x = self.pointwise(x, spec.project, "head__project__conv3d")
        x = self.act(self.bn(x, "head__project__bn"), self.activation, "head__project__act")
        pool = self.layer("head__pool", lambda n: StreamMean(False, name=n))
        x, new["state_head_pool_buffer"], new["state_head_pool_frame_count"] = pool(
            x, state("state_head_pool_buffer"), state("state_head_pool_frame_count"))
        x = self.pointwise(x, spec.head, "classifier_head__head__conv3d", bias=True)
        x = self.act(x, self.head_activation, "classifier_head__head__act")
        if self.dropout:
            x = self.layer("classifier_head__dropout",
                           lambda n: layers.Dropout(self.dropout, name=n))(x)
        x = self.pointwise(x, self.num_classes, "classifier_head__classifier__conv3d",
                           bias=True)
        logits = self.layer("logits", lambda n: layers.Reshape((self.num_classes,),
                                                               name=n))(x)
        return logits, new

    def bottleneck(self, inputs, name, filters, expand, kernel, stride, state, new):
        p = f"{name}__bneck"
        x = self.pointwise(inputs, expand, f"{p}__expansion__conv3d")
        x = self.act(self.bn(x, f"{p}__expansion__bn"), self.activation, f"{p}__expansion__act")
        split = self.conv_type == "2plus1d"  # kxk per frame, BN, act, then kx1x1 in time
        if split:
            x = self.layer(f"{p}__feature__conv3d", lambda n: DepthwiseConv3D(
                (1, *kernel[1:]), strides=stride, name=n))(x)
            x = self.act(self.bn(x, f"{p}__feature__bn"), self.activation,
                         f"{p}__feature__act")
        if kernel[0] > 1 or not split:
            where = f"{p}__feature__temporal" if split else f"{p}__feature__conv3d"
            buffered = self.causal and kernel[0] > 1
            if buffered:
                key = f"state_{name}_stream_buffer"
                buffer = self.layer(f"{p}__feature__buffer",
                                    lambda n: StreamBuffer(kernel[0] - 1, name=n))
                x, new[key] = buffer(x, state(key))
            x = self.layer(where, lambda n: DepthwiseConv3D(
                (kernel[0], 1, 1) if split else kernel, strides=S11 if split else stride,
                padding="buffered" if buffered else "same", name=n))(x)
            bn, act = (f"{where}_bn", f"{where}_act") if split else (f"{p}__feature__bn",
                                                                      f"{p}__feature__act")
            x = self.act(self.bn(x, bn), self.activation, act)
        # squeeze-excite
        key = f"state_{name}_pool"
        both = self.se_type == "2plus3d"
        pool = self.layer(f"{p}__se__pool", lambda n: StreamMean(self.causal, both, name=n))
        se, new[f"{key}_buffer"], new[f"{key}_frame_count"] = pool(
            x, state(f"{key}_buffer"), state(f"{key}_frame_count"))
        if self.positional_encoding:
            key = f"state_{name}_pos_enc_frame_count"
            encode = self.layer(f"{p}__se__pos_encoding", lambda n: PositionalEncoding(name=n))
            se, new[key] = encode(se, state(key))
        se = self.pointwise(se, make_divisible(0.25 * expand * (2 if both else 1)),
                            f"{p}__se__se_reduce__conv3d", bias=True)
        se = self.act(se, self.activation, f"{p}__se__se_reduce__act")
        se = self.pointwise(se, expand, f"{p}__se__se_expand__conv3d", bias=True)
        se = self.act(se, self.gating, f"{p}__se__se_expand__act")
        x = self.layer(f"{p}__se__gate", lambda n: layers.Multiply(name=n))([x, se])
        x = self.pointwise(x, filters, f"{p}__projection__conv3d")
        x = self.bn(x, f"{p}__projection__bn")
        x = self.layer(f"{name}__rezero", lambda n: Rezero(name=n))(x)
        skip = inputs
        downsample = any(s > 1 for s in stride)
        if downsample or inputs.shape[-1] != filters:
            if downsample:
                skip = self.layer(f"{p}__skip__skip_pool",
                                  lambda n: FramePooling(3, 2, name=n))(skip)
            skip = self.pointwise(skip, filters, f"{p}__skip__skip_project__conv3d")
            skip = self.bn(skip, f"{p}__skip__skip_project__bn")
        return self.layer(f"{name}__add", lambda n: layers.Add(name=n))([x, skip])


def _check(input_shape, num_classes, model_id, dropout):
    check_choice(model_id, SPECS, "model_id")
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)
    return check_input_shape(input_shape, channels=3, allow_none=True)


CONV_TYPES = ("3d", "2plus1d")
# The stream checkpoints' network (Model Garden's streaming/TF Lite form).
STREAM = {"causal": True, "conv_type": "2plus1d", "se_type": "2plus3d",
          "activation": "hard_swish", "gating_activation": "hard_sigmoid"}
SE_TYPES = ("3d", "2plus3d")


def build_movinet(input_shape=(50, 172, 172, 3), num_classes: int = 600, *,
                  model_id: str = "a0", causal: bool = False, conv_type: str = "3d",
                  se_type: str = "3d", activation: str = "swish",
                  gating_activation: str = "sigmoid", head_activation: str = "swish",
                  positional_encoding: bool = False, dropout: float = 0.5,
                  bn_momentum: float = BN_MOMENTUM, name: str | None = None) -> keras.Model:
    """MoViNet ``model_id`` (a0 ... a5) on clips ``input_shape`` (T, H, W may be None).

    Args:
        causal: the stream variant's network: causal temporal convs and cumulative
            squeeze-excite (train it on clips like any model; :func:`build_movinet_step`
            runs it frame by frame).
        conv_type: ``"3d"`` (the published models) or ``"2plus1d"``: each kxkxk depthwise
            conv split into kxk per frame, BN, activation, then k in time (Model Garden's
            TF Lite models; its spatial downsampling then comes before the stream buffer).
        se_type: ``"3d"`` (squeeze-excite on the space-time mean) or ``"2plus3d"`` (that
            mean and each frame's own, concatenated: the TF Lite models).
        activation, gating_activation, head_activation: ``swish``/``sigmoid`` as the
            published base models; ``hard_swish``/``hard_sigmoid`` as the stream ones.
        positional_encoding: a causal model's squeeze-excite sees each frame's position
            (the A3-A5 stream models).
        dropout: before the logits (0.5, Model Garden's Kinetics config; 0 at inference).
        bn_momentum: of the batch norms' moving statistics (Model Garden's 0.99 is for
            Kinetics-length training; on a few hundred steps they would stay near their
            initial values and inference would not follow training).
    """
    input_shape = _check(input_shape, num_classes, model_id, dropout)
    check_choice(conv_type, CONV_TYPES, "conv_type")
    check_choice(se_type, SE_TYPES, "se_type")
    for fn in (activation, gating_activation, head_activation):
        check_choice(fn, ACTIVATIONS, "activation")
    if positional_encoding and not causal:
        raise ValueError("positional_encoding is for causal MoViNets (Model Garden adds it "
                         "only with causal=True)")
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must be in [0, 1). Received: {bn_momentum!r}")
    graph = _Graph(SPECS[model_id], num_classes, causal, activation, gating_activation,
                   head_activation, dropout, conv_type, se_type, positional_encoding,
                   bn_momentum)
    inputs = video_input(input_shape)
    logits, _ = graph.run(inputs, None)
    model = keras.Model(inputs, logits, name=name or f"movinet_{model_id}"
                        + ("_stream" if causal else ""))
    model._kvid_graph = graph  # so build_movinet_step can share its layers
    return model


def _graph_of(model: keras.Model) -> _Graph:
    """The :class:`_Graph` of a MoViNet loaded from a ``.keras`` file (a run's model): its
    settings read back from its layers, its layers reused, so a step model shares them."""
    by_name = {layer.name: layer for layer in model.layers}
    try:
        project = by_name["head__project__conv3d"].filters
        model_id = next(k for k, v in SPECS.items() if v.project == project)
        dropout = by_name.get("classifier_head__dropout")
        graph = _Graph(SPECS[model_id], int(model.output.shape[-1]),
                       any(isinstance(layer, StreamBuffer) for layer in model.layers),
                       by_name["stem__stem__act"].fn,
                       by_name["block0_layer0__bneck__se__se_expand__act"].fn,
                       by_name["classifier_head__head__act"].fn,
                       dropout.rate if dropout is not None else 0.0,
                       "2plus1d" if any(n.endswith("__feature__temporal") for n in by_name)
                       else "3d",
                       "2plus3d" if by_name["block0_layer0__bneck__se__pool"].with_frames
                       else "3d", "block0_layer0__bneck__se__pos_encoding" in by_name)
    except (KeyError, StopIteration):
        raise ValueError(f"{model.name!r} is not a MoViNet built by kvid") from None
    graph.made = by_name
    return graph


def is_stream_model(model: keras.Model) -> bool:
    """Whether ``model`` is a causal MoViNet (a step model can run it frame by frame)."""
    return any(isinstance(layer, StreamBuffer) for layer in model.layers)


def _graph_for(model: keras.Model) -> _Graph:
    graph = getattr(model, "_kvid_graph", None) or _graph_of(model)
    if not graph.causal:
        raise ValueError(f"build_movinet_step needs a causal MoViNet (a *_stream model); "
                         f"{model.name!r} is not causal")
    return graph


def state_shapes(model: keras.Model, frame_size: tuple[int, int]) -> dict[str, tuple]:
    """Shape (without batch) and dtype of each state of a causal MoViNet's step model on
    frames of ``frame_size`` (H, W): stream buffers, running sums, frame counts, read off
    the network itself (a symbolic pass from a video's start), so they cannot disagree."""
    # one frame (a static length): the buffers' time axis comes out static too
    _, states = _graph_for(model).run(keras.Input((1, *frame_size, 3)), None)
    return {k: (tuple(v.shape[1:]), v.dtype) for k, v in states.items()}


def build_movinet_step(model: keras.Model, frame_size: tuple[int, int],
                       frames: int | None = None) -> keras.Model:
    """The step model of a causal MoViNet built by :func:`build_movinet`, sharing its
    layers (so its weights): inputs ``{"rgb": [B, frames, H, W, 3], <state>: ...}``,
    outputs ``{"logits": ..., <state>: ...}`` with the states of :func:`state_shapes`.
    Start a video with zeros (:func:`initial_states`)."""
    graph = _graph_for(model)
    h, w = frame_size
    states = {k: keras.Input(shape, dtype=dtype, name=k)
              for k, (shape, dtype) in state_shapes(model, (h, w)).items()}
    frames_in = keras.Input((frames, h, w, 3), name="rgb")
    logits, new = graph.run(frames_in, states)
    outputs = {"logits": logits, **{k: new[k] for k in states}}
    return keras.Model({"rgb": frames_in, **states}, outputs, name=f"{model.name}_step")


def initial_states(step: keras.Model, batch: int = 1) -> dict:
    """Zero states for the start of ``batch`` videos."""
    return {t.name: ops.zeros((batch, *t.shape[1:]), t.dtype) for t in step.inputs
            if t.name != "rgb"}


# --------------------------------------------------------------------------- conversion


def _kvid_key(ref_name: str) -> tuple[str, str]:
    """A Model Garden variable name -> (kvid layer name, weight name)."""
    path = ref_name.split(":")[0].split("/")
    # a second model in one tf.keras session gets "head_1", "block0_layer0_1", ...
    path[0] = re.sub(r"^(stem|head|classifier_head|block\d+_layer\d+)_\d+$", r"\1", path[0])
    weight = path[-1]
    if weight == "scale":  # the block's rezero scale
        return f"{path[0]}__rezero", "scale"
    if weight == "depthwise_kernel":
        weight = "kernel"
    body = path[:-1]
    # conv_type 2plus1d: <role>/conv2d[_temporal]/<auto-numbered op, or bn[_temporal]>
    for i, part in enumerate(body[:-1]):
        if part in ("conv2d", "conv2d_temporal"):
            temporal, is_bn = part == "conv2d_temporal", body[i + 1].startswith("bn")
            return "__".join([*body[:i], ("temporal_bn" if temporal else "bn") if is_bn
                              else ("temporal" if temporal else "conv3d")]), weight
    return "__".join(body), weight


def load_model_garden_weights(model: keras.Model, reference) -> int:
    """Copies a Model Garden ``MovinetClassifier``'s weights (built with the same
    ``model_id``, ``causal``, ``conv_type``, ``se_type``) into ``model`` by name; returns
    how many were copied. Every kvid weight must be set and every shape must fit (2D
    kernels gain their singleton time axis), else ValueError."""
    import numpy as np

    by_layer = {layer.name: layer for layer in model.layers}
    missing = {(layer.name, w.name) for layer in model.layers for w in layer.weights}
    # Model Garden's positional encodings name their scale "scale" with no scope: they are
    # matched in block order
    encodings = iter([layer.name for layer in model.layers
                      if isinstance(layer, PositionalEncoding)])
    copied = 0
    for var in reference.weights:
        if var.name.split(":")[0] == "scale":
            layer_name, weight = next(encodings, "(none)"), "scale"
        else:
            layer_name, weight = _kvid_key(var.name)
        layer = by_layer.get(layer_name)
        if layer is None:
            raise ValueError(f"no kvid layer {layer_name!r} for {var.name}")
        target = next((w for w in layer.weights if w.name == weight), None)
        value = np.asarray(var.numpy())
        if target is None or tuple(target.shape) != value.shape:
            # a grouped (.., 1, C) or 2D (kh, kw, ..) kernel: the same values in kvid's
            # (.., C, 1) / (1, kh, kw, ..) layout, only singleton axes differ
            if target is not None and [d for d in value.shape if d != 1] == \
                    [d for d in target.shape if d != 1]:
                value = value.reshape(tuple(target.shape))
            else:
                raise ValueError(f"{var.name} {value.shape} does not fit {layer_name}/"
                                 f"{weight} {None if target is None else tuple(target.shape)}")
        target.assign(value)
        missing.discard((layer_name, weight))
        copied += 1
    if missing:
        raise ValueError(f"{len(missing)} kvid weights have no Model Garden variable, e.g. "
                         f"{sorted(missing)[:3]}")
    return copied


def _zoo_entry(model_id: str, causal: bool):
    frames, size = INPUTS[model_id]
    name = f"movinet_{model_id}" + ("_stream" if causal else "")
    form = {**STREAM, "positional_encoding": model_id in ("a3", "a4", "a5")} if causal else {}
    return make_info(
        functools.partial(build_movinet, model_id=model_id, name=name, **form), "rgb",
        f"MoViNet-{model_id.upper()}{'-Stream' if causal else ''}: mobile 3D bottlenecks "
        + ("with causal convs and cumulative pooling, runs frame by frame."
           if causal else "found by architecture search."),
        "Kondratyuk et al., MoViNets: Mobile Video Networks for Efficient Video Recognition, "
        "CVPR 2021", (frames, size, size, 3), normalization="unit", reference_num_classes=600,
        tiny_input_shape=(4, 32, 32, 3),
        tiny_kwargs={"model_id": "a0", "dropout": 0.0, "bn_momentum": 0.9})


ZOO = {f"movinet_{m}" + ("_stream" if c else ""): _zoo_entry(m, c)
       for m in SPECS for c in (False, True)}
