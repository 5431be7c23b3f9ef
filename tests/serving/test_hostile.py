"""Hostile clients (issue 17): bad framing, bombs, slow and too many connections.

Each test talks raw HTTP (or gRPC) to a real ``kvid serve`` on loopback and asserts the
status and the JSON error a client gets, and that the server answers good requests after.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import socket
import threading
import time

import cv2
import grpc
import numpy as np
import pytest
from serving_fixtures import MODEL, http_request, push
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from kvid.serving.testing import toy_clip

CLIP = toy_clip()  # 16 JPEG frames of 32x32
PIXELS_LIMIT = 100_000  # ~6 toy clips
GOOD = json.dumps({"instances": [[{"b64": base64.b64encode(f).decode()} for f in CLIP]]})
HEAD = b"POST /v1/models/kvid:predict HTTP/1.1\r\nHost: x\r\n"


def _start(toy_versions, tmp_path_factory, **limits):
    from kvid.serving.server import start_server

    base = str(tmp_path_factory.mktemp("hostile") / MODEL)
    os.makedirs(base)
    push(toy_versions, base, 1)
    return start_server(base, MODEL, poll_seconds=0, max_body_bytes=1 << 20, **limits)


@pytest.fixture(scope="module")
def tight(toy_versions, tmp_path_factory):
    """A server whose timeouts and pixel limit a test can reach in about a second."""
    srv = _start(toy_versions, tmp_path_factory, timeout_ms=1000,
                 max_decoded_pixels=PIXELS_LIMIT)
    yield srv
    srv.stop()


def assert_still_serves(srv):
    status, _, data = http_request(srv.rest_port, "POST", f"/v1/models/{MODEL}:predict",
                                   GOOD.encode())
    assert status == 200, data
    assert json.loads(data)["predictions"][0]["labels"]


def exchange(port: int, data: bytes, wait: float = 10.0) -> tuple[int | None, dict | None]:
    """Sends ``data`` without closing; the status and JSON body of the reply (None, None
    when the server closed without answering)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(data)
        sock.settimeout(wait)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                return None, None
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if length else None


FRAMING = [
    ("content-length -1", HEAD + b"Content-Length: -1\r\n\r\n", "Content-Length"),
    ("content-length abc", HEAD + b"Content-Length: abc\r\n\r\n", "Content-Length"),
    ("content-length 1e3", HEAD + b"Content-Length: 1e3\r\n\r\n", "Content-Length"),
    ("content-length overflow", HEAD + b"Content-Length: " + b"9" * 30 + b"\r\n\r\n",
     "Content-Length overflow"),
    ("two content-lengths", HEAD + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     "Duplicate Content-Length"),
    ("chunk size -1", HEAD + b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", "chunk size"),
    ("chunk size overflow", HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"F" * 24 + b"\r\n",
     "Chunk size overflow"),
    ("chunked and a length", HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
     "Transfer-Encoding"),
    ("tls hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "HTTPS traffic"),
    ("not a method", b"GARBAGE\r\n\r\n", "Invalid method"),
    ("header line too long", HEAD + b"X: " + b"a" * 9000 + b"\r\n\r\n", "8190 bytes"),
]


@pytest.mark.parametrize("data,needle", [c[1:] for c in FRAMING], ids=[c[0] for c in FRAMING])
def test_bad_framing_gets_400_json_before_any_body_is_read(tight, data, needle):
    """Content-Length: -1 used to read until the client closed (200 MiB past the limit)."""
    status, doc = exchange(tight.rest_port, data)
    assert status == 400 and list(doc) == ["error"]
    assert doc["error"].startswith("Malformed HTTP request:") and needle in doc["error"]
    assert_still_serves(tight)


def test_declared_and_chunked_bodies_over_the_limit_get_413(tight):
    status, doc = exchange(tight.rest_port, HEAD + b"Content-Length: 2000000\r\n\r\n")
    assert status == 413 and "larger than the limit of 1048576" in doc["error"]
    chunk = b"x" * 600_000
    chunked = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + \
        (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
    status, doc = exchange(tight.rest_port, chunked)
    # Refused as soon as the bytes received pass the limit: how many that is depends on how
    # the stream arrived, never more than the 1,200,000 sent.
    match = re.search(r"Request body of at least (\d+) bytes", doc["error"])
    assert status == 413 and match and 1_048_576 < int(match.group(1)) <= 1_200_000, doc
    expect = HEAD + b"Content-Length: 2000000\r\nExpect: 100-continue\r\n\r\n"
    status, doc = exchange(tight.rest_port, expect)  # refused before it invites the body
    assert status == 413
    assert_still_serves(tight)


def test_a_body_shorter_than_its_length_gets_408_after_the_timeout(tight):
    """It used to wait forever, holding a thread."""
    status, doc = exchange(tight.rest_port, HEAD + b"Content-Length: 100\r\n\r\n0123456789")
    assert status == 408 and "within 1 s" in doc["error"] and "10 bytes arrived" in doc["error"]


def test_slow_headers_are_closed_and_cost_no_thread(tight):
    """200 slow-loris connections used to hold 200 threads; now none, and each is closed
    once the timeout passes without a complete request."""
    threads = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", tight.rest_port)) for _ in range(50)]
    try:
        for s in socks:
            s.sendall(HEAD[:20])
        time.sleep(0.3)
        assert threading.active_count() <= threads + 1  # a worker at most, not one each
        assert_still_serves(tight)
        deadline = time.monotonic() + 15
        open_ = set(range(len(socks)))
        while open_ and time.monotonic() < deadline:
            readable, _, _ = select.select([socks[i] for i in open_], [], [], 1.0)
            for s in readable:
                assert s.recv(100) == b""  # closed (no request came, so no status)
                open_.discard(socks.index(s))
        assert not open_, f"{len(open_)} slow connections still open"
    finally:
        for s in socks:
            s.close()


def test_connections_over_the_cap_get_503_json(toy_versions, tmp_path_factory):
    srv = _start(toy_versions, tmp_path_factory, max_connections=4)
    idle = [socket.create_connection(("127.0.0.1", srv.rest_port)) for _ in range(4)]
    try:
        time.sleep(0.2)
        status, doc = exchange(srv.rest_port, b"GET /v1/models/kvid HTTP/1.1\r\n\r\n")
        assert status == 503 and "limit 4, --max_connections" in doc["error"]
        idle.pop().close()
        time.sleep(0.2)
        assert_still_serves(srv)
    finally:
        for s in idle:
            s.close()
        srv.stop()


def _jpeg(h: int, w: int) -> bytes:
    return cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8))[1].tobytes()


def test_a_decompression_bomb_gets_400_before_it_is_decoded(tight):
    """Frames whose headers declare more pixels than --max_decoded_pixels are refused
    (eight 8000x8000 JPEGs in 10 MB used to take 10 s and 6.8 GB)."""
    clip = [_jpeg(400, 400)] * 2 + CLIP[2:]  # 320,000 + 14 x 1,024 pixels, 6 KB
    body = json.dumps({"instances": [[{"b64": base64.b64encode(f).decode()} for f in clip]]})
    status, _, data = http_request(tight.rest_port, "POST", f"/v1/models/{MODEL}:predict",
                                   body.encode())
    error = json.loads(data)["error"]
    assert status == 400
    assert error == ("The request's images decode to 334336 pixels, more than the limit of "
                     "100000 (--max_decoded_pixels); the largest, element 0 of input "
                     "'frames', has 160000")
    assert_still_serves(tight)


def _grpc_predict(srv, dims, signature="serving_tensor", values=(1.0,)):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    request.inputs["frames"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=list(values)))
    with grpc.insecure_channel(srv.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)


@pytest.mark.parametrize("dims,needle", [
    ([1, 8, 2000, 2000, 3], "has shape [1,8,2000,2000,3], which is not compatible"),
    ([1, 2**30], "has shape [1,1073741824], which is not compatible"),
    ([200, 16, 32, 32, 3], "more than the limit of 1048576 bytes"),
])
def test_grpc_declared_shapes_are_refused_before_the_tensor_exists(tight, dims, needle):
    """A 68-byte request declaring [1,8,2000,2000,3] used to allocate 1.5 GB."""
    with pytest.raises(grpc.RpcError) as e:
        _grpc_predict(tight, dims)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in e.value.details()
    pixels = np.zeros(16 * 32 * 32 * 3, np.float32)
    response = _grpc_predict(tight, [1, 16, 32, 32, 3], values=pixels)
    assert len(response.outputs["probabilities"].float_val) == 5


@pytest.mark.parametrize("number,offset", [("1" * 4301, 44), ("-" + "9" * 400, 44)])
def test_huge_json_integers_get_rapidjsons_400(tight, number, offset):
    """A 4,301-digit integer hit Python's int-string limit: 500 before."""
    body = '{"signature_name": "single", "instances": [[' + number + ', 0, 0]]}'
    status, _, data = http_request(tight.rest_port, "POST", f"/v1/models/{MODEL}:predict",
                                   body.encode())
    assert status == 400
    assert json.loads(data)["error"] == (
        f"JSON Parse error: Number too big to be stored in double. at offset: {offset}")


def test_a_client_that_half_closes_still_gets_its_answer(tight):
    """aiohttp alone closes on EOF, dropping the reply; a body the EOF cut short is a 400
    at once instead of a wait for the timeout."""
    good = GOOD.encode()
    for data, status, needle in [
            (HEAD + b"Content-Length: %d\r\n\r\n" % len(good) + good, 200, None),
            (HEAD + b"Content-Length: 100\r\n\r\n{}", 400, "ended after 2 of the 100 bytes"),
            (HEAD + b"Content-Length: abc\r\n\r\n{}", 400, "Content-Length")]:
        with socket.create_connection(("127.0.0.1", tight.rest_port)) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(10)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.") and int(reply.split(b" ")[1]) == status, reply
        if needle:
            assert needle in json.loads(reply.partition(b"\r\n\r\n")[2])["error"]


def test_a_refused_flood_reads_its_400_not_a_reset(tight):
    """The server answers Content-Length: -1 at once and then ends its side before it
    closes, so a client still sending reads the 400 instead of a connection reset."""
    with socket.create_connection(("127.0.0.1", tight.rest_port)) as sock:
        sock.sendall(HEAD + b"Content-Length: -1\r\n\r\n")
        block, sent = b"x" * (1 << 16), 0
        while not select.select([sock], [], [], 0)[0] and sent < 64 << 20:
            sock.sendall(block)
            sent += len(block)
        sock.settimeout(10)
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.0 400 "), reply[:100]
    assert sent < 64 << 20  # answered long before the flood ended
