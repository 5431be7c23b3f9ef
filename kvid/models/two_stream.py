"""Two-stream networks: an RGB appearance stream and a stacked-optical-flow motion stream.

- ``two_stream``: Simonyan & Zisserman, "Two-Stream Convolutional Networks for Action
  Recognition in Videos", NeurIPS 2014 (https://arxiv.org/abs/1406.2199): late score fusion.
- ``two_stream_fusion``: Feichtenhofer, Pinz & Zisserman, "Convolutional Two-Stream Network
  Fusion for Video Action Recognition", CVPR 2016 (https://arxiv.org/abs/1604.06573): the
  streams' feature maps fused by a 3D conv at a chosen layer, then 3D pooling.

Inputs are a dict ``{"rgb": [B, T, H, W, 3], "flow": [B, T_flow, H, W, 2]}``; a flow stack
of L frames becomes one 2L-channel image (:class:`~kvid.models.layers.StackFrames`).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
from keras import layers

from kvid.models.backbones import build_backbone, frame_features, frame_logits
from kvid.models.layers import (
    StackFrames,
    check_choice,
    check_input_shape,
    check_positive_int,
    check_rate,
    classifier_head,
    conv_bn_act,
    video_input,
)


def two_stream_shapes(input_shape, flow_frames: int) -> tuple[tuple, tuple]:
    """``(rgb_shape, flow_shape)`` from a dict ``{"rgb", "flow"}`` or an RGB ``(T, H, W, 3)``.

    Given only the RGB shape, the flow input is ``(flow_frames, H, W, 2)``.
    """
    if isinstance(input_shape, Mapping):
        if set(input_shape) != {"rgb", "flow"}:
            raise ValueError(f"A dict `input_shape` needs exactly the keys 'rgb' and 'flow'. "
                             f"Received: input_shape={input_shape!r}")
        rgb, flow = input_shape["rgb"], input_shape["flow"]
    else:
        rgb = check_input_shape(input_shape, channels=3)
        flow = (flow_frames, *rgb[1:3], 2)
    rgb = check_input_shape(rgb, channels=3, name="input_shape['rgb']")
    flow = check_input_shape(flow, channels=2, name="input_shape['flow']")
    return rgb, flow


def _two_inputs(rgb_shape, flow_shape):
    return {"rgb": video_input(rgb_shape, "rgb"), "flow": video_input(flow_shape, "flow")}


def build_two_stream(input_shape=None, num_classes: int = 101, *, flow_frames: int = 10,
                     fusion: str = "average", backbone="small_cnn", backbone_weights=None,
                     flow_backbone_weights=None, backbone_trainable: bool = True,
                     small_cnn_widths=(16, 32, 64, 128), input_normalization: str = "imagenet",
                     dropout: float = 0.5, name: str = "two_stream") -> keras.Model:
    """Two-stream ConvNet (Simonyan & Zisserman 2014) with late score fusion.

    ```
    rgb  [B,T,H,W,3]  -> 2D CNN per frame -> logits, mean over T ------\\
                                                                        fuse -> logits
    flow [B,L,H,W,2]  -> stack to [B,H,W,2L] -> 2D CNN -> logits ------/
    ```

    Args:
        input_shape: ``{"rgb": (T, H, W, 3), "flow": (L, H, W, 2)}``, or the RGB shape alone
            (flow is then ``(flow_frames, H, W, 2)``). Reference: one RGB frame and L=10 flow
            frames at 224x224.
        num_classes: number of classes.
        flow_frames: L when ``input_shape`` gives only the RGB shape.
        fusion: ``"average"`` of the two streams' logits, or ``"learned"``: a Dense layer over
            both streams' logits (the paper's SVM fusion, trained jointly).
        backbone, backbone_trainable, small_cnn_widths, input_normalization: both streams'
            2D CNN (see :func:`kvid.models.backbones.build_backbone`).
        backbone_weights / flow_backbone_weights: weights of the RGB / flow stream's CNN.
        dropout: before each stream's logits layer.
    """
    rgb_shape, flow_shape = two_stream_shapes(
        (1, 224, 224, 3) if input_shape is None else input_shape, flow_frames)
    check_positive_int(num_classes, "num_classes")
    check_choice(fusion, ("average", "learned"), "fusion")
    check_rate(dropout)
    inputs = _two_inputs(rgb_shape, flow_shape)
    common = dict(trainable=backbone_trainable, small_cnn_widths=small_cnn_widths,
                  input_normalization=input_normalization)
    rgb_net = build_backbone(backbone, rgb_shape[1:], weights=backbone_weights,
                             name="rgb_backbone", **common)
    stacked = StackFrames(1, name="flow_stack")(inputs["flow"])
    flow_net = build_backbone(backbone, stacked.shape[2:], weights=flow_backbone_weights,
                              name="flow_backbone", **common)
    rgb = frame_logits(rgb_net, inputs["rgb"], num_classes, dropout=dropout, prefix="rgb_")
    flow = frame_logits(flow_net, stacked, num_classes, dropout=dropout, prefix="flow_")
    if fusion == "average":
        logits = layers.Average(dtype="float32", name="logits")([rgb, flow])
    else:
        both = layers.Concatenate(name="stream_logits")([rgb, flow])
        logits = classifier_head(both, num_classes)
    return keras.Model(inputs, logits, name=name)


def build_two_stream_fusion(input_shape=None, num_classes: int = 101, *, flow_length: int = 10,
                            fusion_layer: str | None = None, fusion_channels: int | None = None,
                            keep_flow_stream: bool = True, backbone="small_cnn",
                            backbone_weights=None, flow_backbone_weights=None,
                            backbone_trainable: bool = True, small_cnn_widths=(16, 32, 64, 128),
                            input_normalization: str = "imagenet", dropout: float = 0.5,
                            name: str = "two_stream_fusion") -> keras.Model:
    """Convolutional two-stream fusion (Feichtenhofer et al. 2016).

    ```
    rgb  [B,T,H,W,3]    -> 2D CNN per frame up to `fusion_layer` -> [B,T,h,w,D1] \\
                                                           concat -> 1x1x1 conv -> 3x3x3 conv
    flow [B,T*L,H,W,2]  -> T stacks of L -> 2D CNN ... -> [B,T,h,w,D2]           /
      -> 3D max pool over time -> global pool -> logits  (+ the flow stream's own logits,
         averaged, with keep_flow_stream, as the paper keeps the temporal net)
    ```

    Args:
        input_shape: ``{"rgb": (T, H, W, 3), "flow": (T * L, H, W, 2)}`` (flow stack t is
            frames ``t*L .. t*L+L-1``), or the RGB shape alone. Reference: T=5 RGB frames and
            L=10 flow frames per stack at 224x224.
        num_classes: number of classes.
        flow_length: L, the flow frames per stack.
        fusion_layer: backbone layer where the streams fuse (None: the backbone's output,
            the paper's best "conv5"); e.g. ``"block2_relu"`` for small_cnn.
        fusion_channels: width of the fusion convs (default: the RGB stream's width).
        keep_flow_stream: average the fused logits with the flow stream's own logits.
        backbone, backbone_weights, flow_backbone_weights, backbone_trainable,
        small_cnn_widths, input_normalization: see :func:`build_two_stream`.
        dropout: before the logits layers.
    """
    check_positive_int(flow_length, "flow_length")
    if input_shape is None:
        input_shape = (5, 224, 224, 3)
    frames = None if isinstance(input_shape, Mapping) else check_input_shape(input_shape)[0]
    rgb_shape, flow_shape = two_stream_shapes(input_shape, (frames or 1) * flow_length)
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)
    if flow_shape[0] != rgb_shape[0] * flow_length:
        raise ValueError(f"The flow input needs T * flow_length = {rgb_shape[0] * flow_length} "
                         f"frames. Received: input_shape={input_shape!r}")
    inputs = _two_inputs(rgb_shape, flow_shape)
    common = dict(trainable=backbone_trainable, small_cnn_widths=small_cnn_widths,
                  input_normalization=input_normalization)
    stacked = StackFrames(rgb_shape[0], name="flow_stack")(inputs["flow"])
    rgb_net = build_backbone(backbone, rgb_shape[1:], weights=backbone_weights,
                             output_layer=fusion_layer, name="rgb_backbone", **common)
    flow_net = build_backbone(backbone, stacked.shape[2:], weights=flow_backbone_weights,
                              output_layer=fusion_layer, name="flow_backbone", **common)
    rgb = frame_features(rgb_net, inputs["rgb"], name="rgb_frames", pool=False)
    flow = frame_features(flow_net, stacked, name="flow_frames", pool=False)
    width = fusion_channels or rgb.shape[-1]
    check_positive_int(width, "fusion_channels")
    x = layers.Concatenate(name="fusion_concat")([rgb, flow])
    x = conv_bn_act(x, width, 1, name="fusion_reduce")
    x = conv_bn_act(x, width, 3, name="fusion_conv3d")
    x = layers.MaxPooling3D((rgb_shape[0], 1, 1), name="fusion_pool3d")(x)
    x = layers.GlobalAveragePooling3D(name="fusion_gap")(x)
    fused = classifier_head(x, num_classes, dropout=dropout,
                            name="fused_logits" if keep_flow_stream else "logits")
    if not keep_flow_stream:
        return keras.Model(inputs, fused, name=name)
    flow_pooled = layers.GlobalAveragePooling3D(name="flow_gap")(flow)
    flow_logits = classifier_head(flow_pooled, num_classes, dropout=dropout, name="flow_logits")
    logits = layers.Average(dtype="float32", name="logits")([fused, flow_logits])
    return keras.Model(inputs, logits, name=name)
