"""The TF Serving REST API over the model manager: routes, handlers and the HTTP server.

``RestApi.handle(method, path, body)`` is ``HttpRestApiHandler::ProcessRequest`` (routes,
dispatch order, error texts) plus the request metrics ``http_server.cc`` records around
it. ``RestServer`` puts it on aiohttp's HTTP/1.1 server (framing, keep-alive, pipelining
and, for the streaming API, WebSockets come from a maintained library, not from kvid)
and adds what TF Serving's HTTP layer does (404 outside ``/v1/``, the Prometheus page at
its configured path) plus the limits a hostile client must not get past: the body size,
a read timeout for headers and body, and a cap on open connections. Every refusal is a
4xx/503 with a JSON ``{"error": ...}``, answered before the body is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import socket
import threading
import time
import urllib.parse

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from kvid.serving import json_tensor
from kvid.serving.contract import DEFAULT_SIGNATURE
from kvid.serving.errors import ServingError, invalid_argument
from kvid.serving.limits import RequestLimits
from kvid.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kvid.serving.metrics import Metrics
from kvid.serving.servables import ModelManager, Servable
from kvid.serving.streams import StreamSessions

log = logging.getLogger(__name__)

# http_rest_api_util.cc (RE2 FullMatch, case-insensitive).
_PREDICT_RE = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)")
_STATUS_RE = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r"(?:\/(metadata))?")
_API_RE = re.compile(r"(?i)/v1/.*")  # kHTTPRestApiHandlerPathRegex
_INT64_MAX = 2**63 - 1


def _unescape(text: str) -> str:
    """``curl_easy_unescape``: %XX only ('+' stays '+')."""
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "surrogateescape")


def _proto_json(message) -> str:
    """protobuf's JSON printer as TF Serving calls it (whitespace, defaults, snake_case)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=1,
                                     always_print_fields_with_no_presence=True,
                                     ensure_ascii=False)


def metadata_json(servable: Servable) -> bytes:
    """``ToJsonString(GetModelMetadataResponse)``: TF Serving's hand-joined JSON."""
    spec = model_pb2.ModelSpec(name=servable.name)
    spec.version.value = servable.version
    text = ("{\n" f'"model_spec":{_proto_json(spec)},\n' '"metadata": {'
            f'"signature_def": {_proto_json(servable.signature_def_map())}' "}\n" "}\n")
    return text.encode("utf-8")


class _RequestInfo:
    """What ``ParseModelInfo`` has filled in when a request ends: the metric labels."""

    __slots__ = ("model_name", "api")

    def __init__(self):
        self.model_name = ""
        self.api = ""


class RestApi:
    """Answers one REST request: (method, path, body) -> (HTTP status, JSON body).

    Each request is counted in ``metrics`` (when given) as ``http_server.cc`` does:
    ``request_count`` by model and status code, ``request_latency`` when it succeeded.
    """

    def __init__(self, manager: ModelManager, metrics: Metrics | None = None,
                 limits: RequestLimits | None = None):
        self.manager = manager
        self.metrics = metrics
        self.limits = limits
        self._metadata_cache: dict[Servable, bytes] = {}

    def handle(self, method: str, path: str, body: bytes, *,
               start_ns: int | None = None) -> tuple[int, bytes]:
        """``start_ns`` (``time.monotonic_ns()``): when the request arrived, for latency."""
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        info = _RequestInfo()
        code = grpc.StatusCode.OK
        try:
            return 200, self._dispatch(method, path, body, info)
        except ServingError as e:
            code = e.code
            return e.http_status, json_tensor.error_body(e.message)
        except _NoBody as e:
            code = e.error.code
            return e.error.http_status, b""
        except Exception as e:  # a bug must cost one request, not the connection
            code = grpc.StatusCode.UNKNOWN
            log.exception("%s %s failed", method, path)
            return 500, json_tensor.error_body(f"Internal error: {type(e).__name__}: {e}")
        finally:
            self._record(info, code, start_ns)

    def preflight(self, origin: str, *, start_ns: int | None = None) -> tuple[int, bytes]:
        """A CORS preflight (OPTIONS), as ``http_server.cc`` answers and counts it."""
        start_ns = time.monotonic_ns() if start_ns is None else start_ns
        if re.match(r"https?://", origin):
            self._record(_RequestInfo(), grpc.StatusCode.OK, start_ns)
            return 200, b""
        self._record(_RequestInfo(), grpc.StatusCode.FAILED_PRECONDITION, start_ns)
        return 400, json_tensor.error_body("Origin header is missing in CORS preflight")

    def _record(self, info: _RequestInfo, code: grpc.StatusCode, start_ns: int) -> None:
        if self.metrics is not None:
            self.metrics.record_request(info.model_name, info.api, "REST", code.name,
                                        (time.monotonic_ns() - start_ns) // 1000)

    def _dispatch(self, method: str, path: str, body: bytes, info: _RequestInfo) -> bytes:
        pattern = {"POST": _PREDICT_RE, "GET": _STATUS_RE}.get(method)
        match = pattern.fullmatch(path) if pattern else None
        if match is None:
            raise invalid_argument(f"Malformed request: {method} {path}")
        name, version_str, label, verb = match.groups()
        name = _unescape(name or "")
        info.model_name = name
        if method == "POST":
            info.api = verb  # as written in the URL; GET leaves it empty (ParseModelInfo)
        label = _unescape(label) if label else None
        version = None
        if version_str:
            version = int(version_str)
            if version > _INT64_MAX:  # ParseModelInfo returns before writing JSON
                raise _NoBody(invalid_argument(
                    f"Failed to convert version: {version_str} to numeric."))
        if method == "GET":
            if not name:
                raise invalid_argument("Missing model name in request.")
            if verb:  # "metadata"
                return self._metadata(self.manager.get(name, version, label))
            # Status does not resolve labels: all versions (get_model_status_impl.cc).
            return (_proto_json(self.manager.status(name, version)) + "\n").encode()
        verb = verb.lower()
        if verb == "predict":
            return self._predict(name, version, label, body)
        return self._classify_regress(verb, name, version, label, body)

    def _metadata(self, servable: Servable) -> bytes:
        cached = self._metadata_cache.get(servable)
        if cached is None:
            if len(self._metadata_cache) > 32:
                self._metadata_cache.clear()
            cached = self._metadata_cache[servable] = metadata_json(servable)
        return cached

    def _predict(self, name, version, label, body: bytes) -> bytes:
        found: list[Servable] = []

        def input_dtypes(signature_name):
            found.append(self.manager.get(name, version, label))
            return found[0].input_dtypes(signature_name)

        request = json_tensor.parse_predict_request(body, input_dtypes)
        if self.limits is not None:  # before any image is decoded
            self.limits.check_images(request.inputs)
        outputs = found[0].predict(request.signature_name, request.inputs)
        return json_tensor.make_json(outputs, request.format)

    def _classify_regress(self, verb, name, version, label, body: bytes) -> bytes:
        """The request and signature checks of TF Serving, then 501: only predict runs here."""
        doc = json_tensor.parse_json(body)
        signame = json_tensor.signature_name(doc) or DEFAULT_SIGNATURE
        json_tensor.check_examples_request(doc)
        servable = self.manager.get(name, version, label)
        sig = servable.signature_defs.get(signame)
        if sig is None:
            raise invalid_argument(f"No signature was found with the name: {signame}")
        if len(sig.inputs) != 1:
            raise invalid_argument("Expected one input Tensor.")
        n_out = len(sig.outputs)
        if verb == "classify" and n_out not in (1, 2):
            raise invalid_argument(f"Expected one or two output Tensors, found {n_out}")
        if verb == "regress" and n_out != 1:
            raise invalid_argument("Expected one output Tensor.")
        if "inputs" not in sig.inputs:
            what = "classification" if verb == "classify" else "regression"
            raise invalid_argument(f"No {what} inputs found in SignatureDef: {sig}")
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"{verb} is not implemented by kvid serve; use :predict")


class _NoBody(Exception):
    """An error TF Serving returns with an empty body (raised before its JSON writer)."""

    def __init__(self, error: ServingError):
        self.error = error


# ------------------------------------------------------------------------- HTTP server


class _Protocol(web_protocol.RequestHandler):
    """aiohttp's connection handler (3.14; its internals are pinned by the lock and
    covered by tests/serving/test_hostile.py), changed where a client can misbehave:

    - a malformed request line, header or chunk (``Content-Length: -1``, a chunk size of
      ``-1``) is answered 400 with a JSON error, logged as one debug line rather than a
      traceback, and the connection ends gracefully (``_LingeringClose``);
    - a client that half-closes after its request still gets the answer, and a body that
      its EOF cut short is answered at once instead of at the read timeout.
    """

    _last_payload = None  # the body stream of the latest request parsed

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:
            self._last_payload = self._messages[-1][1]

    def eof_received(self):
        """A client that half-closes after its request still gets the answer (aiohttp
        would close at once); with nothing in progress the connection just closes."""
        if isinstance(self.transport, _LingeringClose):  # after a framing error
            self.transport.peer_closed()
            return True
        if self._waiter is not None and not self._waiter.done() and not self._messages:
            return None
        try:  # a body cut short by the EOF fails now, not at the read timeout
            if self._parser is not None:
                self._parser.feed_eof()
        except HttpProcessingError:  # the body of the last request was cut short:
            payload = self._last_payload  # end it, so its reader sees how short
            if payload is not None and not payload.is_eof():
                payload.feed_eof()
        self.close()  # no further requests; close once the ones received are answered
        return True

    def handle_error(self, request, status: int = 500, exc=None, message=None):
        log.debug("bad HTTP request from %s: %s", request.remote, exc or message)
        self.close()  # ignore whatever else arrives: the stream cannot be parsed
        if self.transport is not None and not isinstance(self.transport, _LingeringClose):
            self.transport = _LingeringClose(self.transport, self._loop)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent")
        if status >= 500:
            text = "Internal error while handling the request"
        else:
            detail = str(getattr(exc, "message", None) or message or type(exc).__name__)
            # aiohttp's text is "what:\n\n  b'the line'\n     ^": keep what and the line
            parts = [p.strip() for p in detail.splitlines() if p.strip() and p.strip() != "^"]
            text = "Malformed HTTP request: " + " ".join(parts[:2])
        response = _json_response(status, json_tensor.error_body(text))
        response.force_close()  # the stream cannot be trusted past a framing error
        return response


class _LingeringClose:
    """A transport whose ``close()`` first ends the sending side, then closes.

    A client still sending a body the server refused (``Content-Length: -1`` and 200 MiB)
    would otherwise get a TCP reset that can discard the 400 before it reads it.
    """

    def __init__(self, transport: asyncio.Transport, loop, seconds: float = 2.0):
        self._transport = transport
        self._loop = loop
        self._seconds = seconds
        self.closing = False  # close() was called: the reply is out
        self.peer_done = False  # the client ended its side: no need to wait for it

    def close(self) -> None:
        transport = self._transport
        self.closing = True
        if transport.is_closing():
            return
        if self.peer_done or not transport.can_write_eof():
            transport.close()
            return
        try:
            transport.write_eof()  # after the reply; the client reads it, then EOF
        except OSError:  # the client is already gone
            transport.close()
            return
        self._loop.call_later(self._seconds, transport.close)

    def peer_closed(self) -> None:
        self.peer_done = True
        if self.closing:
            self._transport.close()

    def __getattr__(self, name):
        return getattr(self._transport, name)


class _Refuse(asyncio.Protocol):
    """A connection over ``max_connections``: 503 with a JSON error, then closed."""

    def __init__(self, limit: int):
        self.limit = limit

    def connection_made(self, transport):
        body = json_tensor.error_body(
            f"Too many open connections (limit {self.limit}, --max_connections)")
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                        b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                        % (len(body), body))
        transport.close()


class _Server(web.Server):
    """aiohttp's low-level server with kvid's handler class and a connection cap."""

    def __init__(self, handler, *, max_connections: int, **kwargs):
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections

    def __call__(self):
        if len(self._connections) >= self.max_connections:
            return _Refuse(self.max_connections)
        return _Protocol(self, loop=self._loop, **self._kwargs)


def _json_response(status: int, body: bytes, content_type: str = "application/json"):
    response = web.Response(status=status, body=body)
    response.content_type = content_type
    return response


class _ClientError(Exception):
    """A request refused before the API sees it (size, timeout): status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RestServer:
    """The REST API on aiohttp, in an event-loop thread of its own.

    ``num_threads`` bounds how many requests run the API (the model) at once, as TF
    Serving's ``--rest_api_num_threads``; reading and writing never occupy those threads,
    so slow clients cost no worker. ``timeout_s`` bounds the time a client may take to
    send a request's headers (from connect or its previous reply) and, separately, its
    body: over it the connection is closed (headers) or answered 408 (body).
    ``max_connections`` caps open connections; more are answered 503 and closed.
    ``metrics_path``: where the Prometheus page of ``api.metrics`` is served (any method,
    exact path, as TF Serving's handler); None (monitoring off) makes it an unknown route.
    ``streams``: the stream session API (kvid.serving.streams) at its path; None: off.
    ``page``: the HTML answered at ``/`` (kvid/serving/page.html); None: 404 there.
    """

    def __init__(self, host: str, port: int, api: RestApi, *, num_threads: int,
                 max_body_bytes: int, metrics_path: str | None = None,
                 timeout_s: float = 30.0, max_connections: int = 512,
                 streams: StreamSessions | None = None, page: bytes | None = None):
        if metrics_path is not None and api.metrics is None:
            raise ValueError("metrics_path needs a RestApi with metrics")
        self.api = api
        self.streams = streams
        self.page = page
        self.metrics_path = metrics_path
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        # Bound here, in the caller's thread: a port in use or a bad host fails at once.
        try:
            self._socket = socket.create_server((host, port), backlog=128)
        except OSError as e:
            reason = os.strerror(e.errno) if e.errno else str(e)
            raise OSError(f"cannot listen on {host}:{port} for REST: {reason}") from None
        self.server_address = self._socket.getsockname()[:2]
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, num_threads),
                                                           thread_name_prefix="kvid-rest")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kvid-rest",
                                        daemon=True)
        self._server = None
        self._aio = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "RestServer":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        return self

    async def _start(self) -> None:
        self._aio = _Server(self._handle, max_connections=self.max_connections,
                            keepalive_timeout=self.timeout_s, access_log=None,
                            lingering_time=2.0)
        self._server = await self._loop.create_server(self._aio, sock=self._socket)

    def stop(self) -> None:
        if not self._thread.is_alive():
            self._socket.close()
            return

        async def close():
            self._server.close()
            self._aio.pre_shutdown()
            await self._aio.shutdown(1.0)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ per request

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        start_ns = time.monotonic_ns()  # before the body, as http_server.cc
        path = urllib.parse.urlsplit(request.raw_path).path
        try:
            body = await self._read_body(request)
        except _ClientError as e:
            response = _json_response(e.status, json_tensor.error_body(str(e)))
            response.force_close()
            return response
        if path == self.metrics_path:  # registered ahead of the /v1/ dispatcher
            page = self.api.metrics.page().encode("utf-8")
            return _json_response(200, page, METRICS_CONTENT_TYPE)
        if path == "/" and self.page is not None and request.method in ("GET", "HEAD"):
            return _json_response(200, self.page, "text/html")
        if self.streams is not None and self.streams.matches(path):
            content_type = request.headers.get("Content-Type", "")
            status, out = await self._loop.run_in_executor(
                self._pool, self.streams.handle, request.method, path, body, content_type)
            return _json_response(status, out)
        if not _API_RE.fullmatch(path):
            return web.Response(status=404)
        if request.method == "OPTIONS":  # CORS preflight, as http_server.cc
            status, out = self.api.preflight(request.headers.get("Origin", ""),
                                             start_ns=start_ns)
        else:
            status, out = await self._loop.run_in_executor(
                self._pool, lambda: self.api.handle(request.method, path, body,
                                                    start_ns=start_ns))
        return _json_response(status, out)

    def _too_large(self, size: int, *, so_far: bool = False) -> _ClientError:
        """``so_far``: a streamed body, refused once the bytes received pass the limit."""
        amount = f"at least {size}" if so_far else f"{size}"
        return _ClientError(413, f"Request body of {amount} bytes is larger than the limit of "
                                 f"{self.max_body_bytes} bytes (--max_body_bytes)")

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body within the size limit and ``timeout_s``, or a _ClientError.

        A declared length over the limit is refused before a byte of the body is read
        (and before ``Expect: 100-continue`` invites it); a chunked body is counted as
        it arrives.
        """
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise self._too_large(length)
        if request.headers.get("Expect", "").lower() == "100-continue" and \
                request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        chunks, total = [], 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    chunk = await request.content.readany()
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > self.max_body_bytes:
                        raise self._too_large(total, so_far=True)
                    chunks.append(chunk)
            if length is not None and total < length:  # the client ended its side early
                raise _ClientError(400, f"The request body ended after {total} of the "
                                        f"{length} bytes its Content-Length declares")
        except web_protocol.RequestPayloadError as e:  # a bad chunk, gzip that is not
            request.content.feed_eof()  # nothing more can be read: no lingering read
            detail = re.sub(r"^\d{3}, message: ", "", " ".join(str(e).split()))
            raise _ClientError(400, f"Malformed HTTP request body: {detail}") from None
        except TimeoutError:
            raise _ClientError(408, f"The request body was not received within "
                                    f"{self.timeout_s:g} s (--rest_api_timeout_in_ms); "
                                    f"{total} bytes arrived") from None
        return b"".join(chunks)
