"""Serving latency: ``kvid serve`` over REST and gRPC vs calling the SavedModel in process.

One request = one clip of 16 JPEG frames (112x112, as ingest writes them) through the
``serving_default`` signature. The server runs in its own process (as it would in use;
client threads then do not share its interpreter lock) and the clients reuse their
connections and send a prepared body, so the numbers are the server's and the
transport's cost, not the client library's. Each of direct / REST / gRPC runs with 1
client and with 8 concurrent clients; p50/p99 in ms and requests/s, the best of
``--rounds`` interleaved rounds (the machine may be shared).

Goal (issue 9): local server p50 <= 1.2x the direct call, single client.

The default model is ``kvid.serving.testing``'s toy (in-graph JPEG decode and resize, a
dense head): the worst case for the ratio, as almost nothing but the serving cost is
left. ``--zoo NAME`` exports a zoo model (random weights) with ``kvid.train.export``
instead, ``--model_base_path`` measures an already exported one.

Prints one JSON line. Usage:
``python benchmarks/bench_serving.py [--requests 200] [--zoo x3d --zoo-kwargs '{"variant": "XS"}']``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

MODEL = "kvid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(call, n: int, clients: int) -> dict:
    """Latency percentiles and throughput of ``n`` calls spread over ``clients`` threads."""
    for _ in range(3):
        call()
    per_thread = max(1, n // clients)
    latencies: list[float] = []
    lock = threading.Lock()

    def worker():
        mine = []
        for _ in range(per_thread):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "req_per_s": round(len(ms) / wall, 1)}


def start_server_process(base_path: str) -> tuple[subprocess.Popen, int, int]:
    rest, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kvid.serving.server", f"--model_name={MODEL}",
         f"--model_base_path={base_path}", f"--rest_api_port={rest}", f"--port={grpc_port}",
         "--file_system_poll_wait_seconds=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", rest, timeout=5)
            conn.request("GET", f"/v1/models/{MODEL}")
            if conn.getresponse().status == 200:
                return proc, rest, grpc_port
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError("kvid serve exited during start-up")
    proc.kill()
    raise RuntimeError("kvid serve did not come up")


def export_zoo_model(export_dir: str, name: str, kwargs: dict, size: int) -> None:
    from kvid.models.registry import build_model, get_model_info
    from kvid.train.export import export_saved_model

    labels = [f"class{i}" for i in range(5)]
    model = build_model(name, input_shape=(16, size, size, 3), num_classes=len(labels),
                        **kwargs)
    export_saved_model(model, export_dir, labels=labels, clip_frames=16,
                       image_size=(size, size), model_name=MODEL,
                       normalization=get_model_info(name).normalization)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model_base_path", default=None)
    parser.add_argument("--frame-size", type=int, default=112)
    parser.add_argument("--zoo", default=None, help="export this zoo model (random weights)")
    parser.add_argument("--zoo-kwargs", default="{}", help="JSON builder kwargs for --zoo")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the server

    from kvid.serving.testing import toy_clip, write_toy_model

    with tempfile.TemporaryDirectory() as tmp:
        base = args.model_base_path
        if base is None:
            base = os.path.join(tmp, MODEL)
            if args.zoo:
                export_zoo_model(os.path.join(base, "1"), args.zoo, json.loads(args.zoo_kwargs),
                                 args.frame_size)
            else:
                write_toy_model(base, 1, image_size=args.frame_size)
        version = max(int(v) for v in os.listdir(base) if v.isdigit())
        clip = toy_clip(16, size=args.frame_size)
        batch = np.array([clip], dtype=object)

        fn = tf.saved_model.load(os.path.join(base, str(version))).signatures["serving_default"]

        def direct():
            fn(frames=tf.constant(batch))["probabilities"].numpy()

        proc, rest_port, grpc_port = start_server_process(base)
        try:
            body = json.dumps({"instances": [[{"b64": base64.b64encode(f).decode()}
                                              for f in clip]]}).encode()
            local = threading.local()

            def rest():
                conn = getattr(local, "conn", None)
                if conn is None:
                    conn = local.conn = http.client.HTTPConnection("127.0.0.1", rest_port)
                conn.request("POST", f"/v1/models/{MODEL}:predict", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
                assert response.status == 200, data

            import grpc
            from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

            from kvid.serving.tensor_proto import to_tensor_proto

            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            request.inputs["frames"].CopyFrom(to_tensor_proto(batch, tf.string))
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def over_grpc():
                stub.Predict(request, timeout=60)

            results = {}
            # Interleaved rounds, best kept: load from others on a shared machine hits
            # every mode alike and only ever adds time.
            for _ in range(args.rounds):
                for clients in (1, 8):
                    for name, call in (("direct", direct), ("rest", rest), ("grpc", over_grpc)):
                        got = timed(call, args.requests, clients)
                        key = f"{name}_{clients}"
                        if key not in results or got["p50_ms"] < results[key]["p50_ms"]:
                            results[key] = got
            channel.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    direct_p50 = results["direct_1"]["p50_ms"]
    out = {
        "bench": "serving",
        "model": args.model_base_path or (f"{args.zoo} {args.zoo_kwargs}" if args.zoo else "toy"),
        "frame_size": args.frame_size,
        "clip_frames": 16,
        "request_bytes_rest": len(body),
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "gpu": bool(tf.config.list_physical_devices("GPU")),
        **results,
        "rest_p50_vs_direct": round(results["rest_1"]["p50_ms"] / direct_p50, 3),
        "grpc_p50_vs_direct": round(results["grpc_1"]["p50_ms"] / direct_p50, 3),
    }
    out["goal_rest_p50_le_1.2x_direct"] = out["rest_p50_vs_direct"] <= 1.2
    print(json.dumps(out))


if __name__ == "__main__":
    main()
