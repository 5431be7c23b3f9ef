"""FLOPs of a Keras model, counted the way the video papers count them.

:func:`count_gflops` returns multiply-accumulates x 1e-9 for one clip, the convention of the
video papers (C3D, I3D, SlowFast, X3D report "FLOPs" that are multiply-adds): the TensorFlow
profiler's count of the frozen inference graph (which counts a multiply-add as 2 FLOPs) is
halved. Ops the profiler counts as one FLOP per element (a bias add, for instance) thus count
as half a multiply-accumulate each; they are a rounding error next to the convolutions and
matrix products. ``benchmarks/bench_models.py`` and notebooks/02_model_zoo.ipynb use it.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def _specs(shape):
    """One clip (batch 1) of ``shape``; a dict of shapes for multi-input (two-stream) models."""
    if isinstance(shape, dict):
        return {k: tf.TensorSpec((1, *v), tf.float32, name=k) for k, v in sorted(shape.items())}
    return tf.TensorSpec((1, *shape), tf.float32)


def count_gflops(model: keras.Model, shape) -> float:
    """Multiply-accumulates (x 1e-9) of one clip through the frozen inference graph.

    ``shape`` is the input shape without the batch axis, ``(T, H, W, C)`` say, or a dict of
    them keyed by input name for models with several inputs.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2_as_graph,
    )

    forward = tf.function(lambda x: model(x, training=False)).get_concrete_function(_specs(shape))
    frozen, _ = convert_variables_to_constants_v2_as_graph(forward)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(),
                                            cmd="op", options=options)
    return profile.total_float_ops / 2e9
