"""Hidden two-stream: a MotionNet learns optical flow from frames, without flow labels.

Zhu, Lan, Newsam & Hauptmann, "Hidden Two-Stream Convolutional Networks for Action
Recognition", ACCV 2018 (https://arxiv.org/abs/1704.00389).

```
frames [B,T,H,W,3] -> stack in channels [B,H,W,3T] -> MotionNet (encoder-decoder)
  -> flow [B,H,W,2(T-1)] --(unsupervised loss: warp frame t+1 onto t, + smoothness)
  -> temporal stream (2D CNN on the flow stack) -> logits_t \
frames -> spatial stream (2D CNN per frame, mean) -> logits_s  -> mean -> logits
```
The MotionNet loss is added with ``add_loss`` (weight ``motion_loss_weight``), so
``model.fit`` trains flow estimation and classification together, as in the paper's
end-to-end stage.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from kvid.models.backbones import build_backbone, frame_logits
from kvid.models.layers import (
    StackFrames,
    check_input_shape,
    check_int_tuple,
    check_positive_int,
    check_rate,
    conv_bn_act,
    video_input,
)


def warp(image, flow):
    """Bilinearly samples ``image`` [N, H, W, C] at ``(x + flow_x, y + flow_y)`` (flow in pixels)."""
    _, height, width, channels = image.shape
    ys, xs = ops.meshgrid(ops.arange(height, dtype="float32"), ops.arange(width, dtype="float32"),
                          indexing="ij")
    x = ops.clip(xs + flow[..., 0], 0.0, width - 1.0)
    y = ops.clip(ys + flow[..., 1], 0.0, height - 1.0)
    x0, y0 = ops.floor(x), ops.floor(y)
    x1, y1 = ops.minimum(x0 + 1, width - 1.0), ops.minimum(y0 + 1, height - 1.0)
    flat = ops.reshape(image, (-1, height * width, channels))

    def gather(yy, xx):
        index = ops.cast(ops.reshape(yy * width + xx, (-1, height * width, 1)), "int32")
        values = ops.take_along_axis(flat, ops.repeat(index, channels, axis=-1), axis=1)
        return ops.reshape(values, (-1, height, width, channels))

    wx, wy = ops.expand_dims(x - x0, -1), ops.expand_dims(y - y0, -1)
    top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def _charbonnier(x, epsilon=1e-3, alpha=0.4):
    return ops.mean(ops.power(ops.square(x) + epsilon**2, alpha))


@keras.saving.register_keras_serializable(package="kvid")
class MotionNetLoss(layers.Layer):
    """Adds MotionNet's unsupervised loss; passes the flow through unchanged.

    Inputs ``[frames [B,T,H,W,C], flow [B,H,W,2(T-1)]]``. For each pair ``(t, t+1)``: the
    Charbonnier penalty of ``frame_t - warp(frame_{t+1}, flow_t)`` plus ``smoothness`` times
    the Charbonnier penalty of the flow's spatial gradients.
    """

    def __init__(self, weight: float = 1.0, smoothness: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.smoothness = float(weight), float(smoothness)

    def call(self, inputs):
        frames, flow = inputs
        frames = ops.cast(frames, "float32")
        flow32 = ops.cast(flow, "float32")
        steps = frames.shape[1] - 1
        total = 0.0
        for t in range(steps):
            pair_flow = flow32[..., 2 * t:2 * t + 2]
            total += _charbonnier(frames[:, t] - warp(frames[:, t + 1], pair_flow))
            total += self.smoothness * (
                _charbonnier(pair_flow[:, 1:] - pair_flow[:, :-1])
                + _charbonnier(pair_flow[:, :, 1:] - pair_flow[:, :, :-1]))
        self.add_loss(self.weight * total / steps)
        return flow

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "smoothness": self.smoothness}


def motionnet(stacked, flows: int, *, widths, name: str = "motionnet"):
    """Encoder-decoder with skip connections predicting ``2 * flows`` flow channels at full size."""
    x = conv_bn_act(stacked, widths[0], 3, dims=2, name=f"{name}_in")
    skips = []
    for i, width in enumerate(widths):
        skips.append(x)
        x = conv_bn_act(x, width, 3, strides=2, dims=2, name=f"{name}_down{i}")
    for i, (width, skip) in reversed(list(enumerate(zip(widths, skips)))):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", name=f"{name}_up{i}")(x)
        x = layers.Concatenate(name=f"{name}_skip{i}")([x, skip])
        x = conv_bn_act(x, width, 3, dims=2, name=f"{name}_dec{i}")
    return layers.Conv2D(2 * flows, 3, padding="same", dtype="float32", name=f"{name}_flow")(x)


def build_hidden_two_stream(input_shape=(11, 224, 224, 3), num_classes: int = 101, *,
                            motionnet_widths=(32, 64, 128), motion_loss_weight: float = 1.0,
                            smoothness: float = 0.1, spatial_stream: bool = True,
                            backbone="small_cnn", backbone_weights=None,
                            backbone_trainable: bool = True, small_cnn_widths=(16, 32, 64, 128),
                            input_normalization: str = "imagenet", dropout: float = 0.5,
                            name: str = "hidden_two_stream") -> keras.Model:
    """Hidden two-stream network (Zhu et al. 2018): MotionNet + temporal (+ spatial) stream.

    Args:
        input_shape: ``(T, H, W, 3)``, T >= 2 and H, W divisible by ``2**len(motionnet_widths)``;
            the paper stacks 11 frames (10 flows).
        num_classes: number of classes.
        motionnet_widths: encoder widths of MotionNet (one stride-2 stage each).
        motion_loss_weight: weight of the unsupervised flow loss (0 disables it).
        smoothness: weight of the flow smoothness term inside that loss.
        spatial_stream: also classify the RGB frames and average both streams' logits.
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            the streams' 2D CNN (see :func:`kvid.models.backbones.build_backbone`).
        dropout: before each logits layer.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    motionnet_widths = check_int_tuple(motionnet_widths, "motionnet_widths")
    check_rate(dropout)
    frames, height, width, _ = input_shape
    scale = 2 ** len(motionnet_widths)
    if frames < 2 or height % scale or width % scale:
        raise ValueError(f"Needs T >= 2 and H, W divisible by {scale}. Received: input_shape={input_shape}")
    if motion_loss_weight < 0 or smoothness < 0:
        raise ValueError(f"Loss weights must be >= 0. Received: motion_loss_weight="
                         f"{motion_loss_weight!r}, smoothness={smoothness!r}")

    inputs = video_input(input_shape, "rgb")
    stacked = layers.Reshape((height, width, 3 * frames), name="frame_stack_flat")(
        StackFrames(1, name="frame_stack")(inputs))
    flow = motionnet(stacked, frames - 1, widths=motionnet_widths)
    if motion_loss_weight:
        flow = MotionNetLoss(motion_loss_weight, smoothness, name="motion_loss")([inputs, flow])
    flow = layers.Reshape((1, height, width, 2 * (frames - 1)), name="flow_stack")(flow)
    common = dict(trainable=backbone_trainable, small_cnn_widths=small_cnn_widths,
                  input_normalization=input_normalization)
    temporal_net = build_backbone(backbone, flow.shape[2:], name="temporal_backbone", **common)
    logits = frame_logits(temporal_net, flow, num_classes, dropout=dropout, prefix="temporal_")
    if spatial_stream:
        spatial_net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                                     name="spatial_backbone", **common)
        spatial = frame_logits(spatial_net, inputs, num_classes, dropout=dropout, prefix="spatial_")
        logits = layers.Average(dtype="float32", name="logits")([spatial, logits])
    return keras.Model(inputs, logits, name=name)
