"""2D frame backbones for the zoo's per-frame models (single frame, LRCN, TSN, two-stream...).

A backbone is a ``keras.Model`` mapping one frame ``[B, H, W, C]`` to a feature map
``[B, h, w, D]`` (or to a feature vector ``[B, D]`` for SavedModel feature extractors).
:func:`build_backbone` accepts:

- ``"small_cnn"``: a compact conv net (a few 100K parameters at default width) for CPU
  training, demos and tests;
- a ``keras.applications`` name: ``"mobilenet_v2"``, ``"mobilenet_v3_small"``,
  ``"resnet50"``, ``"inception_v3"``, ``"efficientnet_b0"`` (the class names such as
  ``"MobileNetV2"`` also work), built with ``weights=None`` unless a local ``.h5`` /
  ``.weights.h5`` file (or, explicitly, ``"imagenet"``, which downloads) is given;
- a TF-Hub / SavedModel directory, loaded with ``keras.layers.TFSMLayer`` inside
  :class:`SavedModelFeatures` (``hub.KerasLayer`` does not work in Keras 3 functional models);
- a ``keras.Model`` the caller built.

Zoo models receive inputs already normalized by the data pipeline (``"unit"``,
``"symmetric"`` or ``"imagenet"``, see ``kvid.models.registry``); a ``keras.applications``
backbone gets a fixed :class:`~kvid.models.layers.ChannelAffine` in front of it converting
that normalization to the one its pretrained weights expect, so the pipeline's
normalization depends on the model name only, never on the backbone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
from keras import layers

from kvid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATION_STATS, NORMALIZATIONS
from kvid.models.layers import (
    ChannelAffine,
    FoldTime,
    MeanOverAxis,
    UnfoldTime,
    check_choice,
    check_int_tuple,
    classifier_head,
    conv_bn_act,
)

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class ApplicationSpec:
    """How to build one ``keras.applications`` backbone and what input it expects."""

    constructor: str  # attribute of keras.applications
    native_input: str  # "tf" = [-1, 1], "torch" = ImageNet mean/std, "caffe" = BGR - mean, "raw" = [0, 255]
    min_size: int
    extra_kwargs: tuple = ()


APPLICATIONS: dict[str, ApplicationSpec] = {
    "mobilenet_v2": ApplicationSpec("MobileNetV2", "tf", 32),
    "mobilenet_v3_small": ApplicationSpec(
        "MobileNetV3Small", "tf", 32, (("include_preprocessing", False),)
    ),
    "resnet50": ApplicationSpec("ResNet50", "caffe", 32),
    "inception_v3": ApplicationSpec("InceptionV3", "tf", 75),
    "efficientnet_b0": ApplicationSpec("EfficientNetB0", "raw", 32),
}
_ALIASES = {spec.constructor.lower(): key for key, spec in APPLICATIONS.items()}
BACKBONES = ("small_cnn", *APPLICATIONS)


def _canonical(name: str) -> str:
    key = name.lower()
    return _ALIASES.get(key, key)


def _raw_from(normalization: str) -> tuple[list[float], list[float]]:
    """Per-channel (a, b) with raw = a * x + b, raw in [0, 255] RGB."""
    mean, std = NORMALIZATION_STATS[normalization]
    return [255.0 * s for s in std], [255.0 * m for m in mean]


def input_adapter(normalization: str, native_input: str, *, name: str) -> ChannelAffine | None:
    """The fixed layer converting a kvid normalization to a backbone's native input, or None."""
    check_choice(normalization, NORMALIZATIONS, "input_normalization")
    a, b = _raw_from(normalization)
    reverse = native_input == "caffe"
    if reverse:
        a, b = a[::-1], b[::-1]
    if native_input == "tf":
        p, q = [1 / 127.5] * 3, [-1.0] * 3
    elif native_input == "torch":
        p = [1 / (255.0 * s) for s in IMAGENET_STD]
        q = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    elif native_input == "caffe":
        p, q = [1.0] * 3, [-m for m in _CAFFE_MEAN_BGR]
    else:
        p, q = [1.0] * 3, [0.0] * 3
    scale = [pi * ai for pi, ai in zip(p, a)]
    offset = [pi * bi + qi for pi, bi, qi in zip(p, b, q)]
    if not reverse and all(abs(s - 1) < 1e-9 for s in scale) and all(abs(o) < 1e-9 for o in offset):
        return None
    return ChannelAffine(scale, offset, reverse_channels=reverse, name=name)


def build_small_cnn(frame_shape, *, widths=(16, 32, 64, 128), name: str = "small_cnn") -> keras.Model:
    """A compact CNN: one stride-2 3x3 conv-BN-ReLU per width (~100K params at default).

    Not from a paper: it exists so every zoo model trains on a CPU in seconds. Its layers
    are ``block{i}_conv``, ``block{i}_bn``, ``block{i}_relu``.
    """
    widths = check_int_tuple(widths, "widths")
    inputs = keras.Input(shape=frame_shape, name=f"{name}_input")
    x = inputs
    for i, width in enumerate(widths):
        x = conv_bn_act(x, width, 3, strides=2, dims=2, name=f"block{i}")
    return keras.Model(inputs, x, name=name)


@keras.saving.register_keras_serializable(package="kvid")
class SavedModelFeatures(layers.TFSMLayer):
    """A TF-Hub / TF SavedModel feature extractor as a Keras 3 layer.

    Args:
        filepath: SavedModel directory (e.g. an unpacked TF-Hub model).
        call_endpoint: attribute (``"__call__"`` for TF-Hub TF2 models) or signature name
            (``"serving_default"``, or ``"serve"`` for ``model.export()`` artifacts).
        output_key: which output to keep when the endpoint returns a dict (default: the only
            one, or the first in sorted order).

    Loading a ``.keras`` file holding this layer needs ``safe_mode=False`` (it runs the
    SavedModel's graph).
    """

    def __init__(self, filepath, call_endpoint="serving_default", output_key=None, **kwargs):
        super().__init__(filepath, call_endpoint=call_endpoint, **kwargs)
        self.output_key = output_key

    def call(self, inputs, training=False):
        outputs = super().call(inputs, training=training)
        if isinstance(outputs, dict):
            outputs = outputs[self.output_key or sorted(outputs)[0]]
        return outputs

    def get_config(self):
        return {**super().get_config(), "output_key": self.output_key}


def build_backbone(backbone, frame_shape, *, weights=None, input_normalization: str = "unit",
                   trainable: bool = True, name: str = "backbone",
                   small_cnn_widths=(16, 32, 64, 128), saved_model_endpoint: str = "serving_default",
                   saved_model_output_key: str | None = None,
                   output_layer: str | None = None) -> keras.Model:
    """Builds a frame backbone ``[B, H, W, C] -> [B, h, w, D]`` (or ``[B, D]`` for SavedModels).

    Args:
        backbone: ``"small_cnn"``, a ``keras.applications`` name, a SavedModel directory, or a
            ``keras.Model``.
        frame_shape: ``(H, W, C)`` of one frame (C may differ from 3, e.g. stacked flow).
        weights: None (random init), a local ``.h5`` / ``.weights.h5`` file, or ``"imagenet"``
            (downloads; never the default). Only for ``keras.applications`` backbones.
        input_normalization: how the frames are normalized ("unit", "symmetric", "imagenet");
            3-channel inputs to a ``keras.applications`` backbone are converted to its native
            preprocessing.
        trainable: False freezes the backbone (its BatchNorm layers then run in inference mode).
        name: name of the returned model (must be unique inside the enclosing model).
        output_layer: cut the backbone at this layer (e.g. ``"block2_relu"`` of small_cnn, or a
            ``keras.applications`` layer name) to use an intermediate feature map.

    Example:
        >>> net = build_backbone("small_cnn", (64, 64, 3))
        >>> tuple(net.output.shape)
        (None, 4, 4, 128)
    """
    frame_shape = tuple(frame_shape)
    if isinstance(backbone, keras.Model):
        model = backbone
    elif not isinstance(backbone, str):
        raise ValueError(f"`backbone` must be a name, a SavedModel directory or a keras.Model. "
                         f"Received: backbone={backbone!r}")
    elif os.path.isdir(backbone):
        inputs = keras.Input(shape=frame_shape, name=f"{name}_input")
        features = SavedModelFeatures(backbone, call_endpoint=saved_model_endpoint,
                                      output_key=saved_model_output_key, trainable=trainable,
                                      name=f"{name}_savedmodel")(inputs)
        model = keras.Model(inputs, features, name=name)
    else:
        key = _canonical(backbone)
        if key not in BACKBONES:
            raise ValueError(f"`backbone` must be one of {list(BACKBONES)}, a SavedModel directory "
                             f"or a keras.Model. Received: backbone={backbone!r}")
        if weights is not None and weights != "imagenet" and not os.path.isfile(weights):
            raise ValueError(f"`weights` must be None, 'imagenet' or an existing .h5/.weights.h5 "
                             f"file. Received: weights={weights!r}")
        if key == "small_cnn":
            model = build_small_cnn(frame_shape, widths=small_cnn_widths, name=name)
            if weights is not None:
                model.load_weights(weights)
        else:
            model = _build_application(key, frame_shape, weights=weights,
                                       input_normalization=input_normalization, name=name)
    if output_layer is not None:
        try:
            cut = model.get_layer(output_layer).output
        except ValueError:
            raise ValueError(f"The backbone has no layer {output_layer!r}. "
                             f"Received: output_layer={output_layer!r}") from None
        model = keras.Model(model.inputs, cut, name=model.name)
    model.trainable = trainable
    return model


def _build_application(key, frame_shape, *, weights, input_normalization, name):
    spec = APPLICATIONS[key]
    if min(frame_shape[:2]) < spec.min_size:
        raise ValueError(f"{spec.constructor} needs frames of at least {spec.min_size}x{spec.min_size}. "
                         f"Received: frame_shape={frame_shape}")
    inputs = keras.Input(shape=frame_shape, name=f"{name}_input")
    x = inputs
    adapter = input_adapter(input_normalization, spec.native_input, name=f"{name}_adapter")
    if frame_shape[-1] == 3 and adapter is not None:
        x = adapter(inputs)
    constructor = getattr(keras.applications, spec.constructor)
    return constructor(include_top=False, weights=weights, input_tensor=x, name=name,
                       **dict(spec.extra_kwargs))


def frame_features(backbone_model: keras.Model, x, *, name: str, pool: bool = True):
    """Runs a frame backbone once over all frames of ``x`` [B, T, H, W, C].

    Returns ``[B, T, D]`` when ``pool`` (global average over space) or when the backbone
    already returns vectors, else ``[B, T, h, w, D]``.
    """
    y = backbone_model(FoldTime(name=f"{name}_fold")(x))
    if pool and len(y.shape) == 4:
        y = layers.GlobalAveragePooling2D(name=f"{name}_pool")(y)
    return UnfoldTime(x.shape[1], name=f"{name}_unfold")(y)


def frame_feature_maps(backbone_model: keras.Model, x, *, model: str, name: str = "frames"):
    """Per-frame feature maps ``[B, T, h, w, D]``; ValueError if the backbone only gives vectors."""
    maps = frame_features(backbone_model, x, name=name, pool=False)
    if len(maps.shape) != 5:
        raise ValueError(f"{model} needs a backbone that returns a spatial feature map. Received: "
                         f"backbone={backbone_model.name!r} with output shape {backbone_model.output.shape}")
    return maps


def frame_logits(backbone_model: keras.Model, x, num_classes: int, *, dropout: float, prefix: str = ""):
    """Per-frame (or per-snippet) logits averaged over time: ``[B, T, ...] -> [B, num_classes]``.

    The single-frame baseline, each stream of two-stream and TSN's segmental consensus.
    """
    features = frame_features(backbone_model, x, name=f"{prefix}frames")
    scores = classifier_head(features, num_classes, dropout=dropout, name=f"{prefix}frame_logits")
    return MeanOverAxis(axis=1, dtype="float32", name=f"{prefix}logits")(scores)
