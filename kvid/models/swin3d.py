"""Video Swin Transformer (Liu et al. 2022), equal to torchvision's ``swin3d_t/s/b``.

Liu et al., "Video Swin Transformer", CVPR 2022 (https://arxiv.org/abs/2106.13230);
the layout and every padding/shrinking rule follow torchvision's
``torchvision.models.video.swin_transformer`` so that its Kinetics-400 checkpoints convert
exactly (:mod:`kvid.pretrained.torchvision_swin3d`).

```
[B,T,H,W,3] -> pad to a multiple of the patch -> 2x4x4 patch conv -> LN       [B,T/2,H/4,W/4,C]
  -> 4 stages of Swin blocks (window attention, every second block shifted by half a
     window), 2x2 patch merging (C -> 2C) between stages
  -> LN -> global average pool -> logits
```

A block is ``x + attn(LN(x))`` then ``x + MLP(LN(x))``; the attention pads the feature map
to a multiple of the window (8x7x7, shrunk to the feature size where that is smaller, and
then not shifted along that axis), rolls it for shifted blocks, attends within each window
with a learned relative position bias and a mask that keeps regions the roll brought
together apart. The window geometry depends on the feature size, so T, H, W must be static.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
from keras import layers, ops

from kvid.models.info import ModelInfo, make_info
from kvid.models.layers import (
    StochasticDepth,
    check_input_shape,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    check_rate,
    pool_and_classify,
    video_input,
)

# torchvision swin3d_t / swin3d_s / swin3d_b (patch 2x4x4, window 8x7x7 for all three).
VARIANTS = {
    "swin3d_t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24)},
    "swin3d_s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24)},
    "swin3d_b": {"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32)},
}
LN_EPSILON = 1e-5  # torchvision's norm_layer: partial(nn.LayerNorm, eps=1e-5)


# --------------------------------------------------------------------------- geometry


def window_and_shift(size, window, shift) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """torchvision's rule: an axis no longer than the window gets a window of its own size
    and no shift."""
    window, shift = list(window), list(shift)
    for i in range(3):
        if size[i] <= window[i]:
            window[i], shift[i] = size[i], 0
    return tuple(window), tuple(shift)


def relative_position_index(window) -> np.ndarray:
    """[N, N] index into the ``(2Wd-1)(2Wh-1)(2Ww-1)`` bias table for an ``N``-token window."""
    coords = np.stack(np.meshgrid(*(np.arange(w) for w in window), indexing="ij")).reshape(3, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (np.array(window) - 1)
    return (rel[..., 0] * (2 * window[1] - 1) * (2 * window[2] - 1)
            + rel[..., 1] * (2 * window[2] - 1) + rel[..., 2]).astype(np.int64)


def shifted_window_regions(padded, window, shift) -> np.ndarray:
    """[num_windows, N] region id of each token after the cyclic shift; tokens of different
    regions must not attend to each other. The slices are torchvision's, including their
    behaviour on an unshifted axis (``-0`` makes the last slice the whole axis)."""
    ids = np.zeros(padded, np.int32)
    slices = [((0, -window[i]), (-window[i], -shift[i]), (-shift[i], None)) for i in range(3)]
    count = 0
    for d in slices[0]:
        for h in slices[1]:
            for w in slices[2]:
                ids[d[0]:d[1], h[0]:h[1], w[0]:w[1]] = count
                count += 1
    n = [p // w for p, w in zip(padded, window)]
    ids = ids.reshape(n[0], window[0], n[1], window[1], n[2], window[2])
    return ids.transpose(0, 2, 4, 1, 3, 5).reshape(n[0] * n[1] * n[2], -1)


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="kvid")
class SwinWindowAttention3D(layers.Layer):
    """(Shifted) window multi-head self-attention over [B, T, H, W, C], torchvision's
    ``ShiftedWindowAttention3d``.

    One layer owns qkv, projection and the relative position bias table, because the qkv
    projection must see the zero padding (padded keys carry the qkv bias and take part in
    unshifted attention as in torchvision). Where the window shrinks, the bias index is the
    top-left ``N x N`` block of the full window's index, as torchvision slices it.
    """

    def __init__(self, num_heads: int, window_size=(8, 7, 7), shift_size=(0, 0, 0), **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.window_size = tuple(int(w) for w in window_size)
        self.shift_size = tuple(int(s) for s in shift_size)
        self.full_index = relative_position_index(self.window_size)

    def build(self, input_shape):
        size, dim = tuple(input_shape[1:4]), input_shape[-1]
        if any(d is None for d in size):
            raise ValueError(f"{self.name}: Swin3D needs static T, H, W (its windows depend on "
                             f"them). Received: input_shape={input_shape}")
        if dim % self.num_heads:
            raise ValueError(f"{self.name}: channels {dim} not divisible by {self.num_heads} heads")
        self.window, self.shift = window_and_shift(size, self.window_size, self.shift_size)
        self.padded = tuple(-(-s // w) * w for s, w in zip(size, self.window))
        tokens = int(np.prod(self.window))
        self.bias_index = self.full_index[:tokens, :tokens].reshape(-1).astype(np.int32)
        self.regions = (shifted_window_regions(self.padded, self.window, self.shift)
                        if sum(self.shift) else None)
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(dim, 3 * dim), initializer=init)
        self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * dim,), initializer="zeros")
        self.proj_kernel = self.add_weight(name="proj_kernel", shape=(dim, dim), initializer=init)
        self.proj_bias = self.add_weight(name="proj_bias", shape=(dim,), initializer="zeros")
        table = int(np.prod([2 * w - 1 for w in self.window_size]))
        self.relative_position_bias_table = self.add_weight(
            name="relative_position_bias_table", shape=(table, self.num_heads), initializer=init)

    def call(self, x):
        t, h, w, c = x.shape[1:]
        (wd, wh, ww), shift, (tp, hp, wp) = self.window, self.shift, self.padded
        n, heads = wd * wh * ww, self.num_heads
        nd, nh, nw = tp // wd, hp // wh, wp // ww
        x = ops.pad(x, [(0, 0), (0, tp - t), (0, hp - h), (0, wp - w), (0, 0)])
        if sum(shift):
            x = ops.roll(x, shift=[-s for s in shift], axis=[1, 2, 3])
        x = ops.reshape(x, (-1, nd, wd, nh, wh, nw, ww, c))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7)), (-1, n, c))

        qkv = ops.matmul(x, ops.cast(self.qkv_kernel, x.dtype)) + ops.cast(self.qkv_bias, x.dtype)
        qkv = ops.transpose(ops.reshape(qkv, (-1, n, 3, heads, c // heads)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0] * ((c // heads) ** -0.5), qkv[1], qkv[2]
        attn = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.take(ops.cast(self.relative_position_bias_table, x.dtype), self.bias_index,
                        axis=0)
        attn = attn + ops.transpose(ops.reshape(bias, (n, n, heads)), (2, 0, 1))[None]
        if self.regions is not None:
            regions = ops.convert_to_tensor(self.regions)
            mask = ops.where(regions[:, :, None] == regions[:, None, :], 0.0, -100.0)
            attn = ops.reshape(attn, (-1, nd * nh * nw, heads, n, n))
            attn = ops.reshape(attn + ops.cast(mask, x.dtype)[None, :, None], (-1, heads, n, n))
        attn = ops.softmax(attn, axis=-1)
        x = ops.reshape(ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)), (-1, n, c))
        x = ops.matmul(x, ops.cast(self.proj_kernel, x.dtype)) + ops.cast(self.proj_bias, x.dtype)

        x = ops.reshape(x, (-1, nd, nh, nw, wd, wh, ww, c))
        x = ops.reshape(ops.transpose(x, (0, 1, 4, 2, 5, 3, 6, 7)), (-1, tp, hp, wp, c))
        if sum(shift):
            x = ops.roll(x, shift=list(shift), axis=[1, 2, 3])
        return x[:, :t, :h, :w, :]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads,
                "window_size": self.window_size, "shift_size": self.shift_size}


@keras.saving.register_keras_serializable(package="kvid")
class SwinPatchMerging(layers.Layer):
    """[B, T, H, W, C] -> [B, T, ceil(H/2), ceil(W/2), 4C]: each 2x2 patch's tokens side by
    side in torchvision's order (h, w) = (0,0), (1,0), (0,1), (1,1), zero-padding odd H, W."""

    def call(self, x):
        t, h, w, c = x.shape[1:]
        x = ops.pad(x, [(0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = ops.reshape(x, (-1, t, h2, 2, w2, 2, c))
        return ops.reshape(ops.transpose(x, (0, 1, 2, 4, 5, 3, 6)), (-1, t, h2, w2, 4 * c))

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        return (b, t, None if h is None else (h + 1) // 2, None if w is None else (w + 1) // 2,
                4 * c)


# --------------------------------------------------------------------------- model


def _layer_norm(name: str):
    return layers.LayerNormalization(epsilon=LN_EPSILON, name=name)


def swin_block(x, *, heads: int, window, shift, mlp_ratio: float, drop: float, name: str):
    """Pre-LN Swin block: window attention, then a GELU MLP, each a residual branch."""
    dim = x.shape[-1]
    y = _layer_norm(f"{name}_norm1")(x)
    y = SwinWindowAttention3D(heads, window, shift, name=f"{name}_attn")(y)
    if drop:
        y = StochasticDepth(drop, name=f"{name}_drop_attn")(y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = _layer_norm(f"{name}_norm2")(x)
    y = layers.Dense(int(dim * mlp_ratio), activation="gelu", name=f"{name}_mlp_fc1")(y)
    y = layers.Dense(dim, name=f"{name}_mlp_fc2")(y)
    if drop:
        y = StochasticDepth(drop, name=f"{name}_drop_mlp")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def build_swin3d(input_shape=(32, 224, 224, 3), num_classes: int = 400, *, embed_dim: int = 96,
                 depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), patch_size=(2, 4, 4),
                 window_size=(8, 7, 7), mlp_ratio: float = 4.0, stochastic_depth: float = 0.1,
                 dropout: float = 0.0, name: str = "swin3d") -> keras.Model:
    """Video Swin Transformer (Liu et al. 2022); :data:`VARIANTS` holds T / S / B.

    Args:
        input_shape: ``(T, H, W, 3)``, any static size (padded to the patch, windows shrink
            or pad to the features); torchvision's recipe is 32x224x224.
        num_classes: 400 for Kinetics.
        embed_dim: channels of the first stage (doubled by each patch merging).
        depths, num_heads: blocks and attention heads of the four stages.
        patch_size: ``(t, h, w)`` of the patch embedding.
        window_size: nominal attention window ``(t, h, w)``; shifted blocks move by half.
        mlp_ratio: MLP hidden width / channels.
        stochastic_depth: final rate of the linearly increasing per-block drop rate while
            training (torchvision's 0.1); no effect at inference.
        dropout: before the logits layer (torchvision's recipe has none).
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(embed_dim, "embed_dim")
    depths = check_int_tuple(depths, "depths")
    num_heads = check_int_tuple(num_heads, "num_heads", length=len(depths))
    patch_size = check_int_tuple(patch_size, "patch_size", length=3)
    window_size = check_int_tuple(window_size, "window_size", length=3)
    check_positive_float(mlp_ratio, "mlp_ratio")
    check_rate(stochastic_depth, "stochastic_depth")
    check_rate(dropout)
    for i, heads in enumerate(num_heads):
        if (embed_dim * 2 ** i) % heads:
            raise ValueError(f"stage {i + 1} has {embed_dim * 2 ** i} channels, not divisible by "
                             f"its {heads} heads. Received: embed_dim={embed_dim}, "
                             f"num_heads={num_heads}")

    inputs = video_input(input_shape, "rgb")
    pad = [(-s) % p for s, p in zip(input_shape[:3], patch_size)]
    x = inputs
    if any(pad):
        x = layers.ZeroPadding3D(tuple((0, p) for p in pad), name="patch_embed_pad")(x)
    x = layers.Conv3D(embed_dim, patch_size, strides=patch_size, name="patch_embed_proj")(x)
    x = _layer_norm("patch_embed_norm")(x)

    total, block_id = sum(depths), 0
    for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
        for block in range(depth):
            shift = (0, 0, 0) if block % 2 == 0 else tuple(w // 2 for w in window_size)
            drop = stochastic_depth * block_id / max(total - 1, 1)
            x = swin_block(x, heads=heads, window=window_size, shift=shift, mlp_ratio=mlp_ratio,
                           drop=drop, name=f"stage{stage + 1}_block{block}")
            block_id += 1
        if stage < len(depths) - 1:
            dim = x.shape[-1]
            x = SwinPatchMerging(name=f"merge{stage + 1}")(x)
            x = _layer_norm(f"merge{stage + 1}_norm")(x)
            x = layers.Dense(2 * dim, use_bias=False, name=f"merge{stage + 1}_reduction")(x)
    x = _layer_norm("norm")(x)
    logits = pool_and_classify(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _variant(name: str, description: str, params: int) -> ModelInfo:
    return make_info(
        functools.partial(build_swin3d, **VARIANTS[name], name=name), "rgb", description,
        "Liu et al., Video Swin Transformer, CVPR 2022", (32, 224, 224, 3),
        normalization="imagenet", fps=15.0, published_params=params,
        params_source=f"torchvision {name} KINETICS400_V1 weights meta num_params",
        tiny_kwargs={"embed_dim": 8, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4),
                     "stochastic_depth": 0.0})


# torchvision's recipe (weights meta): 32 frames at 15 fps, resized to 256 and center-cropped
# to 224, ImageNet mean/std.
ZOO = {
    "swin3d_t": _variant("swin3d_t", "torchvision Video Swin-T (Kinetics-400 importable).",
                         28_158_070),
    "swin3d_s": _variant("swin3d_s", "torchvision Video Swin-S: 18 blocks in stage 3.",
                         49_816_678),
    "swin3d_b": _variant("swin3d_b", "torchvision Video Swin-B: Swin-S depths, 128 channels.",
                         88_048_984),
}
