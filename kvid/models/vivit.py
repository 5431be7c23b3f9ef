"""ViViT factorised encoder: a spatial ViT per time index, then a temporal transformer.

Arnab et al., "ViViT: A Video Vision Transformer", ICCV 2021
(https://arxiv.org/abs/2103.15691), Model 2.

```
[B,T,H,W,C] -> tubelet embedding (t x p x p conv) -> [B, T/t, H/p * W/p, D]
  -> per time index: [CLS] + tokens + spatial position -> L_s transformer blocks -> CLS
  -> [B, T/t, D] -> [CLS] + temporal position -> L_t transformer blocks -> CLS -> LN -> logits
```
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from kvid.models.layers import (
    FoldTime,
    SliceAxis,
    UnfoldTime,
    check_choice,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    classifier_head,
    video_input,
)


@dataclass(frozen=True)
class ViTSpec:
    hidden: int
    heads: int
    mlp: int
    spatial_layers: int


VIT_VARIANTS: dict[str, ViTSpec] = {
    "Ti": ViTSpec(192, 3, 768, 12),
    "S": ViTSpec(384, 6, 1536, 12),
    "B": ViTSpec(768, 12, 3072, 12),
    "L": ViTSpec(1024, 16, 4096, 24),
}


@keras.saving.register_keras_serializable(package="kvid")
class ClassTokenAndPosition(layers.Layer):
    """Prepends a learned [CLS] token to [B, N, D] tokens and adds learned positions."""

    def build(self, input_shape):
        _, n, d = input_shape
        self.cls = self.add_weight(name="cls", shape=(1, 1, d), initializer="zeros")
        self.position = self.add_weight(name="position", shape=(1, n + 1, d),
                                        initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, x):
        cls = ops.tile(ops.cast(self.cls, x.dtype), (ops.shape(x)[0], 1, 1))
        return ops.concatenate([cls, x], axis=1) + ops.cast(self.position, x.dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] + 1, input_shape[2])


def transformer_block(x, *, heads: int, mlp: int, dropout: float, name: str):
    """Pre-LN transformer encoder block (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2021)."""
    dim = x.shape[-1]
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    y = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=f"{name}_attn")(y, y)
    x = layers.Add(name=f"{name}_add1")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    y = layers.Dense(mlp, activation="gelu", name=f"{name}_mlp1")(y)
    if dropout:
        y = layers.Dropout(dropout, name=f"{name}_mlp_dropout")(y)
    y = layers.Dense(dim, name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, y])


def _encoder(x, *, num_layers, heads, mlp, dropout, name):
    x = ClassTokenAndPosition(name=f"{name}_embed")(x)
    for i in range(num_layers):
        x = transformer_block(x, heads=heads, mlp=mlp, dropout=dropout, name=f"{name}{i}")
    return layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln")(x)


def build_vivit(input_shape=(32, 224, 224, 3), num_classes: int = 400, *, variant: str = "B",
                tubelet=(2, 16, 16), hidden: int | None = None, heads: int | None = None,
                mlp: int | None = None, spatial_layers: int | None = None,
                temporal_layers: int = 4, dropout: float = 0.0,
                name: str = "vivit") -> keras.Model:
    """ViViT factorised encoder (Arnab et al. 2021, Model 2).

    Args:
        input_shape: ``(T, H, W, 3)`` divisible by ``tubelet``; reference 32x224x224.
        num_classes: 400 for Kinetics.
        variant: ViT size ``"Ti"``, ``"S"``, ``"B"``, ``"L"`` (see :data:`VIT_VARIANTS`);
            ``hidden``, ``heads``, ``mlp``, ``spatial_layers`` override it.
        tubelet: ``(t, p, p)`` extent of one token.
        temporal_layers: depth of the temporal encoder (4 in the paper's ViViT-B FE).
        dropout: attention, MLP and head dropout.
    """
    check_choice(variant, VIT_VARIANTS, "variant")
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    tubelet = check_int_tuple(tubelet, "tubelet", length=3)
    check_positive_int(temporal_layers, "temporal_layers")
    check_rate(dropout)
    base = VIT_VARIANTS[variant]
    hidden = hidden or base.hidden
    heads = heads or base.heads
    mlp = mlp or base.mlp
    spatial_layers = spatial_layers or base.spatial_layers
    if any(size % step for size, step in zip(input_shape[:3], tubelet)) or hidden % heads:
        raise ValueError(f"`input_shape` must be divisible by `tubelet` and `hidden` by `heads`. "
                         f"Received: input_shape={input_shape}, tubelet={tubelet}, "
                         f"hidden={hidden}, heads={heads}")

    inputs = video_input(input_shape, "rgb")
    x = layers.Conv3D(hidden, tubelet, strides=tubelet, name="tubelet_embedding")(inputs)
    nt, nh, nw = x.shape[1:4]
    x = layers.Reshape((nt, nh * nw, hidden), name="tokens")(x)
    x = FoldTime(name="spatial_fold")(x)
    x = _encoder(x, num_layers=spatial_layers, heads=heads, mlp=mlp, dropout=dropout,
                 name="spatial")
    x = UnfoldTime(nt, name="spatial_unfold")(_cls(x, "spatial_cls"))
    x = _encoder(x, num_layers=temporal_layers, heads=heads, mlp=mlp, dropout=dropout,
                 name="temporal")
    logits = classifier_head(_cls(x, "temporal_cls"), num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def _cls(x, name):
    """The [CLS] token of [B, N + 1, D] tokens as [B, D]."""
    return layers.Flatten(name=f"{name}_flat")(SliceAxis(0, 1, axis=1, name=name)(x))
