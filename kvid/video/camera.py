"""Live video: a camera, or any FFmpeg input device or filter graph, read by PyAV.

A live source delivers frames at its own rate whether they are taken or not, so a reader
thread decodes all the time and keeps only the newest frame: a consumer slower than the
camera (a model stepping over the network) takes the frame on show when it is ready for
one and never falls behind, as a player drops frames.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

import av
import numpy as np

from kvid.video.decode import DECODE_ERROR, MISSING_FILE, UNREADABLE, VideoError

# this OS's camera N, as FFmpeg names its capture device
CAMERA_DEVICES = {"linux": ("v4l2", "/dev/video{}"), "darwin": ("avfoundation", "{}"),
                  "win32": ("dshow", "video={}")}


def camera_source(spec: str) -> tuple[str, str]:
    """``N`` -> (FFmpeg format, device) of camera N; ``FORMAT:URL`` -> that FFmpeg input
    (``v4l2:/dev/video2``, ``lavfi:testsrc2=size=320x240:rate=25,realtime``,
    ``x11grab::0.0``). Raises ValueError for one that cannot be opened here."""
    if spec.isdigit():
        fmt, device = CAMERA_DEVICES.get(sys.platform, CAMERA_DEVICES["linux"])
        device = device.format(int(spec))
        if fmt == "v4l2" and not os.path.exists(device):
            raise ValueError(f"no camera {spec}: {device} does not exist")
        return fmt, device
    fmt, sep, url = spec.partition(":")
    if not sep or not fmt or not url:
        raise ValueError(f"expected a camera number or FORMAT:URL (e.g. "
                         f"lavfi:testsrc2=rate=25,realtime), got {spec!r}")
    if not any(fmt in names.split(",") for names in av.formats_available):
        raise ValueError(f"FFmpeg here has no input format {fmt!r}")
    return fmt, url


@dataclasses.dataclass(frozen=True)
class LiveFrame:
    number: int  # frames the source delivered before this one
    time: float  # seconds since the source opened, when it was decoded
    rgb: np.ndarray


class LiveFrames:
    """The newest frame of a live source (``newest(after)``), read by a daemon thread.
    ``close()`` (or the ``with`` block's end) stops it."""

    def __init__(self, spec: str):
        fmt, url = camera_source(spec)
        try:
            self._container = av.open(url, format=fmt)
        except av.error.FileNotFoundError as e:
            raise VideoError(MISSING_FILE, f"{spec}: {e}") from e
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(UNREADABLE, f"{spec}: {type(e).__name__}: {e}") from e
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(UNREADABLE, f"{spec} delivers no video")
        self.spec = spec
        self._latest: LiveFrame | None = None
        self._error: BaseException | None = None
        self._ended = False
        self._stop = threading.Event()
        self._ready = threading.Condition()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="kvid-camera", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for n, frame in enumerate(self._container.decode(video=0)):
                if self._stop.is_set():
                    break
                latest = LiveFrame(n, time.monotonic() - self._start,
                                   frame.to_ndarray(format="rgb24"))
                with self._ready:
                    self._latest = latest
                    self._ready.notify_all()
        except av.error.FFmpegError as e:
            self._error = VideoError(DECODE_ERROR, f"{self.spec}: {type(e).__name__}: {e}")
        finally:
            with self._ready:
                self._ended = True
                self._ready.notify_all()

    def newest(self, after: int = -1, timeout: float = 10.0) -> LiveFrame | None:
        """The newest frame, once one newer than frame ``after`` has come; None when the
        source ended. Raises VideoError when it broke or stayed silent for ``timeout``."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._ended or (
                    self._latest is not None and self._latest.number > after), timeout):
                raise VideoError(DECODE_ERROR, f"{self.spec}: no frame for {timeout:g} s")
            if self._latest is not None and self._latest.number > after:
                return self._latest
        if self._error is not None:
            raise self._error
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():  # (never closed under a decode still running)
            self._container.close()

    def __enter__(self) -> "LiveFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
