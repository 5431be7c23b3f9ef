"""What the rest of kvid needs to know about a zoo model (:class:`ModelInfo`).

Its own module so that model modules can declare their registry entries (a ``ZOO`` dict)
next to their builders without importing the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from kvid.data.preprocess import NORMALIZATIONS

MODALITIES = ("rgb", "flow", "rgb+flow")
PRESETS = ("paper", "tiny")


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of kvid needs to know about one zoo model.

    Attributes:
        builder: ``build_<name>(input_shape=..., num_classes=..., **kwargs) -> keras.Model``.
        modality: ``"rgb"``, ``"flow"`` or ``"rgb+flow"`` (a dict input ``{"rgb", "flow"}``).
        normalization: a name in :data:`kvid.data.preprocess.NORMALIZATION_STATS`
            (``"unit"``, ``"symmetric"``, ``"imagenet"``, ``"kinetics"``, ...).
        reference_input_shape: the paper's input ``(T, H, W, C)`` (a dict for two inputs).
        temporal: whether the model can use motion (False for single-frame models).
        description: one line.
        paper: citation of the paper the architecture comes from.
        reference_num_classes: classes of the dataset the published figures refer to.
        reference_kwargs: builder kwargs of the paper's configuration (besides the defaults).
        published_params: published parameter count (None where the paper gives none).
        params_source: where ``published_params`` comes from.
        tiny_input_shape, tiny_kwargs: a configuration small enough for CPU tests.
        fps: frame rate the source's training recipe sampled clips at (None: the data's).
        keywords: the builder's keyword arguments where its signature hides them behind
            ``**kwargs`` (None: read from the signature), so unknown ones are refused by name.
    """

    builder: Callable[..., keras.Model]
    modality: str
    normalization: str
    reference_input_shape: tuple | dict
    temporal: bool
    description: str
    paper: str = ""
    reference_num_classes: int = 400
    reference_kwargs: dict = field(default_factory=dict)
    published_params: float | None = None
    params_source: str = ""
    tiny_input_shape: tuple | dict = (4, 32, 32, 3)
    tiny_kwargs: dict = field(default_factory=dict)
    keywords: tuple[str, ...] | None = None
    fps: float | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"`modality` must be one of {MODALITIES}. Received: modality={self.modality!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalization: one of {NORMALIZATIONS}. "
                             f"Received: normalization={self.normalization!r}")


def make_info(builder, modality, description, paper, reference_input_shape, *, temporal=True,
              normalization="imagenet", reference_num_classes=400,
              tiny_input_shape=(4, 32, 32, 3), tiny_kwargs=None, **kwargs) -> ModelInfo:
    """A :class:`ModelInfo` with the zoo's usual defaults (keyword arguments as its fields)."""
    return ModelInfo(builder=builder, modality=modality, normalization=normalization,
                     reference_input_shape=reference_input_shape, temporal=temporal,
                     description=description, paper=paper,
                     reference_num_classes=reference_num_classes, tiny_input_shape=tiny_input_shape,
                     tiny_kwargs=dict(tiny_kwargs or {}), **kwargs)
