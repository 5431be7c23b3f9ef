"""Video decoding with PyAV: the one decoder used by ingest, the from-video loader and predict.

Frames are selected by presentation timestamps, not frame indices, so variable-frame-rate
video and fps resampling give the frame that is on screen at each target time. Pixel
conversion (the costly part for small videos, see PERF.md) is done only for kept frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from typing import Iterator

import av
import numpy as np

from kvid import files, validate

# Reasons written to dead letters; stable strings that users can grep and count.
MISSING_FILE = "missing_file"
UNREADABLE = "unreadable"  # cannot be read: permission, I/O error
INVALID_DATA = "invalid_data"  # not a media file, or a header too broken to open
NO_VIDEO_STREAM = "no_video_stream"
DECODE_ERROR = "decode_error"  # corrupt stream: the decoder gave up mid-way
TRUNCATED = "truncated"  # frames stop well before the duration the container declares
EMPTY = "empty"  # zero-byte file, or no frame in the requested range


class VideoError(Exception):
    """A video that cannot give frames; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    fps: float  # average frame rate of the stream (0 if unknown)
    duration: float  # seconds (0 if unknown)
    num_frames: int  # as declared by the container (0 if unknown)
    width: int
    height: int
    codec: str


@dataclasses.dataclass(frozen=True)
class Frame:
    index: int  # position in the output sequence (at the target fps)
    source_index: int  # position in the decoded stream
    time: float  # presentation time in seconds
    rgb: np.ndarray  # [H, W, 3] uint8


@contextlib.contextmanager
def _open(path: str):
    """The opened container; a remote path (``gs://``, ``s3://``...) is decoded from a
    seekable reader of the object, never copied to local disk first."""
    reader = None
    if files.is_remote(path):  # one open, no separate size lookup: each costs a client
        try:
            reader = files.open_binary(path)
        except FileNotFoundError as e:
            raise VideoError(MISSING_FILE, f"no such object: {path}") from e
        except Exception as e:  # noqa: BLE001 - the store's own errors (auth, network)
            raise VideoError(UNREADABLE, f"{type(e).__name__}: {e}") from e
        if reader.seek(0, io.SEEK_END) == 0:
            _close(reader)
            raise VideoError(EMPTY, f"zero-byte object: {path}")
        reader.seek(0)
    elif not os.path.exists(path):
        raise VideoError(MISSING_FILE, f"no such file: {path}")
    elif os.path.isfile(path) and os.path.getsize(path) == 0:
        raise VideoError(EMPTY, f"zero-byte file: {path}")
    try:
        container = av.open(reader or path)
    except (av.error.InvalidDataError, UnicodeDecodeError) as e:
        _close(reader)
        raise VideoError(INVALID_DATA, f"{type(e).__name__}: {e}") from e
    except (av.error.FFmpegError, OSError) as e:  # PermissionError, IsADirectoryError, EIO...
        _close(reader)
        raise VideoError(UNREADABLE, f"{type(e).__name__}: {e}") from e
    try:
        if not container.streams.video:
            raise VideoError(NO_VIDEO_STREAM, f"no video stream in {path}")
        yield container
    finally:
        container.close()
        _close(reader)


def _close(reader) -> None:
    if reader is not None:
        reader.close()


def probe(path: str) -> VideoInfo:
    """Reads the container header only."""
    with _open(path) as container:
        s = container.streams.video[0]
        rate = s.average_rate or s.guessed_rate
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        if not duration and container.duration:
            duration = container.duration / av.time_base
        return VideoInfo(
            fps=float(rate) if rate else 0.0,
            duration=duration,
            num_frames=int(s.frames or 0),
            width=s.codec_context.width,
            height=s.codec_context.height,
            codec=s.codec_context.name,
        )


def _declared_span(stream, container) -> tuple[float, float]:
    """(duration in seconds, tolerance) the container declares for the video stream, (0, 0)
    when unknown. The stream's own duration is trusted closely; the container's (which can
    include a longer audio track) loosely."""
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
        return duration, max(2.5 / float(stream.average_rate or 25), 0.02 * duration)
    if container.duration:
        duration = container.duration / av.time_base
        return duration, 0.5 + 0.05 * duration
    return 0.0, 0.0


def iter_frames(
    path: str,
    *,
    fps: float | None = None,
    start_sec: float | None = None,
    end_sec: float | None = None,
    threads: int = 1,
) -> Iterator[Frame]:
    """Yields RGB frames of the first video stream.

    Times are seconds from the stream's start (a stream whose first timestamp is 1.4 s
    starts at 0 here). With ``fps``, output frame k is the frame on screen at time
    ``t0 + k / fps`` (t0 = the first frame's time, or ``start_sec``): frames are dropped when
    downsampling and repeated when upsampling; only kept frames are converted to RGB.
    ``threads=1`` (one decoder thread per worker process) scales best across processes.
    Raises :class:`VideoError` for unreadable or corrupt input, also mid-stream, and
    (``TRUNCATED``) when the frames stop well before the declared duration, so a truncated
    file is never mistaken for a short one.
    """
    # Finite values only: at fps=inf every target time is t0 and the repeat loop never ends.
    validate.positive("fps", fps, optional=True)
    validate.number("start_sec", start_sec, optional=True)
    validate.number("end_sec", end_sec, optional=True)
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise ValueError(f"end_sec must be greater than start_sec. "
                         f"Received: start_sec={start_sec}, end_sec={end_sec}")
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = max(1, threads)
        stream.thread_type = "SLICE" if threads == 1 else "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 25.0)
        time_base = float(stream.time_base) if stream.time_base else 0.0
        origin = stream.start_time * time_base if stream.start_time is not None else None
        seeked = False
        if start_sec and time_base:
            # Seek to the keyframe before start; decoding then skips frames up to it.
            offset = int((start_sec + (origin or 0.0)) / time_base)
            container.seek(max(0, offset), stream=stream, backward=True, any_frame=False)
            seeked = True
        eps = 1e-6
        t0 = start_sec  # time of output frame 0 (the first frame's time when None)
        held = None  # (source_index, time, av.VideoFrame): last frame not yet emitted
        out = 0
        source_index = -1
        last_t = None
        ended_early = False  # stopped at end_sec rather than at the end of the stream

        def target(k):
            return t0 + k / fps

        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    t = (source_index + 1) / rate
                else:
                    if origin is None:
                        origin = frame.time
                    t = frame.time - origin
                # After a seek, count from the frame's time, not from the seek point.
                source_index = round(t * rate) if seeked and source_index < 0 else source_index + 1
                last_t = t
                if end_sec is not None and t >= end_sec - eps:
                    ended_early = True
                    break
                if start_sec is not None and t < start_sec - eps:
                    held = (source_index, t, frame)  # may be on screen at start_sec
                    continue
                if fps is None:
                    yield Frame(out, source_index, t, frame.to_ndarray(format="rgb24"))
                    out += 1
                    continue
                if t0 is None:
                    t0 = t
                # The held frame is on screen for every target time before this frame.
                while held is not None and target(out) < t - eps:
                    yield Frame(out, held[0], held[1], held[2].to_ndarray(format="rgb24"))
                    out += 1
                held = (source_index, t, frame)
        except av.error.FFmpegError as e:
            raise VideoError(
                DECODE_ERROR, f"{type(e).__name__} after {source_index + 1} frames: {e}"
            ) from e
        if not ended_early and last_t is not None:
            declared, tolerance = _declared_span(stream, container)
            needed = min(declared, end_sec) if end_sec is not None else declared
            if declared and last_t + 1.0 / rate < needed - tolerance:
                raise VideoError(TRUNCATED, f"frames end at {last_t + 1.0 / rate:.2f} s but the "
                                            f"container declares {declared:.2f} s")
        if fps is not None and held is not None and t0 is not None:
            # The last frame stays on screen for one frame period (or up to end_sec).
            stop = held[1] + 1.0 / rate
            if end_sec is not None:
                stop = min(stop, end_sec)
            while target(out) < stop - eps:
                yield Frame(out, held[0], held[1], held[2].to_ndarray(format="rgb24"))
                out += 1
        if out == 0:
            where = " in the requested time range" if (start_sec or end_sec) else ""
            raise VideoError(EMPTY, f"no frame decoded{where}")
