"""Building blocks shared by the model zoo: argument checks, conv-BN-act blocks, small layers.

Every custom layer here is registered under the ``kvid`` package so that a ``.keras``
file written by any zoo model loads back with ``keras.saving.load_model`` once
``kvid.models`` is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers, ops

# --------------------------------------------------------------------------- checks


def check_input_shape(input_shape, *, rank: int = 4, channels: int | None = None,
                      allow_none: bool = False, name: str = "input_shape") -> tuple:
    """Returns ``input_shape`` as a tuple after checking its rank and entries.

    ``rank`` counts the dimensions without the batch, e.g. 4 for ``(T, H, W, C)``.
    ``allow_none`` lets fully convolutional models take variable T, H, W (multigrid training);
    the channels must always be known.
    """
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise ValueError(f"`{name}` must be a tuple of {rank} ints. Received: {name}={input_shape!r}")
    shape = tuple(input_shape)

    def ok(d, last):
        if d is None:
            return allow_none and not last
        return isinstance(d, int) and not isinstance(d, bool) and d > 0

    if len(shape) != rank or not all(ok(d, i == rank - 1) for i, d in enumerate(shape)):
        what = "positive ints (None allowed before the channels)" if allow_none else "positive ints"
        raise ValueError(f"`{name}` must be a tuple of {rank} {what}. Received: {name}={input_shape!r}")
    if channels is not None and shape[-1] != channels:
        raise ValueError(
            f"`{name}` must have {channels} channels last. Received: {name}={input_shape!r}"
        )
    return shape


def check_positive_int(value, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    return value


def check_rate(value, name: str = "dropout") -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def check_positive_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a number > 0. Received: {name}={value!r}")
    return float(value)


def scaled(filters: int, multiplier: float) -> int:
    """``filters * multiplier`` rounded, at least 1 (width multipliers for small models)."""
    return max(1, int(round(filters * multiplier)))


MODALITY_CHANNELS = {"rgb": 3, "flow": 2, "rgbdiff": 3}  # rgbdiff: TSN's RGB difference


def check_modality_input(input_shape, modality: str, *, allow_none: bool = False) -> tuple:
    """Checks ``modality`` ("rgb", "flow" or "rgbdiff") and that ``input_shape`` has its
    channels."""
    check_choice(modality, MODALITY_CHANNELS, "modality")
    return check_input_shape(input_shape, channels=MODALITY_CHANNELS[modality],
                             allow_none=allow_none)


def check_choice(value, choices, name: str):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}. Received: {name}={value!r}")
    return value


def check_int_tuple(value, name: str, *, length: int | None = None) -> tuple[int, ...]:
    if isinstance(value, int):
        value = (value,)
    if not isinstance(value, Sequence) or not value or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(f"`{name}` must be a non-empty tuple of positive ints. Received: {name}={value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"`{name}` must have {length} entries. Received: {name}={value!r}")
    return tuple(value)


# --------------------------------------------------------------------------- blocks


def _per_dim(value, dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(value)


def explicit_padding(x, padding, kernel_size, strides, *, name: str, dims: int = 3,
                     dilation_rate=1, value: float = 0.0) -> tuple:
    """Pads ``x`` symmetrically by ``padding`` per spatial dim (PyTorch's ``padding=``).

    Returns ``(x, keras_padding)`` for the conv or pool that follows: ``"same"`` where that
    is the same thing (stride 1, odd kernel, pad = k // 2: one op, no copy), else the
    padded tensor and ``"valid"``. TensorFlow's ``"same"`` at stride 2 pads one more at the
    end than at the start, which shifts every window and changes a converted network's
    outputs (R(2+1)D-18: logits off by up to 6).
    """
    pads = _per_dim(padding, dims)
    kernel, stride, dilation = (_per_dim(v, dims) for v in (kernel_size, strides, dilation_rate))
    if all(s == 1 and p == d * (k - 1) // 2 and (d * (k - 1)) % 2 == 0
           for p, k, s, d in zip(pads, kernel, stride, dilation)):
        return x, "same"
    if any(pads):
        x = Pad(pads, value=value, name=f"{name}_pad")(x)
    return x, "valid"


def conv_bn_act(x, filters: int, kernel_size, *, strides=1, name: str, dims: int = 3,
                activation: str | None = "relu", padding="same", groups: int = 1,
                use_bn: bool = True, dilation_rate=1, use_bias: bool | None = None,
                bn_epsilon: float = 1e-5):
    """Conv (1D, 2D or 3D, no bias when followed by BN) -> BatchNorm -> activation.

    ``padding`` is ``"same"``, ``"valid"``, or ints per spatial dim padded on both sides as
    PyTorch does (see :func:`explicit_padding`), which converted checkpoints need.
    Layers are named ``{name}_conv``, ``{name}_bn`` and ``{name}_{activation}``.
    """
    if not isinstance(padding, str):
        x, padding = explicit_padding(x, padding, kernel_size, strides, name=name, dims=dims,
                                      dilation_rate=dilation_rate)
    conv = {1: layers.Conv1D, 2: layers.Conv2D, 3: layers.Conv3D}[dims]
    x = conv(filters, kernel_size, strides=strides, padding=padding,
             use_bias=not use_bn if use_bias is None else use_bias,
             groups=groups, dilation_rate=dilation_rate, name=f"{name}_conv")(x)
    if use_bn:
        x = layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def max_pool(x, pool_size, *, strides, padding, name: str, dims: int = 3):
    """Max pooling with PyTorch's symmetric ``padding`` (padded with -inf, as PyTorch does)."""
    x, keras_padding = explicit_padding(x, padding, pool_size, strides, name=name, dims=dims,
                                        value=float("-inf"))
    pool = {2: layers.MaxPooling2D, 3: layers.MaxPooling3D}[dims]
    return pool(pool_size, strides=strides, padding=keras_padding, name=name)(x)


def classifier_head(x, num_classes: int, *, dropout: float = 0.0, name: str = "logits"):
    """Dropout then the float32 logits layer every zoo model ends with (mixed precision safe)."""
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, dtype="float32", name=name)(x)


def fc_head(x, num_classes: int, *, fc_units=(), dropout: float = 0.0, first_index: int = 6):
    """ReLU fully connected layers ``fc6, fc7, ...`` (each followed by dropout), then logits."""
    for i, units in enumerate(fc_units):
        x = layers.Dense(units, activation="relu", name=f"fc{first_index + i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"fc{first_index + i}_dropout")(x)
    return classifier_head(x, num_classes)


def pool_and_classify(x, num_classes: int, *, dropout: float = 0.0, prefix: str = "head",
                      name: str = "logits"):
    """Global average pool of a 5D [B, T, H, W, C] feature map followed by a logits layer."""
    x = layers.GlobalAveragePooling3D(name=f"{prefix}_pool")(x)
    return classifier_head(x, num_classes, dropout=dropout, name=name)


def video_input(input_shape, modality: str = "rgb"):
    """The named float32 Input layer ("rgb" or "flow") of a single-input zoo model."""
    return keras.Input(shape=input_shape, dtype="float32", name=modality)


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="kvid")
class Pad(layers.Layer):
    """Pads the spatial dims of [B, *spatial, C] by ``padding[i]`` on both sides with ``value``.

    ``ZeroPadding3D`` cannot pad with -inf, which max pooling over signed inputs needs.
    """

    def __init__(self, padding: Sequence[int], value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(int(p) for p in padding)
        self.value = float(value)

    def call(self, x):
        return ops.pad(x, [(0, 0), *((p, p) for p in self.padding), (0, 0)],
                       constant_values=self.value)

    def compute_output_shape(self, input_shape):
        spatial = [None if d is None else d + 2 * p
                   for d, p in zip(input_shape[1:-1], self.padding)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="kvid")
class FoldTime(layers.Layer):
    """[B, T, ...] -> [B*T, ...] so a per-frame model runs once over all frames.

    Faster to build and run than ``TimeDistributed``, which in Keras 3 unrolls a Python
    loop over the time axis.
    """

    def call(self, x):
        return ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        b, t = input_shape[0], input_shape[1]
        return ((b * t if b is not None and t is not None else None),) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="kvid")
class UnfoldTime(layers.Layer):
    """[B*T, ...] -> [B, T, ...], the inverse of :class:`FoldTime`."""

    def __init__(self, timesteps: int, **kwargs):
        super().__init__(**kwargs)
        self.timesteps = int(timesteps)

    def call(self, x):
        return ops.reshape(x, (-1, self.timesteps) + tuple(x.shape[1:]))

    def compute_output_shape(self, input_shape):
        return (None, self.timesteps) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "timesteps": self.timesteps}


@keras.saving.register_keras_serializable(package="kvid")
class ChannelAffine(layers.Layer):
    """y = x[..., perm] * scale + offset per channel: converts between input normalizations."""

    def __init__(self, scale: Sequence[float], offset: Sequence[float],
                 reverse_channels: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in scale]
        self.offset = [float(o) for o in offset]
        self.reverse_channels = bool(reverse_channels)

    def call(self, x):
        if self.reverse_channels:
            x = ops.flip(x, axis=-1)
        scale = ops.convert_to_tensor(self.scale, dtype=x.dtype)
        offset = ops.convert_to_tensor(self.offset, dtype=x.dtype)
        return x * scale + offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset,
                "reverse_channels": self.reverse_channels}


@keras.saving.register_keras_serializable(package="kvid")
class SliceAxis(layers.Layer):
    """x[..., start:stop] along ``axis`` (a serializable replacement for a slicing Lambda)."""

    def __init__(self, start: int, stop: int | None = None, axis: int = -1, step: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop, self.axis, self.step = start, stop, axis, step

    def call(self, x):
        index = [slice(None)] * len(x.shape)
        index[self.axis] = slice(self.start, self.stop, self.step)
        return x[tuple(index)]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop,
                "axis": self.axis, "step": self.step}


@keras.saving.register_keras_serializable(package="kvid")
class MeanOverAxis(layers.Layer):
    """Mean over one axis (e.g. the time axis of per-step logits), optionally keeping it."""

    def __init__(self, axis: int = 1, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.keepdims = axis, keepdims

    def call(self, x):
        return ops.mean(x, axis=self.axis, keepdims=self.keepdims)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "keepdims": self.keepdims}


@keras.saving.register_keras_serializable(package="kvid")
class StackFrames(layers.Layer):
    """Stacks L consecutive frames into channels: [B, G*L, H, W, c] -> [B, G, H, W, L*c].

    The temporal stream of Simonyan & Zisserman (2014) sees L x/y flow fields as one
    2L-channel image; G is the number of stacks (1 for two-stream, K segments for TSN);
    MotionNet stacks RGB frames the same way.
    Channels are ordered frame-major: (x_1, y_1, x_2, y_2, ...).
    """

    def __init__(self, groups: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, x):
        _, t, h, w, c = x.shape
        length = t // self.groups
        x = ops.reshape(x, (-1, self.groups, length, h, w, c))
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5))
        return ops.reshape(x, (-1, self.groups, h, w, length * c))

    def compute_output_shape(self, input_shape):
        _, t, h, w, c = input_shape
        return (input_shape[0], self.groups, h, w, (t // self.groups) * c)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def same_padding(size, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding that reproduces TensorFlow's "same" convolution padding."""
    if size is None:
        raise ValueError("Explicit 'same' padding needs a static size. Received: size=None")
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@keras.saving.register_keras_serializable(package="kvid")
class SamePad3D(layers.Layer):
    """Explicit TF-"same" padding of [B, T, H, W, C] before a "valid" Conv3D.

    Space is zero padded exactly as a "same" conv would; time is padded with ``time_mode``
    "symmetric" (mirrored frames) instead of zeros, so that a video of one repeated frame
    stays constant at the clip boundaries: the inflated I3D then computes exactly what its
    2D source net computes on that frame (Carreira & Zisserman's "boring video" fixed point).
    """

    def __init__(self, kernel_size, strides, time_mode: str = "symmetric", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.time_mode = check_choice(time_mode, ("symmetric", "reflect", "constant"), "time_mode")

    def call(self, x):
        pads = [same_padding(x.shape[i + 1], k, s)
                for i, (k, s) in enumerate(zip(self.kernel_size, self.strides))]
        x = ops.pad(x, [(0, 0), pads[0], (0, 0), (0, 0), (0, 0)], mode=self.time_mode)
        return ops.pad(x, [(0, 0), (0, 0), pads[1], pads[2], (0, 0)])

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "time_mode": self.time_mode}


@keras.saving.register_keras_serializable(package="kvid")
class DepthwiseConv3D(layers.Layer):
    """Depthwise 3D convolution (no bias) as a sum of depthwise 2D convolutions.

    ``Conv3D(groups=channels)`` computes the same thing but TensorFlow runs grouped 3D
    convolutions on the CPU hundreds of times slower (X3D-M: ~90 s per clip instead of
    ~1 s) and its profiler does not count their FLOPs. Here each temporal tap is one
    strided ``depthwise_conv`` over the frames it reads (time folded into the batch).
    ``padding`` is ``"same"`` (TensorFlow's: asymmetric in space at stride 2; time stride 1)
    or ``(pt, ph, pw)`` zeros on both sides as PyTorch pads, which converted checkpoints
    need (any stride: ir-CSN's convs stride 2 in time), or ``"buffered"``: TensorFlow's
    "same" in space and none in time, the caller having put the kt - 1 frames before the
    clip in front of it (a causal conv's stream buffer, MoViNet). Kernel:
    ``(kt, kh, kw, channels, 1)``.
    """

    def __init__(self, kernel_size, strides=1, padding="same",
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _triple(kernel_size)
        self.strides = _triple(strides)
        self.padding = padding if isinstance(padding, str) else _triple(padding)
        if self.padding not in ("same", "buffered") and (
                isinstance(self.padding, str) or len(self.padding) != 3 or min(self.padding) < 0):
            raise ValueError(f"DepthwiseConv3D padding must be 'same', 'buffered' or 3 ints "
                             f">= 0. Received: padding={padding!r}")
        if self.padding == "same" and (self.strides[0] != 1 or self.kernel_size[0] % 2 == 0):
            raise ValueError(f"DepthwiseConv3D with 'same' padding needs time stride 1 and an "
                             f"odd temporal kernel. Received: kernel_size={kernel_size}, "
                             f"strides={strides}")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, input_shape[-1], 1),
                                      initializer=self.kernel_initializer)

    def _pads(self):
        """Explicit (time, height, width) padding and the 2D convs' own padding mode."""
        if self.padding == "same":
            return (self.kernel_size[0] // 2, 0, 0), "same"
        if self.padding == "buffered":
            return (0, 0, 0), "same"
        return self.padding, "valid"

    def call(self, x):
        kt, st = self.kernel_size[0], self.strides[0]
        pads, spatial_padding = self._pads()
        if any(pads):
            x = ops.pad(x, [(0, 0), *((p, p) for p in pads), (0, 0)])
        shape = ops.shape(x)
        batch, frames, channels = shape[0], (shape[1] - kt) // st + 1, x.shape[-1]
        out = None
        for tap in range(kt):
            window = x[:, tap::st][:, :frames]  # the frames tap `tap` of each output reads
            folded = ops.reshape(window, (-1, shape[2], shape[3], channels))
            y = ops.depthwise_conv(folded, self.kernel[tap], strides=self.strides[1:],
                                   padding=spatial_padding)
            out = y if out is None else out + y
        out_shape = ops.shape(out)
        return ops.reshape(out, (batch, frames, out_shape[1], out_shape[2], channels))

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        pads, spatial_padding = self._pads()
        t = None if t is None else (t + 2 * pads[0] - self.kernel_size[0]) // self.strides[0] + 1

        def size(n, i):
            if n is None:
                return None
            if spatial_padding == "same":
                return -(-n // self.strides[i])
            return (n + 2 * pads[i] - self.kernel_size[i]) // self.strides[i] + 1

        return (b, t, size(h, 1), size(w, 2), c)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


def _triple(value) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)


@keras.saving.register_keras_serializable(package="kvid")
class StochasticDepth(layers.Layer):
    """Drops a residual branch per sample with probability ``rate`` while training and
    rescales the kept ones by 1 / (1 - rate) (torchvision's ``StochasticDepth(mode="row")``);
    the identity at inference."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.cast(keras.random.uniform(shape, seed=self.seed_generator) < keep, x.dtype)
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
