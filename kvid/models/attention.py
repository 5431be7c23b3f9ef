"""Attention models: soft spatial attention LRCN, and temporal attention over 3D conv features.

- ``lrcn_soft_attention``: Sharma, Kiros & Salakhutdinov, "Action Recognition using Visual
  Attention", ICLR 2016 workshop (https://arxiv.org/abs/1511.04119).
- ``conv3d_attention``: an R3D trunk that keeps the time axis, pooled over time by learned
  additive attention (Bahdanau et al. 2015) instead of an average; a common baseline
  (e.g. attention clusters, Long et al. CVPR 2018, use the same pooling).

Both models name their attention weights layer ``"attention"``; :func:`attention_model`
returns a model giving ``(logits, attention)`` for plotting.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kvid.models.backbones import build_backbone, frame_feature_maps
from kvid.models.layers import (
    MeanOverAxis,
    SliceAxis,
    check_input_shape,
    check_positive_int,
    check_rate,
    classifier_head,
    video_input,
)
from kvid.models.r2plus1d import check_resnet_args, video_resnet_trunk


@keras.saving.register_keras_serializable(package="kvid")
class SoftAttentionLSTMCell(layers.Layer):
    """LSTM cell that attends over the K*K locations of a frame's feature map.

    At step t: ``l_t = softmax(W h_{t-1})`` over locations, ``x_t = sum_i l_t,i X_t,i``, then an
    LSTM step on ``x_t``. The output concatenates ``h_t`` and ``l_t`` so the attention maps
    leave the RNN (split them with :class:`~kvid.models.layers.SliceAxis`).
    Step input: ``[B, K*K, D]``; state: ``[h, c]``.
    """

    def __init__(self, units: int, num_locations: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.num_locations = int(num_locations)
        self.state_size = [self.units, self.units]
        self.output_size = self.units + self.num_locations
        self.attend = layers.Dense(self.num_locations, name="attend")
        self.lstm = layers.LSTMCell(self.units, name="lstm")

    def build(self, input_shape):
        self.attend.build((input_shape[0], self.units))
        self.lstm.build((input_shape[0], input_shape[-1]))

    def call(self, inputs, states, training=None):
        h = states[0]
        weights = ops.softmax(self.attend(h), axis=-1)
        glimpse = ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)
        output, new_states = self.lstm(glimpse, states, training=training)
        return ops.concatenate([output, ops.cast(weights, output.dtype)], axis=-1), new_states

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_locations": self.num_locations}


@keras.saving.register_keras_serializable(package="kvid")
class DoublyStochasticPenalty(layers.Layer):
    """Adds ``weight * sum_i (1 - sum_t l_t,i)^2`` (batch mean) to the model's losses.

    Sharma et al.'s regularizer pushing the attention to look at every location over the
    clip. Takes the attention LSTM's output ``[B, T, units + L]`` (the attention weights are
    its last L channels) and passes it through unchanged, so it sits on the path to the logits.
    """

    def __init__(self, weight: float = 1.0, units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)
        self.units = int(units)

    def call(self, outputs):
        coverage = ops.sum(ops.cast(outputs[..., self.units:], "float32"), axis=1)
        self.add_loss(self.weight * ops.mean(ops.sum(ops.square(1.0 - coverage), axis=-1)))
        return outputs

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "units": self.units}


def build_lrcn_soft_attention(input_shape=(30, 224, 224, 3), num_classes: int = 101, *,
                              units: int = 512, backbone="small_cnn", backbone_weights=None,
                              backbone_trainable: bool = True, small_cnn_widths=(16, 32, 64, 128),
                              input_normalization: str = "imagenet",
                              attention_penalty: float = 0.0, dropout: float = 0.5,
                              per_step: bool = False,
                              name: str = "lrcn_soft_attention") -> keras.Model:
    """Soft-attention LSTM over per-frame CNN feature maps (Sharma et al. 2016).

    ```
    frames -> backbone per frame -> [B,T,K,K,D] -> [B,T,K*K,D]
      h0, c0 = tanh(Dense(mean of all features))
      each step: attention from h_{t-1} over K*K locations -> weighted feature -> LSTM -> logits_t
    ```

    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses 30 frames of GoogLeNet 7x7x1024 maps.
        num_classes: number of classes.
        units: LSTM units.
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            see :func:`kvid.models.backbones.build_backbone`; must give a spatial feature map.
        attention_penalty: weight of the doubly stochastic penalty (added with ``add_loss``,
            so ``model.fit`` minimizes it; 0 disables it; the paper uses 1).
        dropout: before the logits layer.
        per_step: return the per-step logits ``[B, T, num_classes]``; otherwise their mean
            over time (the paper's test-time prediction).

    :func:`attention_model` gives the attention maps ``[B, T, K, K]``.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(units, "units")
    check_rate(dropout)
    if attention_penalty < 0:
        raise ValueError(f"`attention_penalty` must be >= 0. "
                         f"Received: attention_penalty={attention_penalty!r}")

    inputs = video_input(input_shape, "rgb")
    net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    maps = frame_feature_maps(net, inputs, model="Soft attention")
    timesteps, k_h, k_w, depth = maps.shape[1:]
    locations = layers.Reshape((timesteps, k_h * k_w, depth), name="locations")(maps)
    context = layers.GlobalAveragePooling3D(name="context")(maps)
    h0 = layers.Dense(units, activation="tanh", name="init_h")(context)
    c0 = layers.Dense(units, activation="tanh", name="init_c")(context)
    cell = SoftAttentionLSTMCell(units, k_h * k_w, name="attention_cell")
    outputs = layers.RNN(cell, return_sequences=True, name="attention_lstm")(
        locations, initial_state=[h0, c0])
    if attention_penalty:
        outputs = DoublyStochasticPenalty(attention_penalty, units, name="attention_penalty")(outputs)
    hidden = SliceAxis(0, units, name="hidden")(outputs)
    logits = classifier_head(hidden, num_classes, dropout=dropout,
                             name="logits" if per_step else "step_logits")
    if not per_step:
        logits = MeanOverAxis(axis=1, dtype="float32", name="logits")(logits)
    return keras.Model(inputs, logits, name=name)


@keras.saving.register_keras_serializable(package="kvid")
class AdditiveAttentionPooling(layers.Layer):
    """Pools [B, T, D] over T with weights ``softmax_t(v . tanh(W x_t))``; returns (pooled, weights)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.project = layers.Dense(self.units, activation="tanh", name="project")
        self.score = layers.Dense(1, use_bias=False, name="score")

    def build(self, input_shape):
        self.project.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))

    def call(self, x):
        weights = ops.softmax(ops.squeeze(self.score(self.project(x)), -1), axis=-1)
        return ops.sum(x * ops.expand_dims(weights, -1), axis=1), weights

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1]), tuple(input_shape[:2])

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def build_conv3d_attention(input_shape=(16, 112, 112, 3), num_classes: int = 400, *,
                           depth: int = 18, widths=(64, 128, 256, 512), attention_units: int = 128,
                           dropout: float = 0.5, name: str = "conv3d_attention") -> keras.Model:
    """R3D trunk without temporal downsampling, pooled over time by additive attention.

    ```
    [B,T,H,W,3] -> R3D-18 trunk (stride 1 in time) -> [B,T,h,w,C] -> spatial mean -> [B,T,C]
      -> a_t = softmax(v . tanh(W x_t)) -> sum_t a_t x_t -> logits
    ```
    :func:`attention_model` gives the weights ``a`` ``[B, T]``.

    Args:
        input_shape: ``(T, H, W, 3)``.
        num_classes: number of classes.
        depth, widths: the R3D trunk (see :func:`kvid.models.r2plus1d.build_r2plus1d`).
        attention_units: width of the attention MLP.
        dropout: before the logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3, allow_none=True)
    check_positive_int(num_classes, "num_classes")
    check_positive_int(attention_units, "attention_units")
    widths = check_resnet_args(depth, widths, "3d")
    check_rate(dropout)
    inputs = video_input(input_shape, "rgb")
    x = video_resnet_trunk(inputs, depth=depth, widths=widths, conv_type="3d", temporal_strides=False)
    x = MeanOverAxis(axis=(2, 3), name="spatial_pool")(x)
    pooled, _ = AdditiveAttentionPooling(attention_units, name="temporal_attention")(x)
    logits = classifier_head(pooled, num_classes, dropout=dropout)
    return keras.Model(inputs, logits, name=name)


def attention_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s weights that returns ``(logits, attention)``.

    For ``lrcn_soft_attention`` the attention is ``[B, T, K, K]`` (a spatial map per step),
    for ``conv3d_attention`` ``[B, T]`` (weights over time).
    """
    names = {layer.name for layer in model.layers}
    if "attention_lstm" in names:
        _, timesteps, locations, _ = model.get_layer("locations").output.shape
        k_h, k_w = model.get_layer("locations").input.shape[2:4]
        outputs = model.get_layer("attention_lstm").output
        units = outputs.shape[-1] - locations
        weights = SliceAxis(units, None, name="attention_weights")(outputs)
        attention = layers.Reshape((timesteps, k_h, k_w), name="attention")(weights)
    elif "temporal_attention" in names:
        attention = model.get_layer("temporal_attention").output[1]
    else:
        raise ValueError("The model has no attention layer ('attention_lstm' or "
                         f"'temporal_attention'). Received: model={model.name!r}")
    return keras.Model(model.input, [model.output, attention], name=f"{model.name}_with_attention")
