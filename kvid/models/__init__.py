"""The kvid model zoo: action-recognition architectures as Keras 3 functional builders.

Build any of them by name with :func:`build_model`; :data:`MODELS` maps each name to its
:class:`ModelInfo` (builder, modality, input normalization, reference input, paper).
"""

from kvid.models.registry import MODELS, ModelInfo, build_model, get_model_info, list_models
from kvid.models.recurrent import clip_logits

__all__ = ["MODELS", "ModelInfo", "build_model", "clip_logits", "get_model_info", "list_models"]
