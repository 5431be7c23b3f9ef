"""FstCN: factorized spatio-temporal convolutions, 2D spatial layers then temporal layers.

Sun, Jia, Yeung & Shi, "Human Action Recognition using Factorized Spatio-Temporal
Convolutional Networks", ICCV 2015 (https://arxiv.org/abs/1510.00562).

```
clip [B,T,H,W,3] -> shared spatial conv layers (2D CNN per frame) -> [B,T,h,w,C]
  spatial path:  middle frame's features -> 1x3x3 conv -> pool -> logits_s
  temporal path: feature differences f[t+d] - f[t] (the paper's V_diff) -> 1x1 reduce
                 -> temporal convs 3x1x1 (the TCLs after the transform-permute step) -> pool -> logits_t
  logits = mean(logits_s, logits_t)
```
The paper's transform-permute operator followed by 1D temporal convolutions is realized
here as 3x1x1 convolutions on the (reduced) feature maps, which is the same operation.
"""

from __future__ import annotations

import keras
from keras import layers

from kvid.models.backbones import build_backbone, frame_feature_maps
from kvid.models.layers import (
    SliceAxis,
    check_input_shape,
    check_positive_int,
    check_rate,
    conv_bn_act,
    pool_and_classify,
    video_input,
)


def build_fstcn(input_shape=(16, 204, 204, 3), num_classes: int = 101, *, frame_stride: int = 1,
                temporal_channels: int = 128, temporal_layers: int = 2, backbone="small_cnn",
                backbone_weights=None, backbone_trainable: bool = True,
                small_cnn_widths=(16, 32, 64, 128), input_normalization: str = "imagenet",
                dropout: float = 0.5, name: str = "fstcn") -> keras.Model:
    """Factorized spatio-temporal ConvNet (Sun et al. 2015).

    Args:
        input_shape: ``(T, H, W, 3)`` with T > ``frame_stride``; the paper uses 16 frames.
        num_classes: number of classes.
        frame_stride: d, the distance between the frames whose features are subtracted.
        temporal_channels: width of the temporal path.
        temporal_layers: number of 3x1x1 temporal conv layers.
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            the shared spatial conv layers (see :func:`kvid.models.backbones.build_backbone`).
        dropout: before both logits layers.
    """
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    for arg, value in (("frame_stride", frame_stride), ("temporal_channels", temporal_channels),
                       ("temporal_layers", temporal_layers)):
        check_positive_int(value, arg)
    check_rate(dropout)
    frames = input_shape[0]
    if frames <= frame_stride:
        raise ValueError(f"Needs more than frame_stride={frame_stride} frames. "
                         f"Received: input_shape={input_shape}")

    inputs = video_input(input_shape, "rgb")
    net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    features = frame_feature_maps(net, inputs, model="FstCN")
    middle = SliceAxis(frames // 2, frames // 2 + 1, axis=1, name="middle_frame")(features)
    spatial = conv_bn_act(middle, features.shape[-1], (1, 3, 3), name="spatial_conv")
    spatial = pool_and_classify(spatial, num_classes, dropout=dropout, prefix="spatial",
                                name="spatial_logits")

    later = SliceAxis(frame_stride, None, axis=1, name="later_frames")(features)
    earlier = SliceAxis(0, frames - frame_stride, axis=1, name="earlier_frames")(features)
    x = layers.Subtract(name="feature_diff")([later, earlier])
    x = conv_bn_act(x, temporal_channels, 1, name="temporal_reduce")
    for i in range(temporal_layers):
        x = conv_bn_act(x, temporal_channels, (3, 1, 1), name=f"temporal_conv{i}")
    temporal = pool_and_classify(x, num_classes, dropout=dropout, prefix="temporal",
                                 name="temporal_logits")
    logits = layers.Average(dtype="float32", name="logits")([spatial, temporal])
    return keras.Model(inputs, logits, name=name)
