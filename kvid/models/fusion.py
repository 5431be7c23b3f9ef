"""Single-frame baseline and the time-fusion models of Karpathy et al. 2014.

Karpathy et al., "Large-scale Video Classification with Convolutional Neural Networks",
CVPR 2014 (https://cs.stanford.edu/people/karpathy/deepvideo/).
"""

from __future__ import annotations

import keras
from keras import layers

from kvid.models.backbones import build_backbone, frame_logits
from kvid.models.layers import (
    SliceAxis,
    check_choice,
    check_input_shape,
    check_int_tuple,
    check_modality_input,
    check_positive_float,
    check_positive_int,
    check_rate,
    conv_bn_act,
    fc_head,
    scaled,
    video_input,
)


def build_single_frame(input_shape=(16, 224, 224, 3), num_classes: int = 101, *,
                       backbone="small_cnn", backbone_weights=None, backbone_trainable: bool = True,
                       small_cnn_widths=(16, 32, 64, 128), input_normalization: str = "imagenet",
                       dropout: float = 0.5, modality: str = "rgb",
                       name: str = "single_frame") -> keras.Model:
    """Single-frame baseline: a 2D CNN scores every frame, the frame logits are averaged.

    It sees no motion: every temporal model in the zoo should beat it on motion-defined
    classes (Karpathy et al. 2014 "single frame").

    ```
    frames [B,T,H,W,C] -> backbone per frame -> GAP -> Dense -> [B,T,K] -> mean over T -> logits [B,K]
    ```

    Args:
        input_shape: ``(T, H, W, C)``.
        num_classes: number of classes.
        backbone, backbone_weights, backbone_trainable, small_cnn_widths, input_normalization:
            see :func:`kvid.models.backbones.build_backbone`.
        dropout: dropout before the logits layer.
        modality: name of the input, ``"rgb"`` (C=3) or ``"flow"`` (C=2).
    """
    input_shape = check_modality_input(input_shape, modality)
    check_positive_int(num_classes, "num_classes")
    check_rate(dropout)

    inputs = video_input(input_shape, modality)
    net = build_backbone(backbone, input_shape[1:], weights=backbone_weights,
                         input_normalization=input_normalization, trainable=backbone_trainable,
                         small_cnn_widths=small_cnn_widths, name="backbone")
    return keras.Model(inputs, frame_logits(net, inputs, num_classes, dropout=dropout), name=name)


# Karpathy et al.'s AlexNet-like tower: (name, filters, kernel, stride, max-pool after).
# BatchNorm replaces the paper's local response normalization.
KARPATHY_CONVS = (("conv1", 96, 11, 3, True), ("conv2", 256, 5, 1, True), ("conv3", 384, 3, 1, False),
                  ("conv4", 384, 3, 1, False), ("conv5", 256, 3, 1, True))
# Temporal (extent, stride) of the first conv layers, per fusion; the rest are per frame.
SLOW_FUSION_TEMPORAL = ((4, 2), (2, 2), (2, 2))


def _karpathy_tower(x, *, temporal, width_multiplier, name):
    """Conv tower on [B, T, H, W, C]; ``temporal[i] = (extent, stride)`` for conv i (valid in time)."""
    for i, (layer, filters, kernel, stride, pool) in enumerate(KARPATHY_CONVS):
        extent, t_stride = temporal[i] if i < len(temporal) else (1, 1)
        extent = min(extent, x.shape[1])
        padding = "valid" if i == 0 else "same"
        if extent > 1 and padding == "same":  # valid in time, same in space
            x = layers.ZeroPadding3D(((0, 0), (kernel // 2,) * 2, (kernel // 2,) * 2),
                                     name=f"{name}_{layer}_pad")(x)
            padding = "valid"
        x = conv_bn_act(x, scaled(filters, width_multiplier), (extent, kernel, kernel),
                        strides=(t_stride, stride, stride), padding=padding, name=f"{name}_{layer}")
        if pool:
            x = layers.MaxPooling3D((1, 3, 3), (1, 2, 2), padding="same", name=f"{name}_{layer}_pool")(x)
    return layers.Flatten(name=f"{name}_flatten")(x)


def _check_fusion_args(input_shape, num_classes, width_multiplier, fc_units, dropout, min_frames=1):
    input_shape = check_input_shape(input_shape, channels=3)
    check_positive_int(num_classes, "num_classes")
    check_int_tuple(fc_units, "fc_units")
    check_rate(dropout)
    check_positive_float(width_multiplier, "width_multiplier")
    if input_shape[0] < min_frames:
        raise ValueError(f"Needs at least {min_frames} frames. Received: input_shape={input_shape}")
    return input_shape


_FUSION_ARGS_DOC = """
    Args:
        input_shape: ``(T, H, W, 3)``; the paper uses 170x170 crops (178x178 for multires).
        num_classes: 487 for Sports-1M.
        width_multiplier: scales every conv's filters (1.0 = paper).
        fc_units: widths of the fully connected layers (4096, 4096 in the paper).
        dropout: after every fully connected layer.
"""


def _fusion_model(name, temporal, input_shape, num_classes, width_multiplier, fc_units, dropout,
                  min_frames=1):
    input_shape = _check_fusion_args(input_shape, num_classes, width_multiplier, fc_units, dropout,
                                     min_frames)
    inputs = video_input(input_shape, "rgb")
    temporal = temporal(input_shape[0]) if callable(temporal) else temporal
    x = _karpathy_tower(inputs, temporal=temporal, width_multiplier=width_multiplier, name="tower")
    return keras.Model(inputs, fc_head(x, num_classes, fc_units=fc_units, dropout=dropout), name=name)


def build_early_fusion(input_shape=(10, 170, 170, 3), num_classes: int = 487, *,
                       width_multiplier: float = 1.0, fc_units=(4096, 4096), dropout: float = 0.5,
                       name: str = "early_fusion") -> keras.Model:
    """Early fusion (Karpathy et al. 2014): the first conv's filters span all T frames.

    ``[B,T,H,W,3] -> conv1 T x 11 x 11 (valid in time: T -> 1) -> 2D tower -> fc6, fc7 -> logits``
    """
    return _fusion_model(name, lambda frames: ((frames, 1),), input_shape, num_classes,
                         width_multiplier, fc_units, dropout)


def build_slow_fusion(input_shape=(10, 170, 170, 3), num_classes: int = 487, *,
                      width_multiplier: float = 1.0, fc_units=(4096, 4096), dropout: float = 0.5,
                      name: str = "slow_fusion") -> keras.Model:
    """Slow fusion (Karpathy et al. 2014): time merged progressively by conv1-3.

    ``10 frames -> conv1 (extent 4, stride 2) -> 4 -> conv2 (2, 2) -> 2 -> conv3 (2, 2) -> 1``;
    the paper's best single model.
    """
    return _fusion_model(name, SLOW_FUSION_TEMPORAL, input_shape, num_classes, width_multiplier,
                         fc_units, dropout)


def build_late_fusion(input_shape=(16, 170, 170, 3), num_classes: int = 487, *,
                      width_multiplier: float = 1.0, fc_units=(4096, 4096), dropout: float = 0.5,
                      name: str = "late_fusion") -> keras.Model:
    """Late fusion (Karpathy et al. 2014): two weight-sharing single-frame towers on the first
    and last frame (15 frames apart at T=16), merged at the first fully connected layer.

    ``frame 0 -> tower \\ concat -> fc6, fc7 -> logits``; ``frame T-1 -> tower /``
    """
    input_shape = _check_fusion_args(input_shape, num_classes, width_multiplier, fc_units, dropout, 2)
    inputs = video_input(input_shape, "rgb")
    frame_input = keras.Input((1, *input_shape[1:]), name="tower_input")
    tower = keras.Model(frame_input, _karpathy_tower(frame_input, temporal=(),
                                                     width_multiplier=width_multiplier, name="tower"),
                        name="tower")
    first = tower(SliceAxis(0, 1, axis=1, name="first_frame")(inputs))
    last = tower(SliceAxis(input_shape[0] - 1, input_shape[0], axis=1, name="last_frame")(inputs))
    x = layers.Concatenate(name="late_concat")([first, last])
    return keras.Model(inputs, fc_head(x, num_classes, fc_units=fc_units, dropout=dropout), name=name)


def build_multires(input_shape=(10, 178, 178, 3), num_classes: int = 487, *,
                   fusion: str = "slow", width_multiplier: float = 1.0, fc_units=(4096, 4096),
                   dropout: float = 0.5, name: str = "multires") -> keras.Model:
    """Multiresolution CNN (Karpathy et al. 2014): fovea and context streams, joined at fc6.

    The fovea stream sees the center crop (H/2 x W/2) at full resolution, the context stream
    the whole frame downsampled 2x; both towers have the same layout, not shared weights.
    ``fusion`` picks their temporal layout: ``"slow"`` or ``"early"`` (with T=1 this is the
    paper's single-frame multires network).
    """
    check_choice(fusion, ("slow", "early"), "fusion")
    input_shape = _check_fusion_args(input_shape, num_classes, width_multiplier, fc_units, dropout)
    _, height, width, _ = input_shape
    temporal = SLOW_FUSION_TEMPORAL if fusion == "slow" else ((input_shape[0], 1),)
    inputs = video_input(input_shape, "rgb")
    fovea = layers.Cropping3D(((0, 0), (height // 4, height - height // 4 - height // 2),
                               (width // 4, width - width // 4 - width // 2)), name="fovea_crop")(inputs)
    context = layers.AveragePooling3D((1, 2, 2), name="context_downsample")(inputs)
    streams = [_karpathy_tower(x, temporal=temporal, width_multiplier=width_multiplier, name=stream)
               for stream, x in (("fovea", fovea), ("context", context))]
    x = layers.Concatenate(name="multires_concat")(streams)
    return keras.Model(inputs, fc_head(x, num_classes, fc_units=fc_units, dropout=dropout), name=name)


for _builder in (build_early_fusion, build_slow_fusion, build_late_fusion, build_multires):
    if _builder.__doc__:  # None under python -OO
        _builder.__doc__ += _FUSION_ARGS_DOC
