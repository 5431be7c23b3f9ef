"""LRCN-style recurrent models: a 2D CNN per frame, its pooled features into LSTM/GRU layers.

Donahue et al., "Long-term Recurrent Convolutional Networks for Visual Recognition and
Description", CVPR 2015 (https://arxiv.org/abs/1411.4389); Ng et al., "Beyond Short
Snippets: Deep Networks for Video Classification", CVPR 2015 (stacked LSTMs).

```
frames [B,T,H,W,C] -> backbone per frame -> GAP -> [B,T,D] -> (Bi)LSTM/GRU x N -> Dense -> logits
```

The variants differ only in their recurrent stack and are declared as data in
:data:`RECURRENT_VARIANTS`. With ``per_step=True`` the model returns per-time-step logits
``[B, T, num_classes]`` so the loss can be taken at every step as in LRCN; at test time LRCN
averages the step predictions: :func:`clip_logits` (mean, or the last step) turns them into
clip logits ``[B, num_classes]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from kvid.models.backbones import build_backbone, frame_features
from kvid.models.layers import (
    check_choice,
    check_modality_input,
    check_positive_int,
    check_rate,
    classifier_head,
    video_input,
)

@dataclass(frozen=True)
class RecurrentSpec:
    cell: str  # "lstm" | "gru"
    num_layers: int
    bidirectional: bool


RECURRENT_VARIANTS: dict[str, RecurrentSpec] = {
    "cnn_lstm": RecurrentSpec("lstm", 1, False),
    "cnn_gru": RecurrentSpec("gru", 1, False),
    "cnn_bilstm": RecurrentSpec("lstm", 1, True),
    "cnn_stacked_lstm": RecurrentSpec("lstm", 2, False),
}


def build_recurrent(input_shape=(16, 224, 224, 3), num_classes: int = 101, *,
                    cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                    units: int = 256, backbone="small_cnn", backbone_weights=None,
                    backbone_trainable: bool = True, small_cnn_widths=(16, 32, 64, 128),
                    input_normalization: str = "imagenet", feature_dropout: float = 0.0,
                    dropout: float = 0.5, per_step: bool = False, modality: str = "rgb",
                    name: str = "cnn_rnn") -> keras.Model:
    """A per-frame CNN followed by ``num_layers`` recurrent layers (LRCN, Donahue et al. 2015).

    Args:
        input_shape: ``(T, H, W, C)``; C is 3 for ``modality="rgb"`` and 2 for ``"flow"``.
        num_classes: number of action classes.
        cell: ``"lstm"`` or ``"gru"``.
        num_layers: stacked recurrent layers (Ng et al. 2015 stack five; LRCN uses one).
        bidirectional: wrap every recurrent layer in ``Bidirectional`` (concatenated outputs).
        units: hidden units per recurrent layer (and per direction).
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            see :func:`kvid.models.backbones.build_backbone`.
        feature_dropout: dropout on the per-frame features.
        dropout: dropout before the logits layer.
        per_step: return logits ``[B, T, num_classes]`` for every time step.
        modality: name of the input layer, ``"rgb"`` or ``"flow"``.

    Returns:
        An uncompiled ``keras.Model`` from ``{modality: float32 [B, T, H, W, C]}`` to float32
        logits ``[B, num_classes]`` (or ``[B, T, num_classes]`` with ``per_step``).

    Example:
        >>> model = build_recurrent((8, 64, 64, 3), 4, cell="gru")
        >>> tuple(model.output.shape)
        (None, 4)
    """
    input_shape = check_modality_input(input_shape, modality)
    check_positive_int(num_classes, "num_classes")
    check_choice(cell, ("lstm", "gru"), "cell")
    check_positive_int(num_layers, "num_layers")
    check_positive_int(units, "units")
    check_rate(dropout, "dropout")
    check_rate(feature_dropout, "feature_dropout")

    inputs = video_input(input_shape, modality)
    net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    x = frame_features(net, inputs, name="frames")
    if feature_dropout:
        x = layers.Dropout(feature_dropout, name="frames_dropout")(x)
    rnn_class = layers.LSTM if cell == "lstm" else layers.GRU
    for i in range(num_layers):
        return_sequences = per_step or i < num_layers - 1
        rnn = rnn_class(units, return_sequences=return_sequences, name=f"{cell}{i}")
        if bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bi{cell}{i}")
        x = rnn(x)
    logits = classifier_head(x, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def clip_logits(step_logits, mode: str = "mean"):
    """Clip logits ``[B, C]`` from per-step logits ``[B, T, C]``: their mean or the last step.

    LRCN averages the per-frame predictions at test time (``"mean"``); ``"last"`` keeps the
    prediction that has seen the whole clip. Clip logits ``[B, C]`` pass through unchanged,
    so evaluation and export call this on any model's output.
    """
    check_choice(mode, ("mean", "last"), "mode")
    if len(step_logits.shape) == 2:
        return step_logits
    return ops.mean(step_logits, axis=1) if mode == "mean" else step_logits[:, -1]


def _variant(variant: str, input_shape, num_classes, kwargs) -> keras.Model:
    spec = RECURRENT_VARIANTS[variant]
    kwargs.setdefault("name", variant)
    return build_recurrent(input_shape, num_classes, cell=spec.cell, num_layers=spec.num_layers,
                           bidirectional=spec.bidirectional, **kwargs)


def build_cnn_lstm(input_shape=(16, 224, 224, 3), num_classes: int = 101, **kwargs) -> keras.Model:
    """LRCN (Donahue et al. 2015): per-frame CNN features into one LSTM. See :func:`build_recurrent`."""
    return _variant("cnn_lstm", input_shape, num_classes, kwargs)


def build_cnn_gru(input_shape=(16, 224, 224, 3), num_classes: int = 101, **kwargs) -> keras.Model:
    """LRCN with a GRU (Cho et al. 2014) instead of the LSTM. See :func:`build_recurrent`."""
    return _variant("cnn_gru", input_shape, num_classes, kwargs)


def build_cnn_bilstm(input_shape=(16, 224, 224, 3), num_classes: int = 101, **kwargs) -> keras.Model:
    """LRCN with a bidirectional LSTM (sees the clip forwards and backwards). See :func:`build_recurrent`."""
    return _variant("cnn_bilstm", input_shape, num_classes, kwargs)


def build_cnn_stacked_lstm(input_shape=(16, 224, 224, 3), num_classes: int = 101,
                           **kwargs) -> keras.Model:
    """Two stacked LSTMs over per-frame features (Ng et al. 2015). See :func:`build_recurrent`."""
    return _variant("cnn_stacked_lstm", input_shape, num_classes, kwargs)
