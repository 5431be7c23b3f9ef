"""Model zoo benchmark: parameters, GFLOPs and CPU inference time, one JSON line per model.

    python benchmarks/bench_models.py                     # every model at its reference input
    python benchmarks/bench_models.py --models c3d,x3d    # a subset
    python benchmarks/bench_models.py --fast              # tiny configurations (smoke run)
    python benchmarks/bench_models.py --train             # + training clips/s (float32 and
                                                          #   mixed precision; meant for a GPU)

``gflops`` counts multiply-accumulates x 1e-9, the convention of the video papers
(C3D, I3D, SlowFast, X3D report "FLOPs" that are multiply-adds); the TensorFlow profiler's
count of the frozen inference graph (which counts a multiply-add as 2) is halved
(:func:`kvid.models.count_gflops`, in kvid/models/flops.py).
``cpu_ms_per_clip`` is the median over ``--repeats`` calls of the compiled forward pass on
one clip, after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kvid.models import MODELS, build_model, count_gflops, list_models  # noqa: E402

tf.get_logger().setLevel("ERROR")


def _inputs(shape, batch: int = 1):
    rng = np.random.default_rng(0)
    if isinstance(shape, dict):
        return {k: rng.uniform(-1, 1, (batch, *v)).astype("float32") for k, v in sorted(shape.items())}
    return rng.uniform(-1, 1, (batch, *shape)).astype("float32")


def cpu_ms_per_clip(model: keras.Model, shape, repeats: int) -> float:
    forward = tf.function(lambda x: model(x, training=False), jit_compile=False)
    x = _inputs(shape)
    forward(x)  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(forward(x))
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def train_clips_per_second(name, shape, kwargs, policy: str, batch: int, steps: int) -> float:
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(name, shape, MODELS[name].reference_num_classes, **kwargs)
        model.compile(keras.optimizers.SGD(0.01),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = _inputs(shape, batch), np.zeros((batch,), "int32")
        model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        return batch * steps / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def bench(name: str, *, fast: bool, repeats: int, train: bool, batch: int, steps: int) -> dict:
    info = MODELS[name]
    if fast:
        shape, kwargs, classes = info.tiny_input_shape, dict(info.tiny_kwargs), 3
    else:
        shape, kwargs = info.reference_input_shape, dict(info.reference_kwargs)
        classes = info.reference_num_classes
    start = time.perf_counter()
    model = build_model(name, shape, classes, **kwargs)
    build_s = time.perf_counter() - start
    result = {
        "model": name,
        "config": "tiny" if fast else "reference",
        "input_shape": shape,
        "num_classes": classes,
        "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "published_params": info.published_params,
        "gflops": float(f"{count_gflops(model, shape):.4g}"),
        "cpu_ms_per_clip": round(cpu_ms_per_clip(model, shape, repeats), 2),
        "build_s": round(build_s, 2),
        "cpu_threads": os.cpu_count(),
        "gpu": bool(tf.config.list_physical_devices("GPU")),
    }
    if train:
        mixed = "mixed_float16" if result["gpu"] else "mixed_bfloat16"
        result["train_clips_per_s_float32"] = round(
            train_clips_per_second(name, shape, kwargs, "float32", batch, steps), 2)
        result[f"train_clips_per_s_{mixed}"] = round(
            train_clips_per_second(name, shape, kwargs, mixed, batch, steps), 2)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--fast", action="store_true", help="tiny configurations instead of reference")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes per model")
    parser.add_argument("--train", action="store_true", help="also time training (float32, mixed)")
    parser.add_argument("--batch", type=int, default=8, help="training batch size")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n] or list_models()
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; valid: {', '.join(list_models())}")
    for name in names:
        print(json.dumps(bench(name, fast=args.fast, repeats=args.repeats, train=args.train,
                               batch=args.batch, steps=args.steps)), flush=True)
        keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    sys.exit(main())
