"""Converted models vs their reference implementations: one JSON line per model.

    python benchmarks/bench_pretrained.py                         # every importer
    python benchmarks/bench_pretrained.py --models torchvision:r3d_18,pytorchvideo:x3d_m
    python benchmarks/bench_pretrained.py --threads 2 --repeats 5

For each importer: a reference with random weights (its own library, eval mode) is saved
as its publisher saves it and converted by ``kvid.pretrained.load_pretrained`` at the
recipe's input size; then both run the same clip. ``cpu_ms_kvid`` / ``cpu_ms_reference``
are medians over ``--repeats`` forward passes of one clip after a warm-up, with the same
thread count for TensorFlow and torch; ``ratio`` = kvid / reference (goal <= 1.0).
``max_abs_diff`` is the parity of the logits (with plain random weights, deep residual nets'
logits reach ~1e3, so compare it with ``max_abs_logit``; the parity tests scale them as a
trained net is); ``convert_s`` is reading + building + assigning.
Needs the conversion extra (``bash scripts/install.sh --convert``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _median_ms(fn, repeats: int) -> float:
    fn()  # trace / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 1)


def bench(importer, repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf
    import torch

    from kvid.models import count_gflops, get_model_info
    from kvid.pretrained import random_clip
    from kvid.pretrained.parity import check_parity

    shape = tuple(get_model_info(importer.name).reference_input_shape)
    with tempfile.TemporaryDirectory() as folder:
        result = check_parity(importer, shape, folder)
    model, module = result.pop("keras_model"), result.pop("reference")
    clip = random_clip(shape, seed=1)
    forward = tf.function(lambda x: model(x, training=False))
    kvid_ms = _median_ms(lambda: np.asarray(forward(clip)), repeats)
    inputs = importer.reference_inputs(clip)
    fresh = (lambda: list(inputs)) if isinstance(inputs, list) else (lambda: inputs)
    with torch.no_grad():  # a fresh list: PyTorchVideo's multipathway blocks overwrite it
        ref_ms = _median_ms(lambda: module(fresh()), repeats)
    return {**result, "params": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "gflops": round(count_gflops(model, shape), 2),
            "published_top1": importer.top1, "cpu_ms_kvid": kvid_ms, "cpu_ms_reference": ref_ms,
            "ratio": round(kvid_ms / ref_ms, 2), "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated importer specs (default: all)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")

    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(args.threads)
    from kvid.pretrained import IMPORTERS, get_importer

    specs = args.models.split(",") if args.models else sorted(IMPORTERS)
    importers = [get_importer(s) for s in specs]
    for importer in importers:
        if importer.reference is None:
            print(json.dumps({"model": importer.spec, "skipped": "no torch reference"}))
            continue
        print(json.dumps(bench(importer, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
