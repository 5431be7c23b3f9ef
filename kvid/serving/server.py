"""``kvid serve``: a local server with TF Serving's REST and gRPC APIs and its flags.

For development and tests, where no TF Serving binary or Docker engine is at hand: it
serves the same model directories (``<base>/<name>/<version>/``), answers the same
requests with the same bytes, and takes a TF Serving command line as is. Production
serving is TF Serving itself (``serving/``).

Example:

    server = start_server(model_base_path="serving/models/kvid", model_name="kvid")
    requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/kvid:predict", json=...)
    server.stop()
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import pathlib
import signal
import threading

from kvid.cliargs import OneLineParser
from kvid.serving import configs
from kvid.serving.batching import Batcher
from kvid.serving.contract import STREAMS_PATH
from kvid.serving.flags import (DEFAULT_HOST, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS,
                                DEFAULT_MAX_DECODED_PIXELS, DEFAULT_TIMEOUT_MS,
                                check_base_path, check_serve_args, configure_serve_parser)
from kvid.serving.grpc_service import make_grpc_server
from kvid.serving.limits import RequestLimits
from kvid.serving.metrics import Metrics, metrics_path
from kvid.serving.rest import RestApi, RestServer
from kvid.serving.servables import ModelManager, ModelSource, Servable
from kvid.serving.streams import StreamLimits, StreamSessions

log = logging.getLogger(__name__)
PAGE = pathlib.Path(__file__).with_name("page.html")  # served at / (package data)


def _page() -> bytes:
    """The live page, pointed at the stream API's path (one home: the contract)."""
    return PAGE.read_bytes().replace(b"__STREAMS_PATH__", STREAMS_PATH.encode())


class Server:
    """A running server: ``rest_port`` / ``grpc_port`` (None when off), ``stop()``.

    ``metrics`` holds the request and load metrics (recorded whether or not they are
    exported); ``metrics_url`` is where Prometheus scrapes them, None when monitoring is
    off.
    """

    def __init__(self, manager: ModelManager, rest: RestServer | None, grpc_server,
                 grpc_port: int | None, batcher: Batcher | None, host: str,
                 metrics: Metrics | None = None, streams: StreamSessions | None = None):
        self.manager = manager
        self.streams = streams
        self.metrics = metrics
        self.host = host
        self._rest = rest
        self._grpc = grpc_server
        self.grpc_port = grpc_port
        self.batcher = batcher
        self._stopped = threading.Event()

    @property
    def rest_port(self) -> int | None:
        return self._rest.port if self._rest is not None else None

    @property
    def rest_url(self) -> str | None:
        return f"http://{self.host}:{self.rest_port}" if self._rest is not None else None

    @property
    def metrics_url(self) -> str | None:
        if self._rest is None or self._rest.metrics_path is None:
            return None
        return self.rest_url + self._rest.metrics_path

    @property
    def page_url(self) -> str | None:
        """Where the live page is served; None when it is off."""
        if self._rest is None or self._rest.page is None:
            return None
        return self.rest_url + "/"

    @property
    def grpc_target(self) -> str | None:
        return f"{self.host}:{self.grpc_port}" if self._grpc is not None else None

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
        if self.streams is not None:
            self.streams.stop()
        self.manager.stop()
        if self.batcher is not None:
            self.batcher.close()

    def wait(self) -> None:
        """Blocks until ``stop()`` (from a signal handler or another thread)."""
        while not self._stopped.wait(0.5):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def model_sources(*, model_name: str = "default", model_base_path: str | None = None,
                  model_config_file: str | None = None,
                  model_config_root: str | None = None) -> list[ModelSource]:
    """The served models from TF Serving's flags: one base path, or a ModelServerConfig."""
    if model_config_file:
        if model_base_path:
            raise ValueError("Give --model_config_file or --model_base_path, not both.")
        config = configs.read_model_server_config(model_config_file)
        return [ModelSource.from_proto(c, model_config_root)
                for c in config.model_config_list.config]
    if not model_base_path:
        raise ValueError("Give --model_base_path (with --model_name) or --model_config_file.")
    return [ModelSource(name=model_name, base_path=os.path.abspath(model_base_path))]


def start_server(
    model_base_path: str | None = None,
    model_name: str = "kvid",
    *,
    model_config_file: str | None = None,
    model_config_root: str | None = None,
    sources: list[ModelSource] | None = None,
    host: str = DEFAULT_HOST,
    rest_port: int | None = 0,
    grpc_port: int | None = 0,
    rest_threads: int = 16,
    poll_seconds: float = 1.0,
    batching_parameters=None,
    enable_batching: bool = False,
    enable_model_warmup: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    monitoring_config=None,
    model_config_poll_seconds: float = 0,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_decoded_pixels: int = DEFAULT_MAX_DECODED_PIXELS,
    stream_limits: StreamLimits | None = StreamLimits(),
    page: bool = True,
) -> Server:
    """Loads the models and starts REST and gRPC; returns once both accept requests.

    Ports: 0 picks a free port, None turns that API off; both are bound before any model
    loads, so a port in use fails at once. ``batching_parameters`` is a
    ``configs.BatchingParameters`` (implies ``enable_batching``). ``monitoring_config``
    (a ``configs.MonitoringConfig``) with ``prometheus_config.enable`` serves the metrics
    on the REST port at ``prometheus_config.path``. ``model_config_poll_seconds`` > 0
    re-reads ``model_config_file`` that often and applies what changed. The limits
    (``max_body_bytes``, ``timeout_ms``, ``max_connections``, ``max_decoded_pixels``) are
    ``kvid serve``'s flags of the same names. ``stream_limits``: those of the stream
    session API on the REST port (kvid.serving.streams); None turns it off. ``page``: the
    live page at ``/`` (a stream model classifying a dropped file or the webcam through
    that API; needs it on).
    """
    if sources is None:
        sources = model_sources(model_name=model_name, model_base_path=model_base_path,
                                model_config_file=model_config_file,
                                model_config_root=model_config_root)
    waiting = [s for s in sources if not check_base_path(s.name, s.base_path, poll_seconds)]
    reload = None
    if model_config_file and model_config_poll_seconds > 0:
        reload = functools.partial(model_sources, model_config_file=model_config_file,
                                   model_config_root=model_config_root)
    metrics = Metrics()
    prometheus_path = metrics_path(monitoring_config)
    limits = RequestLimits(max_decoded_pixels=max_decoded_pixels,
                           max_tensor_bytes=max_body_bytes)
    batcher = None
    if enable_batching or batching_parameters is not None:
        batcher = Batcher(batching_parameters)

    def wrap(servable: Servable) -> None:
        if batcher is not None:
            servable.run = functools.partial(batcher.submit, servable.run)

    manager = ModelManager(sources, poll_seconds=poll_seconds, warmup=enable_model_warmup,
                           wrap=wrap, reload=reload, reload_seconds=model_config_poll_seconds,
                           metrics=metrics)
    rest = grpc_server = bound = streams = None
    try:
        if rest_port is not None:
            if stream_limits is not None:
                streams = StreamSessions(manager, stream_limits, limits)
            rest = RestServer(host, rest_port, RestApi(manager, metrics, limits),
                              num_threads=rest_threads, max_body_bytes=max_body_bytes,
                              metrics_path=prometheus_path, timeout_s=timeout_ms / 1000,
                              max_connections=max_connections, streams=streams,
                              page=_page() if page and streams is not None else None)
        elif prometheus_path is not None:
            log.warning("monitoring_config enables Prometheus, but it is served on the "
                        "REST port, which is off")
        if grpc_port is not None:
            grpc_server, bound = make_grpc_server(manager, host, grpc_port,
                                                  max_workers=rest_threads,
                                                  max_message_bytes=max_body_bytes,
                                                  max_concurrent_rpcs=max_connections,
                                                  limits=limits, metrics=metrics)
        for source in waiting:
            log.warning("No versions of servable %s found under base path %s yet; looking "
                        "again every %g s", source.name, source.base_path, poll_seconds)
        manager.start()
        if streams is not None:
            streams.start()
        if rest is not None:
            rest.start()
        if grpc_server is not None:
            grpc_server.start()
    except BaseException:
        if streams is not None:
            streams.stop()
        if rest is not None:
            rest.stop()
        if grpc_server is not None:
            grpc_server.stop(grace=None)
        manager.stop()
        if batcher is not None:
            batcher.close()
        raise
    return Server(manager, rest, grpc_server, bound, batcher, host, metrics, streams)


# ------------------------------------------------------------------------------ CLI


def server_from_args(args: argparse.Namespace) -> Server:
    """Starts the server a parsed ``kvid serve`` command line describes."""
    batching = None
    if args.batching_parameters_file:
        batching = configs.read_batching_parameters(args.batching_parameters_file)
    monitoring = None
    if args.monitoring_config_file:
        monitoring = configs.read_monitoring_config(args.monitoring_config_file)
    return start_server(
        args.model_base_path, args.model_name,
        model_config_file=args.model_config_file,
        model_config_root=args.model_config_root,
        host=args.host,
        rest_port=args.rest_api_port or None,
        grpc_port=args.port,
        rest_threads=args.rest_api_num_threads,
        poll_seconds=args.file_system_poll_wait_seconds,
        batching_parameters=batching if args.enable_batching else None,
        enable_batching=args.enable_batching,
        enable_model_warmup=args.enable_model_warmup,
        max_body_bytes=args.max_body_bytes,
        monitoring_config=monitoring,
        model_config_poll_seconds=args.model_config_file_poll_wait_seconds,
        timeout_ms=args.rest_api_timeout_in_ms,
        max_connections=args.max_connections,
        max_decoded_pixels=args.max_decoded_pixels,
        stream_limits=StreamLimits(args.stream_sessions, args.stream_idle_timeout_s,
                                   args.stream_max_fps) if args.stream_sessions else None,
        page=args.page,
    )


def serve_command(args: argparse.Namespace) -> int:
    """Runs the server until SIGINT/SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = server_from_args(args)
    except OSError as e:  # a port in use, a base path gone: the flags are wrong (exit 2)
        raise ValueError(str(e)) from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: threading.Thread(target=server.stop).start())
    if server.rest_url:
        print(f"REST  {server.rest_url}/v1/models/<name>", flush=True)
    if server.metrics_url:
        print(f"Prometheus  {server.metrics_url}", flush=True)
    if server.streams is not None:
        print(f"Streams  {server.rest_url}{STREAMS_PATH}", flush=True)
    if server.page_url:
        print(f"Page  {server.page_url}", flush=True)
    print(f"gRPC  {server.grpc_target}", flush=True)
    server.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m kvid.serving.server <TF Serving flags>``: the same as ``kvid serve``
    (whose dispatcher runs ``check_serve_args`` before TensorFlow is imported)."""
    parser = configure_serve_parser(OneLineParser(
        prog="kvid serve", description=__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    check_serve_args(args)
    return serve_command(args)


if __name__ == "__main__":
    raise SystemExit(main())
