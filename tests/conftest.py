"""Imported before any test module: kvid sets TensorFlow's CPU options (oneDNN) before
TensorFlow loads, as the console script and the pipeline file do (kvid/__init__.py)."""

import kvid  # noqa: F401
