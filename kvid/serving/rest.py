"""The TF Serving REST API over the model manager: routes, handlers and the HTTP server.

``RestApi.handle(method, path, body)`` is ``HttpRestApiHandler::ProcessRequest`` (routes,
dispatch order, error texts) plus the request metrics ``http_server.cc`` records around
it; ``RestServer`` is a threaded stdlib HTTP/1.1 server around it that adds what TF
Serving's HTTP layer does (404 outside ``/v1/``, the Prometheus page at its configured
path) and a body limit.
"""

from __future__ import annotations

import http.server
import logging
import re
import socketserver
import threading
import time
import urllib.parse

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from kvid.serving import json_tensor
from kvid.serving.errors import ServingError, invalid_argument
from kvid.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from kvid.serving.metrics import Metrics
from kvid.serving.servables import ModelManager, Servable

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

    def __init__(self, manager: ModelManager, metrics: Metrics | None = None):
        self.manager = manager
        self.metrics = metrics
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
        outputs = found[0].predict(request.signature_name, request.inputs)
        return json_tensor.make_json(outputs, request.format)

    def _classify_regress(self, verb, name, version, label, body: bytes) -> bytes:
        """The request and signature checks of TF Serving, then 501: only predict runs here."""
        doc = json_tensor.parse_json(body)
        signame = json_tensor.signature_name(doc) or "serving_default"
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


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving's evhttp server
    disable_nagle_algorithm = True  # small replies must not wait for delayed ACKs
    wbufsize = 1 << 16  # headers and body leave in one send (flushed after each request)
    server: "RestServer"

    def log_message(self, fmt, *args):  # requests are not logged by default
        log.debug("%s - " + fmt, self.address_string(), *args)

    def _reply(self, status: int, body: bytes, close: bool = False,
               content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        """The request body, or None (after replying 413) when it is over the limit."""
        limit = self.server.max_body_bytes
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                total += size
                if total > limit:
                    self._too_large(total)
                    return None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > limit:
            self._too_large(length)
            self._discard(length)
            return None
        return self.rfile.read(length) if length else b""

    def _too_large(self, size: int) -> None:
        message = (f"Request body of {size} bytes is larger than the limit of "
                   f"{self.server.max_body_bytes} bytes (--max_body_bytes)")
        self._reply(413, json_tensor.error_body(message), close=True)

    def _discard(self, length: int) -> None:
        """Reads (for a few seconds at most) the body being refused, so that a client
        still sending it sees the 413 rather than a reset connection."""
        self.connection.settimeout(2.0)
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue`` with a body over the limit: 413 before it is sent."""
        if int(self.headers.get("Content-Length") or 0) > self.server.max_body_bytes:
            self._too_large(int(self.headers["Content-Length"]))
            return False
        return super().handle_expect_100()

    def _handle(self) -> None:
        start_ns = time.monotonic_ns()  # before the body, as http_server.cc
        path = urllib.parse.urlsplit(self.path).path
        body = self._read_body()
        if body is None:
            return
        if path == self.server.metrics_path:  # registered ahead of the /v1/ dispatcher
            page = self.server.api.metrics.page().encode("utf-8")
            self._reply(200, page, content_type=METRICS_CONTENT_TYPE)
            return
        if not _API_RE.fullmatch(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "OPTIONS":  # CORS preflight, as http_server.cc
            status, out = self.server.api.preflight(self.headers.get("Origin", ""),
                                                    start_ns=start_ns)
        else:
            with self.server.workers:
                status, out = self.server.api.handle(self.command, path, body,
                                                     start_ns=start_ns)
        self._reply(status, out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Thread per connection; ``num_threads`` bounds how many requests run at once.

    ``metrics_path``: where the Prometheus page of ``api.metrics`` is served (any method,
    exact path, as TF Serving's handler); None (monitoring off) makes it an unknown route.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, api: RestApi, *, num_threads: int,
                 max_body_bytes: int, metrics_path: str | None = None):
        if metrics_path is not None and api.metrics is None:
            raise ValueError("metrics_path needs a RestApi with metrics")
        super().__init__((host, port), _Handler)
        self.api = api
        self.metrics_path = metrics_path
        self.workers = threading.BoundedSemaphore(max(1, num_threads))
        self.max_body_bytes = max_body_bytes
        self._thread = threading.Thread(target=self.serve_forever, name="kvid-rest",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "RestServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()
