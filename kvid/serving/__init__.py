"""Serving: a TF-Serving-compatible local server (REST + gRPC), clients, and CLI hooks.

Imports are lazy so that ``kvid --help`` and REST-only clients do not load TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Client": "kvid.serving.client",
    "configure_predict_parser": "kvid.serving.client",
    "predict_command": "kvid.serving.client",
    "ServingError": "kvid.serving.errors",
    "Server": "kvid.serving.server",
    "start_server": "kvid.serving.server",
    "configure_serve_parser": "kvid.serving.flags",
    "serve_command": "kvid.serving.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kvid.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
