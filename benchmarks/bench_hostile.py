"""What hostile but well-formed-looking clients cost ``kvid serve``: memory, threads, time.

Starts ``kvid serve`` (the toy model of ``kvid.serving.testing``) in its own process and
measures, from outside, each attack of issue 17:

- framing: ``Content-Length: -1`` and a chunk size of ``-1`` followed by ``--flood-mb`` of
  data; non-numeric lengths (``abc``, ``1e3``): the status, the bytes the server took
  before it answered, its peak memory;
- decompression bomb: a clip whose frames include ``--bomb-frames`` JPEGs of
  ``--bomb-size``² pixels (a few hundred KB each on the wire): status, seconds, the
  server's memory after it;
- a gRPC ``PredictRequest`` declaring ``[1,8,2000,2000,3]`` floats with one value, and one
  with a 2^30 dimension: status code and memory;
- slow-loris: ``--slow-clients`` connections sending a header byte a second for
  ``--slow-seconds``: the server's peak thread count, how many it closed by itself, and the
  latency of a normal request meanwhile;
- a body shorter than its ``Content-Length``: seconds until the server answers or closes;
- a JSON integer of 4,301 digits: the status;
- tracebacks in the server's log over the whole run.

Prints one JSON line. Run it against an older checkout with ``PYTHONPATH=<checkout>`` to
get the before figures. Usage: ``python benchmarks/bench_hostile.py [--slow-seconds 40]``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MODEL = "kvid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    """VmRSS/VmHWM in MB and the thread count of a process, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
            elif key == "Threads":
                out[key] = int(value)
    return out


class ServerProcess:
    def __init__(self, base_path: str, log_path: str):
        self.rest, self.grpc = free_port(), free_port()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kvid.serving.server", f"--model_name={MODEL}",
             f"--model_base_path={base_path}", f"--rest_api_port={self.rest}",
             f"--port={self.grpc}", "--file_system_poll_wait_seconds=0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("kvid serve exited during start-up")
            try:
                if self.get(f"/v1/models/{MODEL}")[0] == 200:
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("kvid serve did not come up")

    def get(self, path: str, body: bytes | None = None, timeout: float = 60):
        conn = http.client.HTTPConnection("127.0.0.1", self.rest, timeout=timeout)
        try:
            conn.request("POST" if body is not None else "GET", path, body=body)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def status(self) -> dict:
        return proc_status(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _status_line(data: bytes) -> int | None:
    if data.startswith(b"HTTP/1."):
        try:
            return int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None
    return None


def raw_exchange(port: int, head: bytes, flood_bytes: int = 0, chunk: bytes = b"",
                 wait_s: float = 10.0, half_close: bool = True) -> dict:
    """Sends ``head``, then ``flood_bytes`` of ``chunk`` while the server stays silent,
    then (``half_close``) ends its side; returns the status the server answered (None:
    it closed without one) and the megabytes it took before answering."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    sent, reply = 0, b""
    block = chunk or b"x" * (1 << 20)
    try:
        while sent < flood_bytes:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(block)
            sent += len(block)
        if sent >= flood_bytes and half_close:
            sock.shutdown(socket.SHUT_WR)
        sock.settimeout(wait_s)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
            if b"\r\n\r\n" in reply:
                break
    except OSError:
        pass
    finally:
        sock.close()
    return {"status": _status_line(reply), "sent_mb": round(sent / 2**20, 1)}


def bomb_body(frames: int, size: int) -> bytes:
    import cv2

    from kvid.serving.testing import toy_clip

    ok, big = cv2.imencode(".jpg", np.full((size, size, 3), 128, np.uint8))
    assert ok
    clip = toy_clip(16)  # the rest stay 32x32: frames of other sizes are decoded as well
    clip[:frames] = [big.tobytes()] * frames
    return json.dumps({"instances": [[{"b64": base64.b64encode(f).decode()}
                                      for f in clip]]}).encode()


def grpc_shape_bomb(port: int, dims: list[int]) -> str:
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_tensor"
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                        dim=[{"size": d} for d in dims]))
    request.inputs["frames"].CopyFrom(tensor)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            stub.Predict(request, timeout=120)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name


def slow_loris(server: ServerProcess, clients: int, seconds: float) -> dict:
    socks = []
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", server.rest))
        s.sendall(b"POST /v1/models/kvid:predict HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    peak_threads, closed, answered = 0, set(), 0
    normal_ms = []
    end = time.time() + seconds
    while time.time() < end:
        for i, s in enumerate(socks):
            if i in closed:
                continue
            try:
                s.sendall(b"X")
                readable, _, _ = select.select([s], [], [], 0)
                if readable:
                    data = s.recv(4096)
                    answered += bool(data)
                    closed.add(i)
            except OSError:
                closed.add(i)
        peak_threads = max(peak_threads, server.status()["Threads"])
        t0 = time.perf_counter()
        try:
            status, _ = server.get(f"/v1/models/{MODEL}", timeout=5)
            if status == 200:
                normal_ms.append((time.perf_counter() - t0) * 1e3)
        except OSError:
            pass
        time.sleep(1.0)
    for s in socks:
        s.close()
    return {"peak_threads": peak_threads, "closed_by_server": len(closed),
            "answered_before_close": answered,
            "normal_request_ms_median": round(float(np.median(normal_ms)), 1)
            if normal_ms else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-mb", type=int, default=200)
    parser.add_argument("--bomb-frames", type=int, default=16, help="of the clip's 16")
    parser.add_argument("--bomb-size", type=int, default=5657,
                        help="16 x 5657^2 pixels = 8 x 8000^2 (issue 17's bomb)")
    parser.add_argument("--slow-clients", type=int, default=200)
    parser.add_argument("--slow-seconds", type=float, default=40.0,
                        help="longer than kvid serve's 30 s header timeout")
    parser.add_argument("--short-body-wait", type=float, default=40.0)
    args = parser.parse_args()

    import kvid
    from kvid.serving.testing import write_toy_model

    result = {"bench": "hostile", "kvid": os.path.dirname(kvid.__file__)}
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, MODEL)
        write_toy_model(base, 1)
        log_path = os.path.join(tmp, "server.log")
        server = ServerProcess(base, log_path)
        try:
            result["idle"] = server.status()
            port = server.rest
            before = server.status()  # first, while the peak is still the idle one
            code = grpc_shape_bomb(server.grpc, [1, 8, 2000, 2000, 3])
            after = server.status()
            result["grpc_declared_shape"] = {
                "code": code, "rss_growth_mb": round(after["VmRSS"] - before["VmRSS"], 1),
                "peak_growth_mb": round(after["VmHWM"] - before["VmHWM"], 1)}
            result["grpc_2^30_dim"] = {"code": grpc_shape_bomb(server.grpc, [1, 2**30])}
            path = b"POST /v1/models/kvid:predict HTTP/1.1\r\nHost: x\r\n"
            flood = args.flood_mb << 20
            result["content_length_-1"] = {
                **raw_exchange(port, path + b"Content-Length: -1\r\n\r\n", flood),
                "peak_rss_mb": server.status()["VmHWM"]}
            result["chunk_size_-1"] = {
                **raw_exchange(port, path + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n",
                               flood),
                "peak_rss_mb": server.status()["VmHWM"]}
            for bad in (b"abc", b"1e3"):
                result[f"content_length_{bad.decode()}"] = raw_exchange(
                    port, path + b"Content-Length: " + bad + b"\r\n\r\n{}")
            body = bomb_body(args.bomb_frames, args.bomb_size)
            t0 = time.perf_counter()
            status, reply = server.get(f"/v1/models/{MODEL}:predict", body, timeout=600)
            result["jpeg_bomb"] = {
                "request_mb": round(len(body) / 2**20, 2), "status": status,
                "seconds": round(time.perf_counter() - t0, 2),
                "rss_after_mb": server.status()["VmRSS"],
                "peak_rss_mb": server.status()["VmHWM"],
                "error": json.loads(reply).get("error", "")[:160] if status != 200 else ""}
            result["slow_loris"] = slow_loris(server, args.slow_clients, args.slow_seconds)
            t0 = time.perf_counter()
            short = raw_exchange(port, path + b"Content-Length: 100\r\n\r\n0123456789",
                                 wait_s=args.short_body_wait, half_close=False)
            result["short_body"] = {**short, "seconds": round(time.perf_counter() - t0, 1)}
            huge_int = b'{"signature_name": "single", "instances": [[' + b"1" * 4301 + b', 0, 0]]}'
            result["json_int_4301_digits"] = {"status": server.get(
                f"/v1/models/{MODEL}:predict", huge_int)[0]}
            status, _ = server.get(f"/v1/models/{MODEL}")
            result["still_answers"] = status == 200
            result["final"] = server.status()
        finally:
            server.stop()
        with open(log_path) as f:
            log = f.read()
        result["tracebacks_in_log"] = log.count("Traceback (most recent call last)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
