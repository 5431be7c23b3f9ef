"""Streaming speed of MoViNet A0-Stream, frame by frame, on one CPU thread: kvid's Keras
step model (a compiled tf.function), its TF Lite float32 / int8 exports in the interpreter,
against TF Model Garden's own MoViNet (tf-models-official, the convert extra) stepping the
same way in the same run, and the published 16 ms (MoViNet's README: A0-Stream, TF Lite,
one x86 core); then the per-frame latency through ``kvid serve``'s stream sessions with
``--streams`` clients at once. Prints one JSON line.

    python benchmarks/bench_streaming.py                 # 172 px, as published
    python benchmarks/bench_streaming.py --size 64 --tflite none --frames 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PUBLISHED_MS = 16.0  # MoViNet README: A0-Stream TF Lite on one x86 CPU core


def _args(argv=None):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from kvid.cliargs import OneLineParser, positive_int

    p = OneLineParser(prog="bench_streaming", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=positive_int, default=172, help="frame side (A0: 172)")
    p.add_argument("--frames", type=positive_int, default=30, help="timed steps per engine")
    p.add_argument("--warmup", type=positive_int, default=3)
    p.add_argument("--tflite", default="float32,int8",
                   help="TF Lite kinds to time, comma-separated, or none")
    p.add_argument("--streams", type=positive_int, default=8,
                   help="concurrent stream sessions through kvid serve (0 frames: off)")
    p.add_argument("--session-frames", type=positive_int, default=20,
                   help="frames each session sends")
    p.add_argument("--no-reference", action="store_true",
                   help="skip tf-models-official (when the convert extra is absent)")
    return p.parse_args(argv)


def _per_frame_ms(step, frames, warmup: int) -> float:
    """Median ms of ``step(frame)`` over the frames after ``warmup`` untimed ones."""
    import numpy as np

    for f in frames[:warmup]:
        step(f)
    times = []
    for f in frames[warmup:]:
        start = time.perf_counter()
        step(f)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv=None) -> int:
    args = _args(argv)
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from kvid.data import InputConfig
    from kvid.models.movinet import build_movinet, build_movinet_step, initial_states
    from kvid.train.export import Member, step_outputs

    size, n = args.size, args.warmup + args.frames
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (n, 1, 1, size, size, 3)).astype("float32")
    result = {"bench": "streaming", "model": "movinet_a0_stream", "size": size,
              "threads": 1, "frames": args.frames, "published_ms": PUBLISHED_MS}

    keras.utils.set_random_seed(0)
    model = build_movinet((None, size, size, 3), 600, model_id="a0", causal=True, dropout=0.0)
    member = Member(model, InputConfig(8, (size, size)))
    step = build_movinet_step(model, (size, size))
    state = {"s": initial_states(step)}
    run = tf.function(lambda x, s: step_outputs(member, step, x, s))

    def keras_step(frame):
        probs, state["s"] = run(tf.constant(frame), state["s"])
        return probs

    result["keras_ms"] = _per_frame_ms(keras_step, pixels, args.warmup)
    result["keras_traces"] = run.experimental_get_tracing_count()  # 1: no retracing

    if not args.no_reference:
        from official.projects.movinet.modeling import movinet, movinet_model

        backbone = movinet.Movinet(model_id="a0", causal=True, use_external_states=True)
        ref = movinet_model.MovinetClassifier(backbone, num_classes=600, output_states=True)
        ref.build([1, 1, size, size, 3])
        ref_state = {"s": ref.init_states(tf.constant([1, 1, size, size, 3]))}
        ref_run = tf.function(lambda x, s: ref({**s, "image": x}))

        def reference_step(frame):
            logits, ref_state["s"] = ref_run(tf.constant(frame / np.float32(255)),
                                             ref_state["s"])
            return logits

        result["reference_ms"] = _per_frame_ms(reference_step, pixels, args.warmup)
        result["reference_traces"] = ref_run.experimental_get_tracing_count()
        result["keras_vs_reference"] = result["keras_ms"] / result["reference_ms"]

    kinds = [k for k in args.tflite.split(",") if k and k != "none"]
    with tempfile.TemporaryDirectory() as tmp:
        from kvid.train.tflite import TFLiteModel, export_tflite

        calibration = [{"frames": pixels[i, 0, 0][None].repeat(8, 0)} for i in range(4)]
        for kind in kinds:
            out = os.path.join(tmp, kind)
            start = time.perf_counter()
            export_tflite(member, out, labels=[str(i) for i in range(600)],
                          quantization=kind,
                          calibration=calibration if kind == "int8" else None)
            result[f"tflite_{kind}_convert_s"] = time.perf_counter() - start
            lite = TFLiteModel(out, num_threads=1)
            lite_state = {"s": lite.initial_states()}

            def lite_step(frame, lite=lite, lite_state=lite_state):
                probs, lite_state["s"] = lite.step(frame[0, 0], lite_state["s"])
                return probs

            ms = _per_frame_ms(lite_step, pixels, args.warmup)
            result[f"tflite_{kind}_ms"] = ms
            result[f"tflite_{kind}_vs_published"] = ms / PUBLISHED_MS
            if "reference_ms" in result:
                result[f"tflite_{kind}_vs_reference"] = ms / result["reference_ms"]
            result[f"tflite_{kind}_mb"] = os.path.getsize(
                os.path.join(out, "model.tflite")) / 2**20
        result["keras_vs_published"] = result["keras_ms"] / PUBLISHED_MS
        result.update(_sessions(model, size, args, tmp))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in result.items()}))
    return 0


def _sessions(model, size: int, args, tmp: str) -> dict:
    """p50/p99 per-frame latency (client side, HTTP included) with ``args.streams``
    sessions sending JPEG frames at once, and the frames/s they got together."""
    import numpy as np

    from kvid.serving.client import Client
    from kvid.serving.server import start_server
    from kvid.train.export import export_saved_model
    from kvid.video.frames import encode_jpeg

    base = os.path.join(tmp, "served")
    export_saved_model(model, os.path.join(base, "1"), labels=[str(i) for i in range(600)],
                       clip_frames=8, image_size=(size, size), normalization="unit")
    rng = np.random.default_rng(1)
    jpegs = [encode_jpeg(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
             for _ in range(args.session_frames)]
    server = start_server(base, "a0", grpc_port=None, poll_seconds=0,
                          rest_threads=args.streams)
    latencies, errors = [], []
    lock = threading.Lock()
    ready = threading.Barrier(args.streams + 1)  # timed once every session is warm

    def one_stream():
        client = Client(rest_url=server.rest_url, model="a0")
        try:
            with client.open_stream(top_k=1) as stream:
                stream.send(jpegs[:1])  # untimed: the session's first step
                ready.wait()
                for frame in jpegs[1:]:
                    start = time.perf_counter()
                    stream.send([frame])
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1000)
        except Exception as e:  # counted, never hidden
            errors.append(repr(e))
            ready.abort()
        finally:
            client.close()

    try:
        threads = [threading.Thread(target=one_stream) for _ in range(args.streams)]
        for t in threads:
            t.start()
        try:
            ready.wait()
        except threading.BrokenBarrierError:
            pass
        start = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
    finally:
        server.stop()
    if errors:
        raise RuntimeError(f"{len(errors)} streams failed: {errors[0]}")
    return {"streams": args.streams, "session_p50_ms": float(np.percentile(latencies, 50)),
            "session_p99_ms": float(np.percentile(latencies, 99)),
            "session_frames_per_s": len(latencies) / wall}


if __name__ == "__main__":
    raise SystemExit(main())
