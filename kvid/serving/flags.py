"""``kvid serve``'s flags and the checks that need no TensorFlow.

TF Serving's ``tensorflow_model_server`` flags keep their names and meaning; kvid's own
(``--host`` and the limits a hostile client must not get past) are grouped apart. The
checks here run before TensorFlow is imported, so a wrong port, host or base path is one
line and exit code 2, and the server library repeats the base-path check for Python
callers.
"""

from __future__ import annotations

import argparse
import os
import socket

from kvid.cliargs import (non_negative_float, non_negative_int, number_type, port,
                          positive_float, positive_int)
from kvid.serving.contract import STREAMS_PATH, WARMUP_PATH

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY_BYTES = 64 << 20
DEFAULT_TIMEOUT_MS = 30_000  # TF Serving's --rest_api_timeout_in_ms default
DEFAULT_MAX_CONNECTIONS = 512
# Decoded image pixels per request: 1e8 is ~300 MB of RGB, 3 clips of 16 full-HD frames,
# hundreds of times a model input of 16x224x224; an 8000x8000 JPEG alone is 6.4e7.
DEFAULT_MAX_DECODED_PIXELS = 100_000_000
# Stream sessions (kvid.serving.streams): open at once, idle seconds, frames/s each.
DEFAULT_STREAM_SESSIONS = 64
DEFAULT_STREAM_IDLE_TIMEOUT_S = 60.0
DEFAULT_STREAM_MAX_FPS = 60.0


def _flag_bool(text: str) -> bool:
    """TF Serving's boolean flags: ``--flag``, ``--flag=true``, ``--flag=false``."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false. Received: {text!r}")


def configure_serve_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """TF Serving's ``tensorflow_model_server`` flags, plus kvid's ``--host`` and limits."""
    tf_flags = parser.add_argument_group("TF Serving flags (same names and meaning)")
    tf_flags.add_argument("--port", type=port, default=8500,
                          help="gRPC port (0: any free port)")
    tf_flags.add_argument("--rest_api_port", type=port, default=8501,
                          help="REST port (0: REST off, as in TF Serving)")
    tf_flags.add_argument("--model_name", default="default")
    tf_flags.add_argument("--model_base_path", default=None,
                          help="folder of numeric version subfolders")
    tf_flags.add_argument("--model_config_file", default=None,
                          help="text ModelServerConfig (model_config_list, version labels)")
    tf_flags.add_argument("--rest_api_num_threads", type=positive_int, default=16,
                          help="requests run at once (REST and gRPC each)")
    tf_flags.add_argument("--rest_api_timeout_in_ms", type=number_type(integer=True, minimum=1),
                          default=DEFAULT_TIMEOUT_MS,
                          help="a REST client must send a request's headers, and then its "
                               "body, within this time (else 408 or a closed connection)")
    tf_flags.add_argument("--file_system_poll_wait_seconds", type=non_negative_float,
                          default=1.0,
                          help="how often to look for new versions (0: only at start)")
    tf_flags.add_argument("--enable_batching", type=_flag_bool, nargs="?", const=True,
                          default=False)
    tf_flags.add_argument("--batching_parameters_file", default=None,
                          help="text BatchingParameters")
    tf_flags.add_argument("--enable_model_warmup", type=_flag_bool, nargs="?", const=True,
                          default=True, help=f"replay {WARMUP_PATH}")
    tf_flags.add_argument("--monitoring_config_file", default=None,
                          help="text MonitoringConfig; prometheus_config { enable: true "
                               "path: ... } serves TF Serving's metrics (request_count, "
                               "request_latency, SavedModel loads) on the REST port at "
                               "that path (default /monitoring/prometheus/metrics)")
    tf_flags.add_argument("--model_config_file_poll_wait_seconds", type=non_negative_float,
                          default=0,
                          help="re-read --model_config_file this often and apply changes "
                               "(models added or removed, version policy, labels); a file "
                               "that fails to parse is logged and the last good config "
                               "kept (0: read once at start)")
    tf_flags.add_argument("--allow_version_labels_for_unavailable_models", type=_flag_bool,
                          nargs="?", const=True, default=False,
                          help="accepted; kvid serve always allows it (an unloaded "
                               "label's version answers 404)")
    own = parser.add_argument_group("kvid serve")
    own.add_argument("--host", default=DEFAULT_HOST,
                     help="address to bind (default loopback only; 0.0.0.0 for all)")
    own.add_argument("--max_body_bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES,
                     help="larger REST bodies get 413; larger gRPC messages, and gRPC "
                          "tensors that would decode larger, are refused")
    own.add_argument("--max_decoded_pixels", type=positive_int,
                     default=DEFAULT_MAX_DECODED_PIXELS,
                     help="pixels of all the JPEG/PNG images of one request together, read "
                          "from their headers before anything is decoded; more: 400")
    own.add_argument("--max_connections", type=positive_int, default=DEFAULT_MAX_CONNECTIONS,
                     help="open REST connections (more get 503 and are closed) and gRPC "
                          "calls in progress (more get RESOURCE_EXHAUSTED)")
    own.add_argument("--model_config_root", default=None,
                     help="folder that absolute base_paths of --model_config_file are "
                          "under (the container's /), e.g. serving")
    streams = parser.add_argument_group(
        "kvid serve stream sessions (stream models' states kept between requests, at "
        f"{STREAMS_PATH} on the REST port)")
    streams.add_argument("--stream_sessions", type=non_negative_int,
                         default=DEFAULT_STREAM_SESSIONS,
                         help="sessions open at once (more: 503); 0 turns the API off")
    streams.add_argument("--stream_idle_timeout_s", type=positive_float,
                         default=DEFAULT_STREAM_IDLE_TIMEOUT_S,
                         help="a session without a frame this long is dropped")
    streams.add_argument("--stream_max_fps", type=positive_float,
                         default=DEFAULT_STREAM_MAX_FPS,
                         help="frames per second one session may send (more: 429)")
    streams.add_argument("--page", type=_flag_bool, nargs="?", const=True, default=True,
                         help="serve the live page at / (a dropped video or the webcam "
                              "classified by a stream model); --page=false turns it off")
    return parser




def check_host(host: str) -> str:
    """``host`` if it resolves to an address this machine could bind."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"--host {host!r} is not an address or a known host name ({e})") \
            from None
    return host


def check_base_path(name: str, base_path: str, poll_seconds: float) -> bool:
    """Can versions of ``name`` ever load from ``base_path``? False: none yet, but polled.

    A missing path or a file fails (TF Serving: "Could not find base path"); a folder
    without numeric versions only waits when the file system is polled for them.
    """
    if not os.path.exists(base_path):
        raise FileNotFoundError(f"Could not find base path {base_path} for servable {name}")
    if not os.path.isdir(base_path):
        raise NotADirectoryError(f"Base path {base_path} for servable {name} is not a "
                                 f"folder of numeric version folders")
    if any(entry.isdigit() for entry in os.listdir(base_path)):
        return True
    if poll_seconds <= 0:
        raise FileNotFoundError(
            f"No versions of servable {name} found under base path {base_path}, and "
            f"--file_system_poll_wait_seconds=0 never looks again: nothing can load")
    return False


def check_serve_args(args: argparse.Namespace) -> None:
    """What can be checked of a ``kvid serve`` command line without starting anything."""
    check_host(args.host)
    if bool(args.model_base_path) == bool(args.model_config_file):
        raise ValueError("Give --model_base_path (with --model_name) or --model_config_file, "
                         "not both and not neither.")
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"--{flag} {path}: no such file")
    if args.model_base_path:
        check_base_path(args.model_name, os.path.abspath(args.model_base_path),
                        args.file_system_poll_wait_seconds)
