"""The model zoo's registry: one plain dict from model name to :class:`ModelInfo`.

``kvid train --model NAME``, the TFX Trainer and notebooks all build models through
:func:`build_model`; the data pipeline reads :attr:`ModelInfo.modality` and
:attr:`ModelInfo.normalization` to feed a model the inputs it expects.

Normalizations (applied by the data pipeline, never inside the model) are named in
:data:`kvid.data.preprocess.NORMALIZATION_STATS`: ``"unit"`` ([0, 1]), ``"symmetric"``
([-1, 1], also flow's: the x/y displacement clipped to [-20, 20] pixels and divided by 20),
``"imagenet"``, and the Kinetics statistics of torchvision's (``"kinetics"``) and
PyTorchVideo's (``"kinetics_ptv"``) video models, which their converted checkpoints need.

For ``"rgb+flow"`` models the normalization names the RGB input's; flow is always
``"symmetric"``. Models that convert published checkpoints (:mod:`kvid.pretrained`) are
declared as ``ZOO`` dicts next to their builders and merged in below.
"""

from __future__ import annotations

import inspect

import keras

from kvid.models import (
    actionvlad,
    attention,
    c3d,
    fstcn,
    fusion,
    hidden_two_stream,
    i3d,
    movinet,
    mvit,
    r2plus1d,
    recurrent,
    resnet3d,
    s3d,
    slowfast,
    swin3d,
    t3d,
    tsn,
    two_stream,
    vivit,
    x3d,
)
from kvid.models.info import MODALITIES, PRESETS, ModelInfo, make_info

__all__ = ["MODALITIES", "MODELS", "PRESETS", "ModelInfo", "build_model", "get_model_info",
           "list_models", "make_info"]

_TINY_CNN = {"small_cnn_widths": (8, 16), "dropout": 0.0}
_TINY_FUSION = {"width_multiplier": 1 / 16, "fc_units": (16,), "dropout": 0.0}
_KARPATHY = "Karpathy et al., Large-scale Video Classification with CNNs, CVPR 2014"
_LRCN = "Donahue et al., Long-term Recurrent Convolutional Networks, CVPR 2015"
_TWO_STREAM = {"rgb": (2, 32, 32, 3), "flow": (2, 32, 32, 2)}
# build_model passes these itself; in kwargs they would collide with its own arguments.
_SET_BY_BUILD_MODEL = ("input_shape", "num_classes")
# The recurrent variants forward **kwargs to build_recurrent, which fixes the rest.
_RECURRENT_KEYWORDS = tuple(
    p for p in inspect.signature(recurrent.build_recurrent).parameters
    if p not in (*_SET_BY_BUILD_MODEL, "cell", "num_layers", "bidirectional"))


def _frames_info(builder, description, paper, **kwargs) -> ModelInfo:
    """A model over per-frame 2D CNN features (UCF101-style reference, 224x224 frames)."""
    kwargs.setdefault("tiny_kwargs", _TINY_CNN)
    kwargs.setdefault("reference_num_classes", 101)
    return make_info(builder, "rgb", description, paper, kwargs.pop("reference_input_shape",
                                                                   (16, 224, 224, 3)), **kwargs)


MODELS: dict[str, ModelInfo] = {
    "single_frame": _frames_info(
        fusion.build_single_frame, "2D CNN per frame, frame logits averaged: the no-motion baseline.",
        _KARPATHY, temporal=False),
    "early_fusion": make_info(
        fusion.build_early_fusion, "rgb", "First conv spans all frames (Karpathy early fusion).",
        _KARPATHY, (10, 170, 170, 3), reference_num_classes=487, tiny_kwargs=_TINY_FUSION),
    "late_fusion": make_info(
        fusion.build_late_fusion, "rgb",
        "Two shared single-frame towers 15 frames apart, merged at fc6.", _KARPATHY,
        (16, 170, 170, 3), reference_num_classes=487, tiny_kwargs=_TINY_FUSION),
    "slow_fusion": make_info(
        fusion.build_slow_fusion, "rgb", "Time merged progressively by conv1-3 (4 -> 2 -> 1).",
        _KARPATHY, (10, 170, 170, 3), reference_num_classes=487, tiny_kwargs=_TINY_FUSION),
    "multires": make_info(
        fusion.build_multires, "rgb", "Fovea (center, full res) + context (downsampled) towers.",
        _KARPATHY, (10, 178, 178, 3), reference_num_classes=487, tiny_kwargs=_TINY_FUSION),
    "cnn_lstm": _frames_info(recurrent.build_cnn_lstm, "LRCN: per-frame CNN features into an LSTM.",
                             _LRCN, tiny_kwargs={**_TINY_CNN, "units": 8},
                             keywords=_RECURRENT_KEYWORDS),
    "cnn_gru": _frames_info(recurrent.build_cnn_gru, "LRCN with a GRU.", _LRCN,
                            tiny_kwargs={**_TINY_CNN, "units": 8}, keywords=_RECURRENT_KEYWORDS),
    "cnn_bilstm": _frames_info(recurrent.build_cnn_bilstm, "LRCN with a bidirectional LSTM.", _LRCN,
                               tiny_kwargs={**_TINY_CNN, "units": 8},
                               keywords=_RECURRENT_KEYWORDS),
    "cnn_stacked_lstm": _frames_info(
        recurrent.build_cnn_stacked_lstm, "Two stacked LSTMs over per-frame CNN features.",
        "Ng et al., Beyond Short Snippets, CVPR 2015", tiny_kwargs={**_TINY_CNN, "units": 8},
        keywords=_RECURRENT_KEYWORDS),
    "lrcn_soft_attention": _frames_info(
        attention.build_lrcn_soft_attention,
        "LSTM with soft attention over the KxK locations of each frame's feature map.",
        "Sharma et al., Action Recognition using Visual Attention, ICLR-W 2016",
        reference_input_shape=(30, 224, 224, 3),
        tiny_kwargs={**_TINY_CNN, "units": 8, "attention_penalty": 0.01}),
    "c3d": make_info(
        c3d.build_c3d, "rgb", "8 conv layers 3x3x3, 5 pools, fc6/fc7 4096.",
        "Tran et al., Learning Spatiotemporal Features with 3D ConvNets, ICCV 2015",
        (16, 112, 112, 3), reference_num_classes=487, published_params=79e6,
        params_source="Carreira & Zisserman 2017, Table 1: their C3D-style 3D-ConvNet, 79M "
                      "(400 classes); no total found for the C3D paper's own net",
        tiny_kwargs=_TINY_FUSION),
    "i3d": make_info(
        i3d.build_i3d, "rgb", "Inflated Inception-V1 (BN); no temporal pooling in pool2/pool3.",
        "Carreira & Zisserman, Quo Vadis, Action Recognition?, CVPR 2017", (64, 224, 224, 3),
        normalization="symmetric", published_params=12.5e6,
        params_source="Carreira & Zisserman 2017, Table 1: Two-Stream I3D 25M; 12.5M is half of "
                      "that (one stream), not a figure printed in the paper",
        tiny_kwargs={"width_multiplier": 1 / 16, "dropout": 0.0}),
    "two_stream": make_info(
        two_stream.build_two_stream, "rgb+flow",
        "RGB frame CNN + stacked optical flow CNN, late score fusion.",
        "Simonyan & Zisserman, Two-Stream ConvNets for Action Recognition, NeurIPS 2014",
        {"rgb": (1, 224, 224, 3), "flow": (10, 224, 224, 2)}, reference_num_classes=101,
        tiny_input_shape=_TWO_STREAM, tiny_kwargs=_TINY_CNN),
    "two_stream_fusion": make_info(
        two_stream.build_two_stream_fusion, "rgb+flow",
        "RGB and flow feature maps fused by 3D conv + 3D pooling at a chosen layer.",
        "Feichtenhofer et al., Convolutional Two-Stream Network Fusion, CVPR 2016",
        {"rgb": (5, 224, 224, 3), "flow": (50, 224, 224, 2)}, reference_num_classes=101,
        tiny_input_shape={"rgb": (2, 32, 32, 3), "flow": (4, 32, 32, 2)},
        tiny_kwargs={**_TINY_CNN, "flow_length": 2}),
    "tsn": _frames_info(
        tsn.build_tsn, "K sparse snippets through one shared CNN, average consensus.",
        "Wang et al., Temporal Segment Networks, ECCV 2016", reference_input_shape=(3, 224, 224, 3),
        temporal=False, tiny_input_shape=(3, 32, 32, 3)),
    "fstcn": _frames_info(
        fstcn.build_fstcn, "2D spatial conv layers, then a temporal path of 3x1x1 convs on "
        "feature differences, and a spatial path.",
        "Sun et al., Human Action Recognition using Factorized Spatio-Temporal ConvNets, ICCV 2015",
        reference_input_shape=(16, 204, 204, 3), tiny_kwargs={**_TINY_CNN, "temporal_channels": 8}),
    "r2plus1d": make_info(
        r2plus1d.build_r2plus1d, "rgb", "R(2+1)D-18: ResNet with 3D convs split into 2D + 1D.",
        "Tran et al., A Closer Look at Spatiotemporal Convolutions, CVPR 2018", (16, 112, 112, 3),
        published_params=31.505e6,
        params_source="torchvision R2Plus1D_18_Weights.KINETICS400_V1 meta num_params 31,505,325 "
                      "(the paper's own figure was not re-checked)",
        tiny_kwargs={"depth": 10, "widths": (4, 8, 8, 16)}),
    "t3d": make_info(
        t3d.build_t3d, "rgb", "3D DenseNet-121 with temporal transition layers (depths 1, 3, 6).",
        "Diba et al., Temporal 3D ConvNets, arXiv 2017", (32, 224, 224, 3),
        tiny_kwargs={"blocks": (1, 1), "growth_rate": 4, "init_features": 8}),
    "actionvlad": _frames_info(
        actionvlad.build_actionvlad, "Trainable VLAD pooling of conv descriptors over space and time.",
        "Girdhar et al., ActionVLAD, CVPR 2017", reference_input_shape=(25, 224, 224, 3),
        tiny_input_shape=(3, 32, 32, 3), tiny_kwargs={**_TINY_CNN, "num_clusters": 4}),
    "hidden_two_stream": _frames_info(
        hidden_two_stream.build_hidden_two_stream,
        "MotionNet learns flow from frames (unsupervised loss) for a temporal stream.",
        "Zhu et al., Hidden Two-Stream ConvNets for Action Recognition, ACCV 2018",
        reference_input_shape=(11, 224, 224, 3), tiny_input_shape=(3, 32, 32, 3),
        tiny_kwargs={**_TINY_CNN, "motionnet_widths": (8, 16)}),
    "slowfast": make_info(
        slowfast.build_slowfast, "rgb", "SlowFast R50 4x16: slow and fast pathways, lateral links.",
        "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019",
        (32, 224, 224, 3), published_params=34.48e6,
        params_source="pytorchvideo model zoo (docs/source/model_zoo.md), SlowFast R50 4x16: "
                      "34.48M (34.57M is its 8x8 entry, 7x1x1 fusion kernel; 4x16 uses 5x1x1)",
        tiny_input_shape=(8, 32, 32, 3),
        tiny_kwargs={"width": 8, "beta_inv": 4, "alpha": 4, "blocks": (1, 1, 1, 1), "dropout": 0.0}),
    "x3d": make_info(
        x3d.build_x3d, "rgb", "X3D-M (variant= XS, S, M, L): depthwise 3D bottlenecks with SE.",
        "Feichtenhofer, X3D: Expanding Architectures for Efficient Video Recognition, CVPR 2020",
        (16, 224, 224, 3), published_params=3.79e6,
        params_source="pytorchvideo model zoo (docs/source/model_zoo.md), X3D-M: 3.79M "
                      "(PySlowFast MODEL_ZOO.md: 3.8M); the paper's Table 3 figure not re-checked",
        tiny_kwargs={"width_multiplier": 0.25, "depth_factor": 0.2, "head_width": 16,
                     "dropout": 0.0}),
    "conv3d_attention": make_info(
        attention.build_conv3d_attention, "rgb",
        "R3D trunk keeping time, pooled by additive temporal attention.",
        "Bahdanau et al. 2015 attention over R3D (Tran et al. 2018) features", (16, 112, 112, 3),
        tiny_input_shape=(4, 16, 16, 3), tiny_kwargs={"depth": 10, "widths": (4, 4, 8, 8),
                                                      "attention_units": 4, "dropout": 0.0}),
    "vivit": make_info(
        vivit.build_vivit, "rgb", "ViViT-B factorised encoder: spatial ViT per frame, temporal transformer.",
        "Arnab et al., ViViT: A Video Vision Transformer, ICCV 2021", (32, 224, 224, 3),
        normalization="symmetric", published_params=115.1e6,
        params_source="Arnab et al. 2021, Table 2: Model 2 (factorised encoder), ViViT-B: 115.1M",
        tiny_kwargs={"tubelet": (2, 16, 16), "hidden": 16, "heads": 2, "mlp": 32,
                     "spatial_layers": 1, "temporal_layers": 1}),
}

# Variants that convert published checkpoints (kvid.pretrained), declared next to their builders.
for _module in (r2plus1d, s3d, x3d, resnet3d, i3d, swin3d, slowfast, mvit, movinet):
    MODELS.update(_module.ZOO)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(MODELS)


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; raises ValueError listing valid names if unknown."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown model. Valid names: {', '.join(list_models())}. "
                         f"Received: name={name!r}") from None


def preset_kwargs(name: str, preset: str) -> dict:
    """Builder kwargs of a named configuration: ``"paper"`` (the published one) or
    ``"tiny"`` (a few thousand parameters: CPU runs, tests, synthetic data)."""
    info = get_model_info(name)
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset. Valid presets: {', '.join(PRESETS)}. "
                         f"Received: preset={preset!r}")
    return dict(info.reference_kwargs if preset == "paper" else info.tiny_kwargs)


def builder_keywords(name: str) -> tuple[str, ...] | None:
    """The keyword arguments ``name``'s builder accepts besides ``input_shape`` and
    ``num_classes`` (None when its signature has ``**kwargs`` and the registry does not
    declare them)."""
    info = get_model_info(name)
    if info.keywords is not None:
        return info.keywords
    params = inspect.signature(info.builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params
                 if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                               inspect.Parameter.KEYWORD_ONLY)
                 and p.name not in _SET_BY_BUILD_MODEL)


def check_kwargs(name: str, kwargs) -> dict:
    """``kwargs`` if ``name``'s builder takes every one of them, else ValueError listing
    the valid ones: ``--model-args '{"nope": 1}'`` fails before any data is read, in words."""
    get_model_info(name)
    if not isinstance(kwargs, dict):
        raise ValueError(f"model kwargs must be a dict of builder keyword arguments. "
                         f"Received: kwargs={kwargs!r}")
    valid = builder_keywords(name)
    taken = set(_SET_BY_BUILD_MODEL) & set(kwargs)
    if taken:
        raise ValueError(f"{', '.join(sorted(taken))} cannot be a model keyword argument: "
                         "kvid sets it from the data (--clip-frames, --image-size, the "
                         f"labels). Received: kwargs={kwargs!r}")
    unknown = sorted(map(str, (k for k in kwargs if valid is not None and k not in valid)))
    if unknown:
        raise ValueError(f"Unknown keyword argument{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)} for model {name!r}. Valid keyword arguments: "
                         f"{', '.join(valid)}. Received: kwargs={kwargs!r}")
    return kwargs


def build_model(name: str, /, input_shape=None, num_classes: int | None = None, *,
                preset: str | None = None, **kwargs) -> keras.Model:
    """Builds the registered model ``name`` (uncompiled, returns logits).

    ``input_shape`` and ``num_classes`` default to the paper's reference configuration.
    ``preset`` (``"paper"`` or ``"tiny"``) fills builder kwargs; explicit kwargs win.
    Unknown kwargs, or values of the wrong type (a builder's TypeError), raise ValueError
    naming the builder's valid keyword arguments. ``name`` is positional-only, so a builder's
    own ``name`` keyword (the Keras model's name) reaches the builder.

    Example:
        >>> model = build_model("cnn_gru", input_shape=(8, 64, 64, 3), num_classes=4)
        >>> tuple(model.output.shape)
        (None, 4)
    """
    info = get_model_info(name)
    if preset is not None:
        kwargs = {**preset_kwargs(name, preset), **kwargs}
    if input_shape is None:
        input_shape = info.reference_input_shape
        kwargs = {**info.reference_kwargs, **kwargs}
    if num_classes is None:
        num_classes = info.reference_num_classes
    check_kwargs(name, kwargs)
    try:
        return info.builder(input_shape=input_shape, num_classes=num_classes, **kwargs)
    except TypeError as e:  # a value of the wrong type deep in a layer: say which arguments
        valid = builder_keywords(name)
        raise ValueError(f"Model {name!r} could not be built with these keyword arguments "
                         f"({e}). Valid keyword arguments: "
                         f"{', '.join(valid) if valid is not None else 'see its builder'}. "
                         f"Received: kwargs={kwargs!r}") from e
