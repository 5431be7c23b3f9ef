"""The kvid model zoo: action-recognition architectures as Keras 3 functional builders.

Build any of them by name with :func:`build_model`; :data:`MODELS` maps each name to its
:class:`ModelInfo` (builder, modality, input normalization, reference input, paper);
:func:`count_gflops` counts a model's multiply-accumulates per clip.
See docs/models.md.
"""

from kvid.models.attention import attention_model
from kvid.models.flops import count_gflops
from kvid.models.inflate import inflate_2d_weights
from kvid.models.multigrid import MultigridSchedule, fit_multigrid
from kvid.models.recurrent import clip_logits
from kvid.models.registry import MODELS, ModelInfo, build_model, get_model_info, list_models



def __getattr__(name: str):
    # kvid.models.load_pretrained is kvid.pretrained's (which imports this package itself).
    if name == "load_pretrained":
        from kvid.pretrained import load_pretrained

        return load_pretrained
    raise AttributeError(f"module 'kvid.models' has no attribute {name!r}")


__all__ = [
    "MODELS",
    "ModelInfo",
    "MultigridSchedule",
    "attention_model",
    "build_model",
    "clip_logits",
    "count_gflops",
    "fit_multigrid",
    "get_model_info",
    "inflate_2d_weights",
    "list_models",
    "load_pretrained",
]
