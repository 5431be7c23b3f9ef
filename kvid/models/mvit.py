"""Multiscale Vision Transformers (MViT v1, MViTv2): pooling attention over a shrinking
space-time token grid while the channels grow.

Fan et al., "Multiscale Vision Transformers", ICCV 2021 (https://arxiv.org/abs/2104.11227);
Li et al., "MViTv2: Improved Multiscale Vision Transformers for Classification and
Detection", CVPR 2022 (https://arxiv.org/abs/2112.01526). Layout, padding and arithmetic
exactly as torchvision's ``mvit_v1_b`` and ``mvit_v2_s`` (``torchvision.models.video.mvit``)
so that their Kinetics checkpoints convert (:mod:`kvid.pretrained.torchvision_mvit`).

```
[B,16,224,224,3] -> 3x7x7 conv /(2,4,4) pad (1,3,3) -> [B, 8*56*56, 96] tokens + class token
  (v1: + absolute space and time positions)
  -> 16 blocks (torchvision's block lists, :data:`VARIANTS`): pre-LN pooling attention whose
     Q, K, V are each pooled by a depthwise 3x3x3 conv + LN (K/V by 8, 4, 2 per stage, Q by 2
     where a stage starts, its skip path max-pooled to match); v2 adds decomposed relative
     positions (t, h, w) to the attention logits and Q to its output (residual pooling);
     channels double at 3 stage changes (v2 in the attention's projection, v1 in the MLP's)
  -> LN of the class token -> dropout -> logits
```

Both versions' position tables are sized by the input clip (as torchvision builds them), so
a model is built for one ``(T, H, W)``; a checkpoint only fits a model of its own size.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from kvid.models.info import make_info
from kvid.models.layers import (
    SliceAxis,
    StochasticDepth,
    check_input_shape,
    check_int_tuple,
    check_positive_float,
    check_positive_int,
    check_rate,
    classifier_head,
    explicit_padding,
    video_input,
)

BLOCK_FIELDS = ("num_heads", "input_channels", "output_channels", "kernel_q", "kernel_kv",
                "stride_q", "stride_kv")
_K3 = [3, 3, 3]
_S2 = [1, 2, 2]

# torchvision's configurations, column by column (one entry per block, empty = no pooling).
MVIT_V2_S_BLOCKS = {
    "num_heads": [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8],
    "input_channels": [96, 96, 192, 192] + [384] * 11 + [768],
    "output_channels": [96, 192, 192] + [384] * 11 + [768, 768],
    "kernel_q": [_K3] * 16,
    "kernel_kv": [_K3] * 16,
    "stride_q": [[1, 1, 1], _S2, [1, 1, 1], _S2] + [[1, 1, 1]] * 10 + [_S2, [1, 1, 1]],
    "stride_kv": [[1, 8, 8], [1, 4, 4], [1, 4, 4]] + [[1, 2, 2]] * 11 + [[1, 1, 1]] * 2,
}
MVIT_V1_B_BLOCKS = {
    "num_heads": [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8],
    "input_channels": [96, 192, 192] + [384] * 11 + [768, 768],
    "output_channels": [192, 192] + [384] * 11 + [768] * 3,
    "kernel_q": [[], _K3, [], _K3] + [[]] * 10 + [_K3, []],
    "kernel_kv": [_K3] * 16,
    "stride_q": [[], _S2, [], _S2] + [[]] * 10 + [_S2, []],
    "stride_kv": [[1, 8, 8], [1, 4, 4], [1, 4, 4]] + [[1, 2, 2]] * 11 + [[1, 1, 1]] * 2,
}
# torchvision's two Kinetics-400 MViTs, as builder kwargs.
VARIANTS = {
    "mvit_v2_s": {"blocks": MVIT_V2_S_BLOCKS, "residual_pool": True, "rel_pos_embed": True,
                  "proj_after_attn": True},
    "mvit_v1_b": {"blocks": MVIT_V1_B_BLOCKS, "residual_pool": False, "rel_pos_embed": False,
                  "proj_after_attn": False},
}
# Two blocks at 8 and 16 channels for CPU tests (the second pools Q and doubles channels).
TINY_BLOCKS = {"num_heads": [1, 2], "input_channels": [8, 8], "output_channels": [8, 16],
               "kernel_q": [_K3, _K3], "kernel_kv": [_K3, _K3],
               "stride_q": [[1, 1, 1], _S2], "stride_kv": [_S2, [1, 1, 1]]}


def _prod(values) -> int:
    return math.prod(values) if values else 1


@dataclass(frozen=True)
class BlockSpec:
    """One block of the block lists, with which of its optional layers exist (torchvision's
    rules; the importer pairs checkpoint tensors by the same properties)."""

    num_heads: int
    input_channels: int
    output_channels: int
    kernel_q: tuple[int, ...]
    kernel_kv: tuple[int, ...]
    stride_q: tuple[int, ...]
    stride_kv: tuple[int, ...]

    @property
    def pool_q(self) -> bool:
        return _prod(self.kernel_q) > 1 or _prod(self.stride_q) > 1

    @property
    def pool_kv(self) -> bool:
        return _prod(self.kernel_kv) > 1 or _prod(self.stride_kv) > 1

    @property
    def pool_skip(self) -> bool:
        return _prod(self.stride_q) > 1

    @property
    def project(self) -> bool:
        return self.input_channels != self.output_channels


def block_specs(blocks) -> list[BlockSpec]:
    """The :class:`BlockSpec` of each block of a torchvision-style block dict (one list per
    field of :data:`BLOCK_FIELDS`, all of one length)."""
    if not isinstance(blocks, dict) or set(blocks) != set(BLOCK_FIELDS):
        raise ValueError(f"`blocks` must be a dict of the lists {', '.join(BLOCK_FIELDS)}. "
                         f"Received: blocks={blocks!r}")
    lengths = {len(blocks[f]) for f in BLOCK_FIELDS}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"`blocks` lists must be non-empty and of one length. "
                         f"Received: lengths {[len(blocks[f]) for f in BLOCK_FIELDS]}")
    specs = []
    for i in range(lengths.pop()):
        row = {f: blocks[f][i] for f in BLOCK_FIELDS}
        for f in BLOCK_FIELDS[:3]:
            check_positive_int(row[f], f"blocks[{f!r}][{i}]")
        for f in BLOCK_FIELDS[3:]:
            row[f] = check_int_tuple(row[f], f"blocks[{f!r}][{i}]", length=3) if row[f] else ()
        spec = BlockSpec(**row)
        if (spec.pool_q and not spec.kernel_q) or (spec.pool_kv and not spec.kernel_kv) or \
                spec.output_channels % spec.num_heads or spec.input_channels % spec.num_heads:
            raise ValueError(f"block {i}: pooling needs a kernel and the channels must be "
                             f"divisible by the heads. Received: {row}")
        specs.append(spec)
    return specs


def _pool_output(grid, kernel, strides) -> tuple[int, int, int]:
    """Grid after a pooling of ``kernel`` / ``strides`` padded by ``kernel // 2`` (PyTorch)."""
    return tuple((g + 2 * (k // 2) - k) // s + 1 for g, k, s in zip(grid, kernel, strides))


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="kvid")
class ClassTokenPosition(layers.Layer):
    """Patch embedding [B, T, H, W, C] -> tokens [B, 1 + T*H*W, C]: a learned class token
    first (torchvision's ``PositionalEncoding``); with ``absolute`` (MViT v1) a position
    embedding separable over time and space (temporal[t] + spatial[h, w]) and one for the
    class token are added. MViTv2 puts its positions in the attention instead."""

    def __init__(self, absolute: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.absolute = bool(absolute)

    def build(self, input_shape):
        _, t, h, w, c = input_shape
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.class_token = self.add_weight(name="class_token", shape=(c,), initializer=init)
        if self.absolute:
            self.spatial_pos = self.add_weight(name="spatial_pos", shape=(h * w, c),
                                               initializer=init)
            self.temporal_pos = self.add_weight(name="temporal_pos", shape=(t, c),
                                                initializer=init)
            self.class_pos = self.add_weight(name="class_pos", shape=(c,), initializer=init)

    def call(self, x):
        _, t, h, w, c = x.shape
        x = ops.reshape(x, (-1, t * h * w, c))
        cls = ops.zeros_like(x[:, :1]) + ops.cast(self.class_token, x.dtype)
        x = ops.concatenate([cls, x], axis=1)
        if self.absolute:
            pos = self.temporal_pos[:, None, :] + self.spatial_pos[None]
            pos = ops.concatenate([self.class_pos[None], ops.reshape(pos, (t * h * w, c))], 0)
            x = x + ops.cast(pos, x.dtype)
        return x

    def compute_output_shape(self, input_shape):
        b, t, h, w, c = input_shape
        return (b, 1 + t * h * w, c)

    def get_config(self):
        return {**super().get_config(), "absolute": self.absolute}


@keras.saving.register_keras_serializable(package="kvid")
class SplitHeads(layers.Layer):
    """The fused qkv projection [B, N, 3*D] -> q, k, v each [B, heads, N, D/heads]
    (torchvision's ``reshape(B, N, 3, heads, d).transpose(1, 3)`` channel order)."""

    def __init__(self, num_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)

    def call(self, x):
        n, d = x.shape[1], x.shape[2] // 3
        x = ops.reshape(x, (-1, n, 3, self.num_heads, d // self.num_heads))
        x = ops.transpose(x, (2, 0, 3, 1, 4))
        return x[0], x[1], x[2]

    def compute_output_shape(self, input_shape):
        b, n, d3 = input_shape
        shape = (b, self.num_heads, n, d3 // 3 // self.num_heads)
        return shape, shape, shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


@keras.saving.register_keras_serializable(package="kvid")
class TokenPool(layers.Layer):
    """Pools tokens ``[B, (heads,) 1 + T*H*W, C]`` of a ``grid`` = (T, H, W) over space-time,
    the class token passed through (torchvision's ``Pool``), padded by ``kernel // 2`` on both
    sides as PyTorch pads: ``"conv"`` is a depthwise conv without bias shared by the heads
    (MViT's Q/K/V pooling; kernel ``(kt, kh, kw, C, 1)``), ``"max"`` a max pool (the skip path
    of a block whose queries are pooled; padded with -inf like PyTorch).

    The depthwise 3D conv is a sum of depthwise 2D convs, one per temporal tap over the
    frames it reads (time folded into the batch): TensorFlow runs grouped 3D convs on the
    CPU hundreds of times slower.
    """

    def __init__(self, grid, kernel_size, strides, mode: str = "conv", **kwargs):
        super().__init__(**kwargs)
        self.grid = tuple(int(g) for g in grid)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        if mode not in ("conv", "max"):
            raise ValueError(f"`mode` must be 'conv' or 'max'. Received: mode={mode!r}")
        self.mode = mode

    @property
    def output_grid(self) -> tuple[int, int, int]:
        return _pool_output(self.grid, self.kernel_size, self.strides)

    def build(self, input_shape):
        if self.mode == "conv":
            self.kernel = self.add_weight(
                name="kernel", shape=(*self.kernel_size, input_shape[-1], 1),
                initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"))

    def _conv(self, x):  # x: [M, T + 2p, H + 2p, W + 2p, C] padded
        (kt, _, _), (st, sh, sw) = self.kernel_size, self.strides
        frames = self.output_grid[0]
        kernel = ops.cast(self.kernel, x.dtype)
        out = None
        for tap in range(kt):
            window = x[:, tap:tap + st * (frames - 1) + 1:st]
            folded = ops.reshape(window, (-1, *window.shape[2:]))
            y = ops.depthwise_conv(folded, kernel[tap], strides=(sh, sw), padding="valid")
            out = y if out is None else out + y
        return out

    def call(self, x):
        lead, channels = tuple(x.shape[1:-2]), x.shape[-1]
        cls, tokens = x[..., :1, :], x[..., 1:, :]
        tokens = ops.reshape(tokens, (-1, *self.grid, channels))
        pads = [(0, 0), *((k // 2, k // 2) for k in self.kernel_size), (0, 0)]
        if self.mode == "conv":
            tokens = self._conv(ops.pad(tokens, pads))
        else:
            tokens = ops.max_pool(ops.pad(tokens, pads, constant_values=float("-inf")),
                                  self.kernel_size, strides=self.strides, padding="valid")
        tokens = ops.reshape(tokens, (-1, *lead, math.prod(self.output_grid), channels))
        return ops.concatenate([cls, tokens], axis=-2)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-2], 1 + math.prod(self.output_grid), input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "grid": self.grid, "kernel_size": self.kernel_size,
                "strides": self.strides, "mode": self.mode}


def _interpolation(size: int, table: int):
    """Indices and weights of PyTorch's ``interpolate(mode="linear", align_corners=False)``
    from ``table`` rows to ``size`` (None when equal: torchvision uses the table as it is)."""
    if size == table:
        return None
    scale = np.float32(table / size)
    src = np.maximum((np.arange(size, dtype=np.float32) + np.float32(0.5)) * scale
                     - np.float32(0.5), np.float32(0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, table - 1)
    w1 = (src - i0).astype(np.float32)
    return i0, i1, np.float32(1) - w1, w1


def _distances(q: int, k: int) -> np.ndarray:
    """[q, k] row of the relative position table per query/key pair (torchvision's
    ``dist_h``: positions scaled to the finer grid, in float32, truncated)."""
    q_ratio, k_ratio = np.float32(max(k / q, 1.0)), np.float32(max(q / k, 1.0))
    dist = (np.arange(q, dtype=np.float32)[:, None] * q_ratio
            - (np.arange(k, dtype=np.float32)[None, :] + np.float32(1.0 - k)) * k_ratio)
    return dist.astype(np.int64)


@keras.saving.register_keras_serializable(package="kvid")
class PoolingAttention(layers.Layer):
    """softmax(q k^T / sqrt(d) [+ relative positions]) v [+ q] over pooled q, k, v
    ``[B, heads, 1 + T*H*W, d]`` -> ``[B, N_q, heads * d]`` (torchvision's
    ``MultiscaleAttention`` between its pooling and its projection).

    ``rel_pos``: MViTv2's decomposed relative positions, tables ``(spatial_dim, d)`` for
    height and width and ``(temporal_dim, d)`` for time (sized at build as torchvision sizes
    them, linearly resampled to the grids when those need another length); their products
    with q are added to the logits of every non-class query/key pair.
    ``residual_pool``: MViTv2 adds the pooled q to the output (without the class token's
    unless ``residual_with_cls_embed``).
    """

    def __init__(self, q_grid, k_grid, rel_pos: bool = False, spatial_dim: int = 0,
                 temporal_dim: int = 0, residual_pool: bool = False,
                 residual_with_cls_embed: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.q_grid = tuple(int(g) for g in q_grid)
        self.k_grid = tuple(int(g) for g in k_grid)
        self.rel_pos = bool(rel_pos)
        self.spatial_dim, self.temporal_dim = int(spatial_dim), int(temporal_dim)
        self.residual_pool = bool(residual_pool)
        self.residual_with_cls_embed = bool(residual_with_cls_embed)

    def build(self, input_shape):
        d = input_shape[0][-1]
        if self.rel_pos:
            init = keras.initializers.TruncatedNormal(stddev=0.02)
            self.rel_pos_h = self.add_weight(name="rel_pos_h", shape=(self.spatial_dim, d),
                                             initializer=init)
            self.rel_pos_w = self.add_weight(name="rel_pos_w", shape=(self.spatial_dim, d),
                                             initializer=init)
            self.rel_pos_t = self.add_weight(name="rel_pos_t", shape=(self.temporal_dim, d),
                                             initializer=init)

    @staticmethod
    def _lookup(table, q: int, k: int, dtype):
        """[q, k, d] table rows for each query/key pair of one axis."""
        table = ops.cast(table, dtype)
        resample = _interpolation(2 * max(q, k) - 1, table.shape[0])
        if resample is not None:
            i0, i1, w0, w1 = resample
            table = (ops.take(table, i0, axis=0) * ops.cast(w0[:, None], dtype)
                     + ops.take(table, i1, axis=0) * ops.cast(w1[:, None], dtype))
        return ops.take(table, _distances(q, k), axis=0)

    def _relative_positions(self, q):
        (qt, qh, qw), (kt, kh, kw) = self.q_grid, self.k_grid
        heads, d = q.shape[1], q.shape[-1]
        rh = self._lookup(self.rel_pos_h, qh, kh, q.dtype)
        rw = self._lookup(self.rel_pos_w, qw, kw, q.dtype)
        rt = self._lookup(self.rel_pos_t, qt, kt, q.dtype)
        r_q = ops.reshape(q[:, :, 1:], (-1, heads, qt, qh, qw, d))
        rel_h = ops.einsum("bythwc,hkc->bythwk", r_q, rh)
        rel_w = ops.einsum("bythwc,wkc->bythwk", r_q, rw)
        rel_t = ops.einsum("bythwc,tkc->bythwk", r_q, rt)
        rel = (rel_h[:, :, :, :, :, None, :, None] + rel_w[:, :, :, :, :, None, None, :]
               + rel_t[:, :, :, :, :, :, None, None])
        rel = ops.reshape(rel, (-1, heads, qt * qh * qw, kt * kh * kw))
        return ops.pad(rel, [(0, 0), (0, 0), (1, 0), (1, 0)])  # class token rows/columns: 0

    def call(self, inputs):
        q, k, v = inputs
        heads, n, d = q.shape[1], q.shape[2], q.shape[3]
        attn = ops.matmul(q * ops.cast(1.0 / math.sqrt(d), q.dtype), ops.transpose(k, (0, 1, 3, 2)))
        if self.rel_pos:
            attn = attn + self._relative_positions(q)
        x = ops.matmul(ops.softmax(attn, axis=-1), v)
        if self.residual_pool:
            if self.residual_with_cls_embed:
                x = x + q
            else:
                x = ops.concatenate([x[:, :, :1], x[:, :, 1:] + q[:, :, 1:]], axis=2)
        return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (-1, n, heads * d))

    def compute_output_shape(self, input_shape):
        b, heads, n, d = input_shape[0]
        return (b, n, heads * d)

    def get_config(self):
        return {**super().get_config(), "q_grid": self.q_grid, "k_grid": self.k_grid,
                "rel_pos": self.rel_pos, "spatial_dim": self.spatial_dim,
                "temporal_dim": self.temporal_dim, "residual_pool": self.residual_pool,
                "residual_with_cls_embed": self.residual_with_cls_embed}


# --------------------------------------------------------------------------- model


def _ln(x, name, epsilon):
    return layers.LayerNormalization(epsilon=epsilon, name=name)(x)


def _drop(x, rate, name):
    return StochasticDepth(rate, name=name)(x) if rate else x


def multiscale_block(x, spec: BlockSpec, *, grid, table_size, residual_pool: bool,
                     residual_with_cls_embed: bool, rel_pos_embed: bool,
                     proj_after_attn: bool, drop_path: float, epsilon: float, name: str):
    """One MViT block on tokens [B, 1 + T*H*W, C_in] of ``grid``; returns the tokens and the
    new grid. ``table_size`` is torchvision's bookkeeping of the grid (``size // stride``),
    which sizes the relative position tables."""
    attn_dim = spec.output_channels if proj_after_attn else spec.input_channels
    heads = spec.num_heads
    x_norm1 = _ln(x, f"{name}_norm1", epsilon)
    qkv = layers.Dense(3 * attn_dim, name=f"{name}_attn_qkv")(x_norm1)
    q, k, v = SplitHeads(heads, name=f"{name}_attn_heads")(qkv)
    q_grid = k_grid = grid
    if spec.pool_kv:
        pooled = []
        for which, t in (("k", k), ("v", v)):
            pool = TokenPool(grid, spec.kernel_kv, spec.stride_kv or (1, 1, 1),
                             name=f"{name}_attn_pool_{which}")
            pooled.append(_ln(pool(t), f"{name}_attn_pool_{which}_norm", epsilon))
            k_grid = pool.output_grid
        k, v = pooled
    if spec.pool_q:
        pool = TokenPool(grid, spec.kernel_q, spec.stride_q or (1, 1, 1),
                         name=f"{name}_attn_pool_q")
        q = _ln(pool(q), f"{name}_attn_pool_q_norm", epsilon)
        q_grid = pool.output_grid
    dims = {}
    if rel_pos_embed:
        size = max(table_size[1:])
        q_size = size // spec.stride_q[1] if spec.stride_q else size
        kv_size = size // spec.stride_kv[1] if spec.stride_kv else size
        dims = {"spatial_dim": 2 * max(q_size, kv_size) - 1, "temporal_dim": 2 * table_size[0] - 1}
    x_attn = PoolingAttention(q_grid, k_grid, rel_pos=rel_pos_embed, residual_pool=residual_pool,
                              residual_with_cls_embed=residual_with_cls_embed, name=f"{name}_attn",
                              **dims)([q, k, v])
    x_attn = layers.Dense(attn_dim, name=f"{name}_attn_project")(x_attn)
    project = layers.Dense(spec.output_channels, name=f"{name}_project") if spec.project else None
    if project is not None and proj_after_attn:  # v2: widen the shortcut with the attention
        x = project(x_norm1)
    if spec.pool_skip:
        kernel = tuple(s + 1 if s > 1 else s for s in spec.stride_q)
        x = TokenPool(grid, kernel, spec.stride_q, mode="max", name=f"{name}_pool_skip")(x)
    x = layers.Add(name=f"{name}_attn_add")([x, _drop(x_attn, drop_path, f"{name}_attn_drop")])
    x_norm2 = _ln(x, f"{name}_norm2", epsilon)
    if project is not None and not proj_after_attn:  # v1: widen the shortcut with the MLP
        x = project(x_norm2)
    y = layers.Dense(4 * attn_dim, activation="gelu", name=f"{name}_mlp_fc1")(x_norm2)
    y = layers.Dense(spec.output_channels, name=f"{name}_mlp_fc2")(y)
    x = layers.Add(name=f"{name}_mlp_add")([x, _drop(y, drop_path, f"{name}_mlp_drop")])
    return x, q_grid


def build_mvit(input_shape=(16, 224, 224, 3), num_classes: int = 400, *,
               blocks=MVIT_V2_S_BLOCKS, residual_pool: bool = True, rel_pos_embed: bool = True,
               proj_after_attn: bool = True, residual_with_cls_embed: bool = False,
               patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4), patch_padding=(1, 3, 3),
               dropout: float = 0.5, stochastic_depth: float = 0.2, epsilon: float = 1e-6,
               name: str = "mvit") -> keras.Model:
    """MViT (Fan et al. 2021) / MViTv2 (Li et al. 2022) as torchvision builds them; the
    defaults are ``mvit_v2_s``, :data:`VARIANTS` also holds ``mvit_v1_b``.

    Args:
        input_shape: ``(T, H, W, 3)``, static (the position tables are sized by it);
            torchvision's weights are for 16x224x224.
        num_classes: 400 for Kinetics.
        blocks: one list per field of :data:`BLOCK_FIELDS`, one entry per block (heads,
            input/output channels, Q and K/V pooling kernels and strides; empty = none),
            torchvision's format.
        residual_pool: add the pooled queries to the attention output (v2).
        rel_pos_embed: decomposed relative positions in the attention (v2) instead of
            absolute position embeddings on the tokens (v1).
        proj_after_attn: widen the channels in the attention (v2) rather than the MLP (v1).
        residual_with_cls_embed: the residual pooling also adds the class token's query.
        patch_kernel, patch_stride, patch_padding: the patch embedding conv (PyTorch padding).
        dropout: before the logits (torchvision trains with 0.5).
        stochastic_depth: drop rate of the last block's residual branches while training,
            linearly less for earlier blocks (torchvision's recipe 0.2); none at inference.
        epsilon: of every LayerNorm.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    specs = block_specs(blocks)
    patch_kernel = check_int_tuple(patch_kernel, "patch_kernel", length=3)
    patch_stride = check_int_tuple(patch_stride, "patch_stride", length=3)
    if not (isinstance(patch_padding, (tuple, list)) and len(patch_padding) == 3
            and all(isinstance(p, int) and p >= 0 for p in patch_padding)):
        raise ValueError(f"`patch_padding` must be 3 ints >= 0. Received: {patch_padding!r}")
    check_rate(dropout)
    check_rate(stochastic_depth, "stochastic_depth")
    check_positive_float(epsilon, "epsilon")

    inputs = video_input(input_shape, "rgb")
    x, padding = explicit_padding(inputs, patch_padding, patch_kernel, patch_stride,
                                  name="conv_proj")
    x = layers.Conv3D(specs[0].input_channels, patch_kernel, strides=patch_stride,
                      padding=padding, name="conv_proj")(x)
    grid = tuple(x.shape[1:4])
    # torchvision sizes its tables from T // st, H // sh, W // sw and checks nothing else.
    table_size = [size // s for size, s in zip(input_shape[:3], patch_stride)]
    x = ClassTokenPosition(absolute=not rel_pos_embed, name="pos_encoding")(x)
    for i, spec in enumerate(specs):
        rate = stochastic_depth * i / (len(specs) - 1) if len(specs) > 1 else 0.0
        x, grid = multiscale_block(
            x, spec, grid=grid, table_size=table_size, residual_pool=residual_pool,
            residual_with_cls_embed=residual_with_cls_embed, rel_pos_embed=rel_pos_embed,
            proj_after_attn=proj_after_attn, drop_path=rate, epsilon=epsilon,
            name=f"blocks_{i}")
        if spec.stride_q:
            table_size = [size // s for size, s in zip(table_size, spec.stride_q)]
    # The final LayerNorm is per token: normalizing only the class token is the same.
    x = SliceAxis(0, 1, axis=1, name="class_token")(x)
    x = layers.Flatten(name="class_token_flat")(_ln(x, "norm", epsilon))
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _variant(name: str, description: str, paper: str, params: int):
    return make_info(
        functools.partial(build_mvit, **VARIANTS[name], name=name), "rgb", description, paper,
        (16, 224, 224, 3), normalization="kinetics_ptv", fps=7.5, published_params=params,
        params_source=f"torchvision {name} KINETICS400_V1 weights meta num_params",
        tiny_input_shape=(4, 32, 32, 3),
        tiny_kwargs={"blocks": TINY_BLOCKS, "dropout": 0.0, "stochastic_depth": 0.0})


_V1 = "Fan et al., Multiscale Vision Transformers, ICCV 2021"
_V2 = ("Li et al., MViTv2: Improved Multiscale Vision Transformers for Classification and "
       "Detection, CVPR 2022")
# torchvision's recipe: 16 frames at 7.5 fps, short side 256, center crop 224, mean 0.45 and
# std 0.225 (its weights' transforms; PyTorchVideo's Kinetics statistics).
ZOO = {
    "mvit_v2_s": _variant("mvit_v2_s", "torchvision MViTv2-S: pooling attention with relative "
                          "positions and residual pooling (Kinetics-400 importable).", _V2,
                          34_537_744),
    "mvit_v1_b": _variant("mvit_v1_b", "torchvision MViT-B 16x4: pooling attention, absolute "
                          "positions (Kinetics-400 importable).", _V1, 36_610_672),
}
