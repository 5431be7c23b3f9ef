"""Stream sessions: ``kvid serve`` holds a stream model's states between requests.

TF Serving keeps nothing between requests, so through its API a stream model's client
sends the states back with every frame (``Client.open_stream(carry=True)``). ``kvid serve``
also keeps them server side, beside ``/v1/``:

    POST   /kvid/streams        {"model_name", "model_version"?, "top_k"?}  -> 201 session
    POST   /kvid/streams/<id>   frames: an image/jpeg body (one frame) or
                                {"frames": [{"b64": ...}, ...]}            -> top-k so far
    DELETE /kvid/streams/<id>   -> the session's totals
    GET    /kvid/streams        -> open sessions and the limits

A model without stream signatures whose ``serving_default`` takes RGB JPEG clips streams
too: its session keeps the last ``window`` frames (a ring buffer; open with ``"window"`` and
``"stride"`` in frames, default the clip it was trained on and half of it) and classifies a
clip of them every ``stride`` frames, the windows ``kvid predict --sliding-window`` cuts from
a file; a step answers the latest window's top-k and the windows it completed.

A session is pinned to the version it opened on. The limits a client cannot get past:
``max_sessions`` open at once (more: 503), ``idle_timeout_s`` without a frame (then the
session is dropped and its id answers 404 "expired"), ``max_fps`` frames per second per
session (a token bucket holding one second of frames, at least one; over it: 429, the
states untouched), one step at a time per session (a second one meanwhile: 409), and the
server's decoded pixel limit per request, checked from the image headers before anything
is decoded.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import os
import re
import secrets
import threading
import time
from typing import Callable

import grpc
import numpy as np

from tensorflow.core.framework import types_pb2

from kvid.serving.contract import (ASSETS_DIR, BATCH_SIZE_INPUT, DEFAULT_SIGNATURE,
                                   FRAMES_INPUT, PREPROCESSING_FILE, PROBABILITIES_OUTPUT,
                                   STREAM_INIT_SIGNATURE, STREAM_STEP_SIGNATURE, STREAMS_PATH)
from kvid.serving.client import output_labels, ranked
from kvid.serving.errors import ServingError, invalid_argument, not_found
from kvid.serving.flags import (DEFAULT_STREAM_IDLE_TIMEOUT_S, DEFAULT_STREAM_MAX_FPS,
                                DEFAULT_STREAM_SESSIONS)
from kvid.serving.json_tensor import parse_json
from kvid.serving.limits import RequestLimits, image_pixels
from kvid.serving.servables import ModelManager, Servable
from kvid.video.sampling import StreamWindows

_SESSION_RE = re.compile(STREAMS_PATH + r"(?:/([A-Za-z0-9_-]+))?/?")
_REMEMBER_EXPIRED = 4096  # ids kept to answer "expired" rather than "unknown"
MAX_WINDOW_FRAMES = 256  # frames (JPEGs) a window model's session holds at most
DEFAULT_TOP_K = 5


@dataclasses.dataclass(frozen=True)
class StreamLimits:
    """``kvid serve --stream_sessions/--stream_idle_timeout_s/--stream_max_fps``."""

    max_sessions: int = DEFAULT_STREAM_SESSIONS
    idle_timeout_s: float = DEFAULT_STREAM_IDLE_TIMEOUT_S
    max_fps: float = DEFAULT_STREAM_MAX_FPS


@dataclasses.dataclass(eq=False)
class _Session:
    id: str
    servable: Servable
    preprocessing: dict  # the export's kvid.json: labels, fps, image size ...
    top_k: int
    states: dict[str, np.ndarray]
    tokens: float  # frames the rate cap allowed at ``last``
    last: float  # when the latest step (or the open) arrived: the bucket refills from it
    seen: float  # when the session was last active (a step ended): idle from then
    windows: StreamWindows | None = None  # a window model's ring buffer (else states)
    latest: list | None = None  # a window model's top-k of its latest window
    frames: int = 0
    steps: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _bucket(max_fps: float) -> float:
    """The token bucket's size: a second of frames, and at least one frame."""
    return max(1.0, max_fps)


def _preprocessing(servable: Servable) -> dict:
    try:
        with open(os.path.join(servable.path, ASSETS_DIR, PREPROCESSING_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def parse_frames(body: bytes, content_type: str) -> list[bytes]:
    """The frames of a step request: a raw ``image/jpeg`` body or ``{"frames": [{"b64"}]}``."""
    if content_type.split(";")[0].strip().lower().startswith("image/"):
        if not body:
            raise invalid_argument("The image body is empty")
        return [body]
    frames = parse_json(body).get("frames")
    if not isinstance(frames, list) or not frames:
        raise invalid_argument('Expected {"frames": [{"b64": "<JPEG>"}, ...]} with at least '
                               'one frame, or one frame as an image/jpeg body')
    out = []
    for i, frame in enumerate(frames):
        if not (isinstance(frame, dict) and isinstance(frame.get("b64"), str)):
            raise invalid_argument(f'frames[{i}] is not {{"b64": "<base64 JPEG>"}}')
        try:
            out.append(base64.b64decode(frame["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise invalid_argument(f"frames[{i}] is not valid base64") from None
    return out


def _top_k(session: _Session, probs: np.ndarray, names: dict[int, str] | None = None):
    """[{label, class, score}]: the export's labels, else ``names``."""
    return [{"label": label, "class": c, "score": score} for c, label, score in
            ranked(probs, session.preprocessing.get("labels") or names or [],
                   session.top_k)]


def _windows(servable: Servable, preprocessing: dict, window: int | None,
             stride: int | None) -> StreamWindows:
    """The ring buffer of a model without stream signatures whose ``serving_default``
    takes RGB JPEG clips alone; a 400 for any other."""
    sig = servable.signature_defs.get(DEFAULT_SIGNATURE)
    inputs = dict(sig.inputs) if sig is not None else {}
    modality = preprocessing.get("modality", "rgb")
    if set(inputs) != {FRAMES_INPUT} or modality != "rgb" or \
            inputs[FRAMES_INPUT].dtype != types_pb2.DT_STRING:
        raise invalid_argument(
            f"Model {servable.name} version {servable.version} cannot stream: it has no "
            f"{STREAM_STEP_SIGNATURE} signature, and its {DEFAULT_SIGNATURE} does not take "
            f"RGB JPEG frames alone (it reads {modality}); classify its windows with kvid "
            "predict --sliding-window")
    dims = [d.size for d in inputs[FRAMES_INPUT].tensor_shape.dim]
    clip_frames = dims[1] if len(dims) == 2 and dims[1] > 0 else \
        preprocessing.get("clip_frames")
    if not clip_frames:
        raise invalid_argument(f"Model {servable.name} version {servable.version} does not "
                               "say how many frames a clip holds; it cannot stream")
    if window is not None and window > MAX_WINDOW_FRAMES:
        raise invalid_argument(f"window must be at most {MAX_WINDOW_FRAMES} frames (the "
                               f"frames a session holds), got {window}")
    return StreamWindows.for_model(preprocessing, int(clip_frames), window, stride)


def _positive_int(doc: dict, key: str, default):
    value = doc.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_argument(f"{key} must be a positive integer, got {value!r}")
    return value


class StreamSessions:
    """The sessions of one server. ``handle(method, path, body, content_type)`` answers
    the HTTP API above as (status, JSON bytes); ``open``/``step``/``close`` are its
    operations for Python callers. ``clock``: seconds, monotonic (a test's own clock)."""

    def __init__(self, manager: ModelManager, limits: StreamLimits = StreamLimits(),
                 request_limits: RequestLimits | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.manager = manager
        self.limits = limits
        self.request_limits = request_limits
        self.clock = clock
        self._sessions: dict[str, _Session] = {}
        self._expired: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="kvid-streams", daemon=True)

    def start(self) -> "StreamSessions":
        self._reaper.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._reaper.is_alive():
            self._reaper.join()
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _reap(self) -> None:
        """Drops idle sessions, so a client that vanished frees its states on time."""
        interval = min(1.0, self.limits.idle_timeout_s / 4)
        while not self._stop.wait(interval):
            self.expire()

    def expire(self) -> list[str]:
        """Drops the sessions idle longer than the timeout; their ids."""
        now = self.clock()
        with self._lock:
            return [s.id for s in list(self._sessions.values()) if self._drop_idle(s, now)]

    def _drop_idle(self, session: _Session | None, now: float) -> bool:
        """Under ``_lock``: drops ``session`` if it is idle past the timeout (and not
        stepping), remembering its id to answer "expired"."""
        if session is None or now - session.seen <= self.limits.idle_timeout_s \
                or session.lock.locked():
            return False
        del self._sessions[session.id]
        self._expired[session.id] = now
        while len(self._expired) > _REMEMBER_EXPIRED:
            self._expired.popitem(last=False)
        return True

    # ------------------------------------------------------------------ operations

    def open(self, model_name: str, version: int | None = None, label: str | None = None,
             top_k: int = DEFAULT_TOP_K, window: int | None = None,
             stride: int | None = None) -> dict:
        servable = self.manager.get(model_name, version, label)
        preprocessing = _preprocessing(servable)
        stateful = all(s in servable.signature_defs
                       for s in (STREAM_INIT_SIGNATURE, STREAM_STEP_SIGNATURE))
        if stateful and (window or stride):
            raise invalid_argument(f"Model {servable.name} streams frame by frame (its "
                                   f"{STREAM_STEP_SIGNATURE} signature): window and stride "
                                   "apply to window models")
        windows = None if stateful else _windows(servable, preprocessing, window, stride)
        self.expire()
        with self._lock:  # the count is checked before the states are allocated
            if len(self._sessions) >= self.limits.max_sessions:
                raise ServingError(grpc.StatusCode.UNAVAILABLE,
                                   f"Too many open stream sessions (limit "
                                   f"{self.limits.max_sessions}, --stream_sessions); close "
                                   "one or wait for an idle one to expire")
            session_id = secrets.token_urlsafe(16)
            self._sessions[session_id] = None  # reserved while the states are made
        try:
            states = servable.predict(STREAM_INIT_SIGNATURE,
                                      {BATCH_SIZE_INPUT: np.array(1, np.int32)}) \
                if stateful else {}
            session = _Session(session_id, servable, preprocessing, top_k, states,
                               tokens=_bucket(self.limits.max_fps), last=self.clock(),
                               seen=self.clock(), windows=windows)
        except BaseException:
            with self._lock:
                self._sessions.pop(session_id, None)
            raise
        with self._lock:
            self._sessions[session_id] = session
        return {"session": session_id, **self._describe(session)}

    def _describe(self, session: _Session) -> dict:
        return {"model_name": session.servable.name,
                "model_version": session.servable.version,
                "labels": session.preprocessing.get("labels", []),
                "fps": session.preprocessing.get("fps"),
                "image_size": session.preprocessing.get("image_size"),
                "top_k": session.top_k, "frames": session.frames,
                "mode": "states" if session.windows is None else "window",
                **(session.windows.describe() if session.windows else {}),
                "idle_timeout_s": self.limits.idle_timeout_s,
                "max_fps": self.limits.max_fps}

    def _get(self, session_id: str) -> _Session:
        """The open session, or 404; one idle past the timeout expires now, not at the
        reaper's next pass."""
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)  # None: still opening, id not out
            if session is not None and not self._drop_idle(session, now):
                return session
            if session_id in self._expired:
                raise not_found(f"Stream session {session_id} expired after "
                                f"{self.limits.idle_timeout_s:g} s without a frame "
                                "(--stream_idle_timeout_s); open a new one")
        raise not_found(f"Unknown stream session {session_id}")

    def step(self, session_id: str, frames: list[bytes]) -> dict:
        """Runs ``stream_step`` on the frames, carrying the session's states; a window
        model's session classifies each window the frames complete, in one request."""
        session = self._get(session_id)
        if not session.lock.acquire(blocking=False):
            raise ServingError(grpc.StatusCode.ABORTED,
                               f"Stream session {session_id} is running a step; send its "
                               "frames one request after another")
        try:
            now = self.clock()
            cap = self.limits.max_fps
            size = _bucket(cap)
            session.tokens = min(size, session.tokens + (now - session.last) * cap)
            session.last = session.seen = now
            if len(frames) > session.tokens + 1e-9:  # (sums of 1/fps are not exact)
                more = "" if len(frames) <= size else \
                    f"; a request may hold at most {int(size)} frames"
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"Stream session {session_id} is over its frame rate "
                                   f"cap of {cap:g} frames/s (--stream_max_fps){more}")
            start = time.perf_counter()
            result = (self._step_states if session.windows is None else
                      self._step_windows)(session, frames)
            latency_ms = (time.perf_counter() - start) * 1000
            session.tokens -= len(frames)
            session.frames += len(frames)
            session.steps += 1
            session.seen = self.clock()
            return {"session": session_id, "frames": session.frames, **result,
                    "latency_ms": latency_ms}
        finally:
            session.lock.release()

    def _check_pixels(self, frames: np.ndarray) -> None:
        if self.request_limits is not None:
            self.request_limits.check_images({FRAMES_INPUT: frames})

    def _step_states(self, session: _Session, frames: list[bytes]) -> dict:
        inputs = {FRAMES_INPUT: np.array([frames], dtype=object), **session.states}
        self._check_pixels(inputs[FRAMES_INPUT])
        out = session.servable.predict(STREAM_STEP_SIGNATURE, inputs)
        session.states = {k: out[k] for k in session.states}
        return {"top_k": _top_k(session, out[PROBABILITIES_OUTPUT][0])}

    def _step_windows(self, session: _Session, frames: list[bytes]) -> dict:
        """The frames join the ring buffer (a copy: the session's own is replaced only
        when the step succeeds); the windows they complete go to ``serving_default`` as
        one batch. ``top_k``: the latest window's (none before the first is full)."""
        for i, frame in enumerate(frames):  # refused now, not when a later window decodes
            if image_pixels(frame) is None:
                raise invalid_argument(f"frames[{i}] is not a JPEG or PNG image")
        self._check_pixels(np.array(frames, dtype=object))
        windows = session.windows.copy()
        ready = [w for w in map(windows.push, frames) if w is not None]
        done = []
        if ready:
            clips = np.array([clip for _, clip in ready], dtype=object)
            self._check_pixels(clips)
            out = session.servable.predict(DEFAULT_SIGNATURE, {FRAMES_INPUT: clips})
            done = [{"start": first, "end": first + windows.window,
                     "top_k": _top_k(session, out[PROBABILITIES_OUTPUT][j],
                                     output_labels(out, j))}
                    for j, (first, _) in enumerate(ready)]
            session.latest = done[-1]["top_k"]
        session.windows = windows
        return {"top_k": session.latest or [], "windows": done}

    def close(self, session_id: str) -> dict:
        session = self._get(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
        return {"session": session_id, "closed": True, "frames": session.frames,
                "steps": session.steps}

    def summary(self) -> dict:
        self.expire()
        with self._lock:
            open_ = [s for s in self._sessions.values() if s is not None]
        return {"sessions": len(open_), "models": self.stream_models(),
                "max_sessions": self.limits.max_sessions,
                "idle_timeout_s": self.limits.idle_timeout_s, "max_fps": self.limits.max_fps}

    def stream_models(self) -> list[str]:
        """The served models whose default version streams (what the page offers): the
        stream models first, then the window models."""
        stateful, windowed = [], []
        for source in self.manager.sources:
            try:
                servable = self.manager.get(source.name)
            except ServingError:  # not loaded (yet)
                continue
            if STREAM_STEP_SIGNATURE in servable.signature_defs:
                stateful.append(source.name)
                continue
            try:
                _windows(servable, _preprocessing(servable), None, None)
            except ServingError:
                continue
            windowed.append(source.name)
        return stateful + windowed

    # -------------------------------------------------------------------------- HTTP

    @staticmethod
    def matches(path: str) -> bool:
        return _SESSION_RE.fullmatch(path) is not None

    def handle(self, method: str, path: str, body: bytes,
               content_type: str = "") -> tuple[int, bytes]:
        """(HTTP status, JSON body); every refusal is a 4xx/503 with ``{"error": ...}``."""
        match = _SESSION_RE.fullmatch(path)
        try:
            if match is None:
                raise not_found(f"No stream API at {path}")
            session_id = match.group(1)
            if session_id is None and method == "POST":
                doc = parse_json(body)
                name = doc.get("model_name")
                if not isinstance(name, str) or not name:
                    raise invalid_argument('Expected {"model_name": "<served model>"}')
                version = _positive_int(doc, "model_version", None)
                label = doc.get("version_label")
                if label is not None and not isinstance(label, str):
                    raise invalid_argument("version_label must be a string")
                top_k = _positive_int(doc, "top_k", DEFAULT_TOP_K)
                return 201, _dumps(self.open(name, version, label, top_k,
                                             _positive_int(doc, "window", None),
                                             _positive_int(doc, "stride", None)))
            if session_id is None and method == "GET":
                return 200, _dumps(self.summary())
            if session_id is not None and method == "POST":
                return 200, _dumps(self.step(session_id, parse_frames(body, content_type)))
            if session_id is not None and method == "DELETE":
                return 200, _dumps(self.close(session_id))
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"{method} {path} is not part of the stream API")
        except ServingError as e:
            status = 405 if e.code == grpc.StatusCode.UNIMPLEMENTED else e.http_status
            return status, _dumps({"error": e.message})


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc).encode("utf-8")
