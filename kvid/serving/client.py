"""A Python client for TF Serving (and ``kvid serve``) over REST or gRPC, and ``kvid predict``.

``Client.predict`` returns ``{output_name: ndarray}`` whichever transport is used: REST
answers are typed with the signature from the model's metadata (string outputs become
bytes, ``*_bytes`` outputs are base64-decoded), so REST and gRPC results compare equal.

Example:

    client = Client(rest_url="http://127.0.0.1:8501", model="kvid")
    out = client.predict({"frames": [jpeg_bytes_of_16_frames]})
    out["labels"][0], out["scores"][0]
"""

from __future__ import annotations

import abc
import argparse
import base64
import contextlib
import csv
import http.client
import json
import math
import os
import sys
import threading
import urllib.parse
from typing import Any

import grpc
import numpy as np

from kvid.cliargs import non_negative_int, positive_float, positive_int
from kvid.serving.contract import (BATCH_SIZE_INPUT, CLASSES_OUTPUT, DEFAULT_SIGNATURE,
                                   FRAMES_INPUT, LABELS_OUTPUT, METADATA_INPUT,
                                   METADATA_OUTPUT, METADATA_SIGNATURE, PROBABILITIES_OUTPUT,
                                   STREAM_INIT_SIGNATURE, STREAM_INPUTS,
                                   STREAM_STEP_SIGNATURE, STREAMS_PATH)
from kvid.serving.errors import HTTP_STATUS, ServingError

_CODE_OF_HTTP = {status: code for code, status in reversed(HTTP_STATUS.items())}
_CODE_OF_HTTP[413] = grpc.StatusCode.RESOURCE_EXHAUSTED  # over kvid serve's body limit
_NUMPY_OF_DT = {"DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT32": np.int32,
                "DT_INT64": np.int64, "DT_INT16": np.int16, "DT_INT8": np.int8,
                "DT_UINT8": np.uint8, "DT_UINT16": np.uint16, "DT_UINT32": np.uint32,
                "DT_UINT64": np.uint64, "DT_BOOL": np.bool_, "DT_HALF": np.float16,
                "DT_STRING": object}


def _jsonable(value: Any) -> Any:
    """Python/numpy values -> JSON values, bytes as ``{"b64": ...}``."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value: Any, dtype: str, as_bytes: bool) -> np.ndarray:
    """A REST output value -> ndarray of the signature's dtype (strings as bytes)."""
    np_type = _NUMPY_OF_DT.get(dtype)
    if np_type is not object:
        return np.asarray(value, dtype=np_type)

    def to_bytes(v):
        if isinstance(v, list):
            return [to_bytes(x) for x in v]
        return base64.b64decode(v["b64"]) if as_bytes else v.encode("utf-8", "surrogateescape")

    return np.array(to_bytes(value), dtype=object)


class Client:
    """TF Serving client: REST (``rest_url``) or gRPC (``grpc_target``, preferred if both)."""

    def __init__(self, rest_url: str | None = None, grpc_target: str | None = None,
                 model: str = "kvid", *, timeout: float = 60.0):
        if not rest_url and not grpc_target:
            raise ValueError("Give rest_url or grpc_target (or both).")
        self.model = model
        self.timeout = timeout
        self.rest_url = rest_url.rstrip("/") if rest_url else None
        self._url = urllib.parse.urlsplit(self.rest_url) if rest_url else None
        self.grpc_target = grpc_target
        self._local = threading.local()  # one keep-alive HTTP connection per thread
        self._metadata: dict[Any, dict] = {}
        self._channel = self._stubs = None
        if grpc_target:
            from tensorflow_serving.apis import (model_service_pb2_grpc,
                                                 prediction_service_pb2_grpc)
            self._channel = grpc.insecure_channel(grpc_target, options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1)])
            self._stubs = (prediction_service_pb2_grpc.PredictionServiceStub(self._channel),
                           model_service_pb2_grpc.ModelServiceStub(self._channel))

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----------------------------------------------------------------- transports

    def _path(self, version: int | None, suffix: str = "") -> str:
        path = f"{self._url.path}/v1/models/{urllib.parse.quote(self.model, safe='')}"
        return path + (f"/versions/{version}" if version is not None else "") + suffix

    def _rest(self, method: str, path: str, body: bytes | None = None,
              content_type: str = "application/json") -> dict:
        for attempt in (0, 1):  # a kept-alive connection may have been closed by the server
            conn = getattr(self._local, "conn", None)
            if conn is None:
                https = self._url.scheme == "https"
                connection = http.client.HTTPSConnection if https else http.client.HTTPConnection
                conn = self._local.conn = connection(
                    self._url.hostname, self._url.port or (443 if https else 80),
                    timeout=self.timeout)
            try:
                conn.request(method, path, body=body,
                             headers={"Content-Type": content_type} if body else {})
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if not 200 <= response.status < 300:
            try:
                message = json.loads(data)["error"]
            except (ValueError, KeyError, TypeError):
                message = data.decode("utf-8", "replace") or response.reason
            code = _CODE_OF_HTTP.get(response.status, grpc.StatusCode.UNKNOWN)
            raise ServingError(code, message)
        return json.loads(data)

    def _grpc(self, stub_index: int, method: str, request):
        try:
            return getattr(self._stubs[stub_index], method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code(), e.details()) from None

    def _model_spec(self, spec, version, signature_name=None):
        spec.name = self.model
        if version is not None:
            spec.version.value = version
        if signature_name:
            spec.signature_name = signature_name

    # --------------------------------------------------------------------- API

    def metadata(self, version: int | None = None) -> dict:
        """The REST metadata document (``model_spec`` and ``metadata.signature_def``)."""
        if self._stubs is None:
            return self._rest("GET", self._path(version, "/metadata"))
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=["signature_def"])
        self._model_spec(request.model_spec, version)
        response = self._grpc(0, "GetModelMetadata", request)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sigs)

        def as_dict(message):
            return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                             always_print_fields_with_no_presence=True)

        return {"model_spec": as_dict(response.model_spec),
                "metadata": {"signature_def": as_dict(sigs)}}

    def status(self, version: int | None = None) -> dict:
        """The REST status document (``model_version_status`` list)."""
        if self._stubs is None:
            return self._rest("GET", self._path(version))
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, version)
        return json_format.MessageToDict(self._grpc(1, "GetModelStatus", request),
                                         preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)

    def signature(self, signature_name: str = DEFAULT_SIGNATURE,
                  version: int | None = None) -> dict:
        """One SignatureDef as a dict (cached): ``inputs``/``outputs`` with dtype and shape."""
        sigs = self._signature_defs(version)
        if signature_name not in sigs:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f'Serving signature name: "{signature_name}" not found '
                               "in signature def")
        return sigs[signature_name]

    def _signature_defs(self, version: int | None) -> dict:
        """All SignatureDefs of a version, fetched once per client (one metadata request)."""
        if version not in self._metadata:
            self._metadata[version] = \
                self.metadata(version)["metadata"]["signature_def"]["signature_def"]
        return self._metadata[version]

    def input_shape(self, name: str, signature_name: str = DEFAULT_SIGNATURE,
                    version: int | None = None) -> list[int]:
        """The signature's shape of input ``name`` (-1 for unknown dims)."""
        info = self.signature(signature_name, version)["inputs"][name]
        return [int(d["size"]) for d in info.get("tensor_shape", {}).get("dim", [])]

    def model_info(self, version: int | None = None) -> dict | None:
        """The preprocessing a kvid model was exported with (its ``kvid_metadata``
        signature: labels, clip_frames, image_size, normalization, fps), or None for a
        model without that signature."""
        if METADATA_SIGNATURE not in self._signature_defs(version):
            return None
        out = self.predict({METADATA_INPUT: np.array([b""], dtype=object)},
                           METADATA_SIGNATURE, version)
        return json.loads(out[METADATA_OUTPUT][0])

    def predict(self, inputs: dict | list, signature_name: str = DEFAULT_SIGNATURE,
                version: int | None = None) -> dict[str, np.ndarray]:
        """Runs a signature. ``inputs``: ``{name: batch}`` (columnar) or a list of instances
        (row: values, or ``{name: value}`` dicts). Bytes are sent as binary."""
        sig = self.signature(signature_name, version)
        if self._stubs is not None:
            return self._predict_grpc(inputs, sig, signature_name, version)
        if isinstance(inputs, dict):
            body = {"signature_name": signature_name, "inputs": _jsonable(inputs)}
        else:
            body = {"signature_name": signature_name, "instances": _jsonable(list(inputs))}
        doc = self._rest("POST", self._path(version, ":predict"),
                         json.dumps(body).encode())
        outputs = sig["outputs"]
        names = sorted(outputs)
        if "predictions" in doc:
            rows = doc["predictions"]
            columns = ({n: [r[n] for r in rows] for n in names} if len(names) > 1
                       else {names[0]: rows})
        else:
            columns = doc["outputs"] if len(names) > 1 else {names[0]: doc["outputs"]}
        return {n: _from_json(v, outputs[n]["dtype"], n.endswith("_bytes"))
                for n, v in columns.items()}

    def open_stream(self, top_k: int = 5, version: int | None = None, *,
                    carry: bool = False, window: int | None = None,
                    stride: int | None = None) -> "Stream":
        """A frame-by-frame classifier. Over REST to ``kvid serve`` the server holds what
        a stream needs (a stream session); ``carry`` (and always over gRPC, or against TF
        Serving) keeps it here: a stream model's states go to ``stream_step`` and come back
        each step; any other model's last ``window`` frames are kept and a clip of them
        goes to ``serving_default`` every ``stride`` frames (kvid.video.StreamWindows)."""
        if carry or self._stubs is not None:
            if STREAM_STEP_SIGNATURE in self._signature_defs(version):
                return CarriedStream(self, top_k, version)
            return WindowStream(self, top_k, version, window, stride)
        return SessionStream(self, top_k, version, window, stride)

    def _predict_grpc(self, inputs, sig, signature_name, version) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow.core.framework import types_pb2
        from tensorflow_serving.apis import predict_pb2

        from kvid.serving.tensor_proto import from_tensor_proto, to_tensor_proto

        specs = sig["inputs"]
        if not isinstance(inputs, dict):  # row format: stack the instances
            items = list(inputs)
            if len(specs) > 1 or (items and isinstance(items[0], dict)):
                inputs = {n: [item[n] for item in items] for n in specs}
            else:
                inputs = {next(iter(specs)): items}
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, version, signature_name)
        for name, value in inputs.items():
            dtype = tf.as_dtype(types_pb2.DataType.Value(specs[name]["dtype"])) \
                if name in specs else None  # unknown names are left to the server to refuse
            request.inputs[name].CopyFrom(to_tensor_proto(value, dtype))
        response = self._grpc(0, "Predict", request)
        return {k: from_tensor_proto(v) for k, v in response.outputs.items()}


def ranked(probs: np.ndarray, labels: list[str] | dict[int, str],
           k: int) -> list[tuple[int, str, float]]:
    """The k best (class, label, score) of one probability vector, ties in class order;
    a class beyond the label map is named ``#<class>``."""
    names = labels if isinstance(labels, dict) else dict(enumerate(labels))
    return [(int(c), names.get(int(c), f"#{c}"), float(probs[c]))
            for c in np.argsort(-probs, kind="stable")[:k]]


def output_labels(out: dict[str, np.ndarray], index: int) -> dict[int, str]:
    """{class: label} of the classes a kvid signature returned in its own top-k: the
    names of a model whose label map the client cannot read (a SavedModel asset)."""
    if CLASSES_OUTPUT not in out or LABELS_OUTPUT not in out:
        return {}
    return {int(c): lab.decode("utf-8", "replace") if isinstance(lab, bytes) else str(lab)
            for c, lab in zip(out[CLASSES_OUTPUT][index].tolist(),
                              out[LABELS_OUTPUT][index].tolist())}


def _downscaled(rgb: np.ndarray, short_side: int) -> np.ndarray:
    """A frame as ``--short-side`` sends it: smaller, never upscaled (0: as decoded)."""
    from kvid.video import resize_frame

    if short_side and min(rgb.shape[:2]) > short_side:
        return resize_frame(rgb, short_side=short_side)
    return rgb


class Stream(abc.ABC):
    """``send(frames)`` (JPEG bytes, one or a few) -> the top-k [(label, score)] for
    everything sent so far; ``frames`` counts them; ``close()`` ends the stream. A window
    model's stream answers its latest window's top-k (none before the first is full) and
    lists the windows each ``send`` completed in ``windows``: [(first frame, end, top-k)]."""

    frames = 0
    window: int | None = None  # frames per window (None: a stream model, frame by frame)
    windows: list[tuple[int, int, list[tuple[str, float]]]] = []

    @abc.abstractmethod
    def send(self, frames: list[bytes]) -> list[tuple[str, float]]:
        """One step: these frames after the ones sent before."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pairs(top_k: list[dict]) -> list[tuple[str, float]]:
    return [(t["label"], t["score"]) for t in top_k]


class SessionStream(Stream):
    """What the stream needs is held by ``kvid serve`` (kvid.serving.streams): only
    frames travel."""

    def __init__(self, client: Client, top_k: int, version: int | None,
                 window: int | None = None, stride: int | None = None):
        self._client = client
        body = {"model_name": client.model, "top_k": top_k}
        for key, value in (("model_version", version), ("window", window),
                           ("stride", stride)):
            if value is not None:
                body[key] = value
        doc = client._rest("POST", client._url.path + STREAMS_PATH,
                           json.dumps(body).encode())
        self.session, self.labels = doc["session"], doc["labels"]
        self.window = doc.get("window")
        self._path = f"{client._url.path}{STREAMS_PATH}/{self.session}"
        self._open = True

    def send(self, frames: list[bytes]) -> list[tuple[str, float]]:
        if len(frames) == 1:  # one frame: the JPEG itself, no base64
            doc = self._client._rest("POST", self._path, frames[0], "image/jpeg")
        else:
            doc = self._client._rest("POST", self._path, json.dumps(
                {"frames": _jsonable(list(frames))}).encode())
        self.frames = doc["frames"]
        self.windows = [(w["start"], w["end"], _pairs(w["top_k"]))
                        for w in doc.get("windows", [])]
        return _pairs(doc["top_k"])

    def close(self) -> None:
        if self._open:
            self._open = False
            self._client._rest("DELETE", self._path)


class CarriedStream(Stream):
    """TF Serving's way: the states go to ``stream_step`` and come back each step."""

    def __init__(self, client: Client, top_k: int, version: int | None):
        self._client, self._version, self._top_k = client, version, top_k
        info = client.model_info(version) or {}
        self.labels = list(info.get("labels", []))
        self.states = client.predict({BATCH_SIZE_INPUT: np.array(1, np.int32)},
                                     STREAM_INIT_SIGNATURE, version)

    def send(self, frames: list[bytes]) -> list[tuple[str, float]]:
        out = self._client.predict({FRAMES_INPUT: np.array([list(frames)], dtype=object),
                                    **self.states}, STREAM_STEP_SIGNATURE, self._version)
        self.states = {k: out[k] for k in self.states}
        self.frames += len(frames)
        return [(label, score) for _, label, score in
                ranked(out[PROBABILITIES_OUTPUT][0], self.labels, self._top_k)]


class WindowStream(Stream):
    """A window model through TF Serving's API: the last frames are kept here and each
    window's clip goes to ``serving_default``, as a stream session does server side."""

    def __init__(self, client: Client, top_k: int, version: int | None,
                 window: int | None = None, stride: int | None = None):
        from kvid.video.sampling import StreamWindows

        self._client, self._version, self._top_k = client, version, top_k
        info = client.model_info(version) or {}
        if info.get("modality", "rgb") != "rgb" or info.get("members"):
            raise ValueError(f"model {client.model} reads {info.get('modality', 'several')}"
                             " streams: only RGB frames stream; classify its windows with "
                             "--sliding-window")
        shape = client.input_shape(FRAMES_INPUT, DEFAULT_SIGNATURE, version)
        clip_frames = shape[1] if len(shape) == 2 and shape[1] > 0 else info.get(
            "clip_frames")
        if not clip_frames:
            raise ValueError(f"model {client.model} does not say how many frames a clip "
                             "holds; it cannot stream")
        self._windows = StreamWindows.for_model(info, int(clip_frames), window, stride)
        self.window = self._windows.window
        self.labels = list(info.get("labels", []))
        self._latest: list[tuple[str, float]] = []

    def send(self, frames: list[bytes]) -> list[tuple[str, float]]:
        ready = [w for w in map(self._windows.push, frames) if w is not None]
        self.frames += len(frames)
        self.windows = []
        if ready:
            out = self._client.predict(
                {FRAMES_INPUT: np.array([clip for _, clip in ready], dtype=object)},
                DEFAULT_SIGNATURE, self._version)
            for j, (first, _) in enumerate(ready):
                top = [(label, score) for _, label, score in ranked(
                    out[PROBABILITIES_OUTPUT][j], self.labels or output_labels(out, j),
                    self._top_k)]
                self.windows.append((first, first + self.window, top))
            self._latest = self.windows[-1][2]
        return self._latest


# --------------------------------------------------------------------- kvid predict


def rest_url(text: str) -> str:
    """An ``http(s)://host[:port]`` base URL, checked before anything connects."""
    parts = urllib.parse.urlsplit(text)
    try:
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise argparse.ArgumentTypeError(
            f"expected a URL like http://127.0.0.1:8501, got {text!r}")
    return text


def grpc_address(text: str) -> str:
    """``HOST:PORT`` with a port in 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT like 127.0.0.1:8500, "
                                         f"got {text!r}")
    return text


def configure_predict_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("video", nargs="?", help="video file to classify")
    parser.add_argument("--camera", default=None, metavar="N|FORMAT:URL",
                        help="classify live video instead of a file (implies --stream): "
                             "camera N, or any FFmpeg input such as v4l2:/dev/video2 or "
                             "lavfi:testsrc2=rate=25,realtime; until Ctrl-C or --duration")
    parser.add_argument("--duration", type=positive_float, default=None, metavar="SECONDS",
                        help="with --camera: stop after this long")
    parser.add_argument("--server", default="http://127.0.0.1:8501", type=rest_url,
                        help="REST base URL of TF Serving or kvid serve")
    parser.add_argument("--grpc", default=None, metavar="HOST:PORT", type=grpc_address,
                        help="use gRPC at this address instead of REST")
    parser.add_argument("--model", default="kvid")
    parser.add_argument("--version", type=positive_int, default=None)
    parser.add_argument("--signature", default=DEFAULT_SIGNATURE)
    parser.add_argument("--fps", type=positive_float, default=None,
                        help="resample the video to this frame rate (default: the rate the "
                             f"model was trained at, from its {METADATA_SIGNATURE} signature; "
                             "else the video's own)")
    parser.add_argument("--short-side", type=non_negative_int, default=256,
                        help="downscale frames to this short side before sending (0: as "
                             "decoded); the model resizes in-graph, this only saves bandwidth")
    parser.add_argument("--frames", type=positive_int, default=16,
                        help="frames per clip when the model's metadata leaves T open")
    parser.add_argument("--clips", type=positive_int, default=3,
                        help="evenly spaced clips averaged for the whole-video answer")
    parser.add_argument("--top-k", type=positive_int, default=5)
    parser.add_argument("--batch-size", type=positive_int, default=8, help="clips per request")
    parser.add_argument("--sliding-window", type=positive_float, default=None,
                        metavar="SECONDS", help="classify window by window and write a "
                        "timeline (with --stream: the window a window model classifies)")
    parser.add_argument("--stride", type=positive_float, default=None, metavar="SECONDS",
                        help="window step (default: the window length; with --stream: half "
                             "the window)")
    parser.add_argument("--stream", action="store_true",
                        help="play the video at its rate and print the label whenever it "
                             "changes: a stream model (movinet_*_stream) frame by frame, any "
                             "other RGB model window by window (default window: the clip it "
                             "was trained on)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="with --stream: send frames as fast as the server answers")
    parser.add_argument("--carry-states", action="store_true",
                        help="with --stream: keep the stream here, not in a kvid serve "
                             "stream session (TF Serving's way; always over --grpc): the "
                             f"states go back through {STREAM_STEP_SIGNATURE} each step, a "
                             "window model's last frames are kept here")
    parser.add_argument("--timeline", default=None, metavar="OUT.json|csv")
    parser.add_argument("--strip", default=None, metavar="OUT.png")
    return parser


def _classify_clips(client: Client, clips: list[dict[str, list[bytes]]],
                    args) -> list[dict]:
    """Per clip (its frames per input name): probabilities plus the model's own top-k
    labels and scores."""
    results = []
    for i in range(0, len(clips), args.batch_size):
        batch = clips[i:i + args.batch_size]
        inputs = {name: np.array([c[name] for c in batch], dtype=object) for name in batch[0]}
        out = client.predict(inputs, args.signature, args.version)
        for j in range(len(batch)):
            results.append({k: v[j] for k, v in out.items()})
    return results


def _top_k(results: list[dict], k: int) -> list[tuple[str, float]]:
    """Top-k of the mean probabilities over clips, at most as many as the model names.

    Class names come from the ``labels`` the model returned with its own top-k (the label
    map itself is a SavedModel asset, which TF Serving does not expose).
    """
    names = {}
    for r in results:
        names.update(output_labels({k: v[None] for k, v in r.items()}, 0))
    k = min(k, len(results[0][LABELS_OUTPUT]))
    mean = np.mean([r[PROBABILITIES_OUTPUT] for r in results], axis=0)
    return [(names.get(int(c), f"#{int(c)}"), float(mean[c])) for c in np.argsort(-mean)[:k]]


def _write_timeline(path: str, video: str, rows: list[dict]) -> None:
    if path.lower().endswith(".csv"):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            k = max(len(r["top"]) for r in rows)
            w.writerow(["start", "end"] + [c for i in range(1, k + 1)
                                           for c in (f"label{i}", f"score{i}")])
            for r in rows:
                w.writerow([f"{r['start']:.3f}", f"{r['end']:.3f}"] +
                           [x for lab, s in r["top"] for x in (lab, f"{s:.6f}")])
        return
    with open(path, "w") as f:
        json.dump({"video": os.path.abspath(video) if os.path.exists(video) else video,
                   "windows": [{"start": r["start"], "end": r["end"],
                                "labels": [lab for lab, _ in r["top"]],
                                "scores": [s for _, s in r["top"]]} for r in rows]},
                  f, indent=1)


def _write_strip(path: str, rows: list[dict], thumbs: list[np.ndarray]) -> None:
    """Thumbnails of each window over a band coloured by its top label.

    Drawn on a :class:`~matplotlib.figure.Figure` without pyplot, so no backend is selected and
    a notebook's inline backend stays as it is.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    labels = sorted({r["top"][0][0] for r in rows})
    colors = {lab: colormaps["tab10"](i % 10) for i, lab in enumerate(labels)}
    end = rows[-1]["end"]
    fig = Figure(figsize=(max(6.0, 1.2 * len(rows)), 2.6))
    ax = fig.subplots()
    for r, thumb in zip(rows, thumbs):
        lab, score = r["top"][0]
        ax.imshow(thumb, extent=(r["start"], r["end"], 1.05, 2.0), aspect="auto")
        ax.add_patch(Rectangle((r["start"], 0), r["end"] - r["start"], 1.0,
                               color=colors[lab], alpha=0.35 + 0.65 * score))
        ax.text((r["start"] + r["end"]) / 2, 0.5, f"{lab}\n{score:.2f}", ha="center",
                va="center", fontsize=8)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 2.0)
    ax.set_yticks([])
    ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def predict_command(args: argparse.Namespace) -> int:
    """``kvid predict``: top-k labels of a video, or a sliding-window timeline."""
    from kvid.video import VideoError

    if (args.video is None) == (args.camera is None):
        print("kvid predict: error: give a video file or --camera", file=sys.stderr)
        return 2
    if args.camera is not None:
        from kvid.video.camera import camera_source

        try:
            camera_source(args.camera)
        except ValueError as e:
            print(f"kvid predict: error: --camera: {e}", file=sys.stderr)
            return 2
    elif args.duration is not None:
        print("kvid predict: error: --duration applies to --camera", file=sys.stderr)
        return 2
    client = Client(rest_url=None if args.grpc else args.server, grpc_target=args.grpc,
                    model=args.model)
    try:
        return (_predict_stream if args.stream or args.camera else _predict)(client, args)
    except (ServingError, VideoError, ValueError) as e:
        print(f"kvid predict: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()


def flow_gray(rgb: np.ndarray, flow: dict) -> np.ndarray:
    """A decoded frame as ``kvid ingest --flow`` feeds it to the flow: resized as the
    ingest resized it (the model's ``flow`` metadata), then gray."""
    import cv2

    from kvid.video import resize_frame

    size = tuple(flow["size"]) if flow.get("size") else None
    return cv2.cvtColor(resize_frame(rgb, short_side=flow.get("short_side"), size=size),
                        cv2.COLOR_RGB2GRAY)


def flow_images(grays: list[np.ndarray], flow: dict, backward: bool = False) -> list[bytes]:
    """The 8-bit flow images between consecutive gray frames, as ingest stores them: its
    flow method and JPEG quality, by its own code; ``backward``: frame i + 1 back to i."""
    from kvid.video.flow import flow_jpeg, make_flow_fn

    if not flow.get("method"):
        raise ValueError("the model takes flow but its metadata does not say how the flow "
                         "was made: export it again with this kvid")
    fn = make_flow_fn(flow["method"])
    quality = int(flow.get("jpeg_quality", 90))
    return [flow_jpeg(fn, b, a, quality) if backward else flow_jpeg(fn, a, b, quality)
            for a, b in zip(grays, grays[1:])]


def _streams(client: Client, info: dict, args) -> dict[str, dict]:
    """{input name: how to make its clips} from the model's kvid_metadata: one input for a
    model, one per stream its members read for a fused one (``kvid fuse``)."""
    from kvid.video.sampling import backward_flow_mask

    members = info.get("members") or [info]
    streams = {}
    for m in members:
        kinds = m.get("modality", "rgb").split("+")
        for kind in kinds:
            name = STREAM_INPUTS[kind]
            if name in streams:
                continue
            shape = client.input_shape(name, args.signature, args.version)
            images = shape[1] if len(shape) > 1 and shape[1] > 0 else None
            t = (images // 2 if kind == "rgbdiff" else images) if images else args.frames
            backward = None
            if kind == "flow" and m.get("flow_direction") == "bidirectional":
                backward = backward_flow_mask(t, int(m["flow_stack"]))
            streams[name] = {
                "kind": kind,
                "flow": (m.get("flow") or {}) if kind == "flow" else None,
                "backward": backward,  # per flow image of a clip: a backward flow?
                "t": t,  # positions per clip (an RGB difference sends 2 frames each)
                # a two-stream model's flow: centred on its RGB clip, as in training
                "follows": FRAMES_INPUT if len(kinds) > 1 and kind == "flow" else None,
                # the frames of each clip as the model was evaluated (its sampling)
                "sampling": {"sampling": m.get("sampling", "dense"),
                             "frame_step": int(m.get("frame_step", 1)),
                             "num_segments": int(m.get("num_segments", 3))}}
    return streams


def _predict_stream(client: Client, args: argparse.Namespace) -> int:
    """``kvid predict --stream`` / ``--camera``: frames sent one by one as a player would
    show them; a line per change of the top label; the timeline one row per frame (a
    stream model) or per window (a window model)."""
    import time

    from kvid.video import encode_jpeg, probe

    info = client.model_info(args.version) or {}
    if info.get("modality", "rgb") != "rgb":
        raise ValueError("--stream plays RGB frames; this model reads "
                         f"{info.get('modality')}")
    source = args.video or f"camera {args.camera}"
    fps = args.fps or info.get("fps") or (None if args.camera else probe(args.video).fps) \
        or 25.0
    window = max(1, round(args.sliding_window * fps)) if args.sliding_window else None
    stride = max(1, round(args.stride * fps)) if args.stride else None
    latencies, rows, top = [], [], None
    with client.open_stream(args.top_k, args.version, carry=args.carry_states,
                            window=window, stride=stride) as stream:
        if stream.window is None and (window or stride):
            raise ValueError("a stream model steps frame by frame: --sliding-window and "
                             "--stride apply to window models")
        how = f"a window of {stream.window} frames" if stream.window else "frame by frame"
        print(f"kvid predict: streaming {source} at {fps:g} fps, {how}"
              f"{'' if args.realtime or args.camera else ' (as fast as answered)'}",
              file=sys.stderr)
        frames = _live(args.camera, fps, args.duration) if args.camera else \
            _played(args.video, fps, args.realtime)
        with contextlib.closing(frames), _until_interrupted(args.camera is not None):
            for t, rgb in frames:
                jpeg = encode_jpeg(_downscaled(rgb, args.short_side))
                sent = time.monotonic()
                now = stream.send([jpeg])
                latencies.append((time.monotonic() - sent) * 1000)
                new = [{"start": a / fps, "end": b / fps, "top": top_k}
                       for a, b, top_k in stream.windows] if stream.window else \
                    [{"start": t, "end": t + 1 / fps, "top": now}]
                for row in new:
                    rows.append(row)
                    if top != row["top"][0][0]:
                        top = row["top"][0][0]
                        print(f"{t:8.2f}s  {row['top'][0][1]:.4f}  {top}", flush=True)
    if not rows:
        raise ValueError(f"{source} has no frames" if not latencies else
                         f"{source} gave {len(latencies)} frames, fewer than one window "
                         f"of {stream.window}")
    print(f"kvid predict: {len(latencies)} frames, per-frame latency p50 "
          f"{np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms",
          file=sys.stderr)
    for label, score in rows[-1]["top"]:
        print(f"{score:.4f}  {label}")
    if args.timeline:
        _write_timeline(args.timeline, source, rows)
    return 0


def _played(video: str, fps: float, realtime: bool):
    """(t, frame) of a file at ``fps``; in real time, none before it is on screen."""
    import time

    from kvid.video import iter_frames

    start = time.monotonic()
    for frame in iter_frames(video, fps=fps):
        t = frame.index / fps
        if realtime:
            time.sleep(max(0.0, start + t - time.monotonic()))
        yield t, frame.rgb


@contextlib.contextmanager
def _until_interrupted(live: bool):
    """Ctrl-C ends a live stream (the summary follows); a file's play is aborted."""
    try:
        yield
    except KeyboardInterrupt:
        if not live:
            raise


def _live(camera: str, fps: float, duration: float | None):
    """(t, frame) of a live source, at most ``fps`` frames a second (t: when the frame
    came, from the first): the newest frame whenever the consumer is ready, so a slow one
    skips frames rather than falling behind; until ``duration``."""
    from kvid.video.camera import LiveFrames

    period, jitter = 1.0 / fps, 0.25 / fps
    with LiveFrames(camera) as live:
        first = due = None
        last = -1
        while True:
            frame = live.newest(after=last)
            if frame is None:  # the source ended
                return
            last = frame.number
            first = frame.time if first is None else first
            if duration is not None and frame.time - first >= duration:
                return
            if due is not None and frame.time < due - jitter:
                continue  # the source is faster than fps
            due = max(due or frame.time, frame.time) + period
            yield frame.time - first, frame.rgb


def _predict(client: Client, args: argparse.Namespace) -> int:
    from kvid.video import encode_jpeg, iter_frames, probe, window_clips
    from kvid.video.sampling import clip_positions, flow_positions

    info = client.model_info(args.version) or {}
    streams = _streams(client, info, args)
    target_fps = args.fps or info.get("fps") or next(
        (m.get("fps") for m in info.get("members", []) if m.get("fps")), None)
    flow = next((s["flow"] for s in streams.values() if s["flow"] is not None), None)
    need_backward = any(s["backward"] for s in streams.values())
    rgb_frames, grays, times = [], [], []
    for frame in iter_frames(args.video, fps=target_fps):
        rgb = frame.rgb
        if flow is not None:  # the flow between frames, made as ingest made it
            grays.append(flow_gray(rgb, flow))
        if any(s["flow"] is None for s in streams.values()):
            rgb_frames.append(encode_jpeg(_downscaled(rgb, args.short_side)))
        times.append(frame.time if target_fps is None else frame.index / target_fps)
    flow_frames = flow_images(grays, flow) if flow is not None else []
    backward_frames = flow_images(grays, flow, backward=True) if need_backward else []
    for s in streams.values():
        s["frames"] = flow_frames if s["flow"] is not None else rgb_frames
    first = next(iter(streams.values()))
    if first["flow"] is not None:
        times = times[:-1]  # a flow image per pair of frames
    fps = target_fps or probe(args.video).fps or 25.0
    source = ("--fps" if args.fps else "the model's rate" if target_fps else "the video's rate")
    print(f"kvid predict: {len(first['frames'])} frames at {fps:g} fps ({source}), clips of "
          f"{' + '.join(str(s['t']) for s in streams.values())}", file=sys.stderr)

    def images_at(frames: list[int], s: dict) -> list[bytes]:
        """What a stream sends for a clip at these frames, as training gathers it."""
        if s["kind"] == "rgbdiff":
            return [s["frames"][i + d] for i in frames for d in (0, 1)]
        if s["backward"]:
            return [(backward_frames if b else s["frames"])[i]
                    for i, b in zip(frames, s["backward"])]
        return [s["frames"][i] for i in frames]

    def clips_of(index: list[int] | None, max_clips: int | None) -> list[dict]:
        """The clips at the same positions of every stream (``index``: a window's frames)."""
        positions, per_stream = {}, {}
        for name, s in sorted(streams.items(), key=lambda kv: kv[1]["follows"] is not None):
            # an RGB difference needs each position's successor
            n = len(s["frames"]) - (s["kind"] == "rgbdiff")
            idx = list(range(n)) if index is None else [min(i, n - 1) for i in index]
            if s["follows"]:
                pos = [flow_positions(p, s["t"], len(idx)) for p in positions[s["follows"]]]
            else:
                pos = clip_positions(len(idx), s["t"], max_clips=max_clips, **s["sampling"])
            positions[name] = pos
            per_stream[name] = [images_at([idx[i] for i in p], s) for p in pos]
        count = min(len(c) for c in per_stream.values())
        return [{name: c[i] for name, c in per_stream.items()} for i in range(count)]

    if args.sliding_window is None:
        for label, score in _top_k(_classify_clips(client, clips_of(None, args.clips), args),
                                   args.top_k):
            print(f"{score:.4f}  {label}")
        return 0
    window = max(1, round(args.sliding_window * fps))
    stride = max(1, round((args.stride or args.sliding_window) * fps))
    windows = window_clips(len(first["frames"]), window, stride=stride)
    clips = [clips_of(list(w), 1)[0] for w in windows]
    results = _classify_clips(client, clips, args)
    rows = [{"start": times[w[0]], "end": times[w[0]] + len(w) / fps,
             "top": _top_k([r], args.top_k)} for w, r in zip(windows, results)]
    for r in rows:
        label, score = r["top"][0]
        print(f"{r['start']:8.2f}-{r['end']:8.2f}s  {score:.4f}  {label}")
    if args.timeline:
        _write_timeline(args.timeline, args.video, rows)
    if args.strip:
        from kvid.video import decode_jpeg

        _write_strip(args.strip, rows, [decode_jpeg(first["frames"][w[len(w) // 2]])
                                        for w in windows])
    return 0
