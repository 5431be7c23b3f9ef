"""Which frames of a video form which clip: shared by ingest, the from-video loader and predict."""

from __future__ import annotations

import collections
import copy
import math

SHORT_POLICIES = ("loop", "repeat_last", "reject")


def clip_span(clip_frames: int, frame_step: int = 1) -> int:
    """Frames a clip of ``clip_frames`` frames ``frame_step`` apart covers, first to last."""
    return (clip_frames - 1) * frame_step + 1


def flow_positions(clip: list[int], flow_frames: int, num_flow: int) -> list[int]:
    """The flow images shown with an RGB clip (its frame indices ``clip``): for L = k x T,
    k consecutive flow images around each frame (k = 1: the flow at each frame, the last
    frame repeating the flow before it), else one window of L centred on the clip's middle
    frame (Simonyan & Zisserman: one RGB frame and the L=10 flow fields around it)."""
    last = max(num_flow - 1, 0)
    if flow_frames % len(clip) == 0:
        k = flow_frames // len(clip)
        return [min(max(i - k // 2 + j, 0), last) for i in clip for j in range(k)]
    start = clip[len(clip) // 2] - flow_frames // 2
    return [min(max(start + i, 0), last) for i in range(flow_frames)]


class TooShortError(ValueError):
    """A video has fewer frames than one clip and the policy is ``reject``."""


def backward_flow_mask(flow_frames: int, stack: int) -> tuple[bool, ...]:
    """Bi-directional flow (Simonyan & Zisserman): in each stack of ``stack`` consecutive
    flow images the first half are backward flows (frame i + 1 back to i), the rest forward,
    so a stack spans the same frames either way. True where a backward flow goes."""
    return tuple(j % stack < stack // 2 for j in range(flow_frames))


def window_clips(
    num_frames: int,
    clip_frames: int,
    *,
    stride: int | None = None,
    max_clips: int | None = None,
    short_policy: str = "loop",
) -> list[list[int]]:
    """Frame indices of each clip of ``clip_frames`` consecutive frames.

    Clips start every ``stride`` frames (default: ``clip_frames``, no overlap); with
    ``max_clips`` the clips are spread evenly over the video rather than taking the first
    ones. A video shorter than one clip is looped, padded with its last frame, or rejected.
    """
    if clip_frames < 1:
        raise ValueError(f"clip_frames must be >= 1. Received: clip_frames={clip_frames}")
    if short_policy not in SHORT_POLICIES:
        raise ValueError(f"short_policy must be one of {SHORT_POLICIES}. "
                         f"Received: short_policy={short_policy!r}")
    if num_frames <= 0:
        return []
    if num_frames < clip_frames:
        if short_policy == "reject":
            raise TooShortError(f"{num_frames} frames, fewer than one clip of {clip_frames}")
        if short_policy == "loop":
            return [[i % num_frames for i in range(clip_frames)]]
        return [[min(i, num_frames - 1) for i in range(clip_frames)]]
    stride = stride or clip_frames
    starts = list(range(0, num_frames - clip_frames + 1, stride))
    if max_clips and len(starts) > max_clips:
        if max_clips == 1:
            starts = [(num_frames - clip_frames) // 2]
        else:
            last = num_frames - clip_frames
            starts = [round(i * last / (max_clips - 1)) for i in range(max_clips)]
    return [list(range(s, s + clip_frames)) for s in starts]


def segment_indices(num_frames: int, num_segments: int, snippet: int = 1) -> list[list[int]]:
    """TSN: the center snippet of each of ``num_segments`` equal segments (evaluation view)."""
    if num_segments < 1 or snippet < 1:
        raise ValueError(f"num_segments and snippet must be >= 1. "
                         f"Received: num_segments={num_segments}, snippet={snippet}")
    if num_frames <= 0:
        return []
    seg = num_frames / num_segments
    out = []
    for k in range(num_segments):
        start = int(k * seg + max(0.0, (seg - snippet) / 2))
        out.append([min(start + j, num_frames - 1) for j in range(snippet)])
    return out


def clip_positions(num_frames: int, clip_frames: int, *, sampling: str = "dense",
                   frame_step: int = 1, num_segments: int = 3,
                   max_clips: int | None = None) -> list[list[int]]:
    """Frame indices of the clips a model trained with ``sampling`` is shown in evaluation,
    without TensorFlow (``kvid predict`` on a client): the positions of
    kvid.data.sampling's evaluation branch and of ``make_eval_views``. Dense: clips of
    ``clip_frames`` frames ``frame_step`` apart, as many as fit side by side (at most
    ``max_clips``), evenly spaced from the start to the end (one: the centred clip; a short
    video loops); uniform: ``clip_frames`` frames spread over the video; segments: the
    center snippet of each of ``num_segments`` parts.
    """
    if num_frames <= 0:
        return []
    if sampling == "dense":
        span = clip_span(clip_frames, frame_step)
        free = max(num_frames - span, 0)
        count = free // span + 1
        count = min(count, max_clips) if max_clips else count
        phases = [0.5] if count == 1 else [i / (count - 1) for i in range(count)]
        starts = [int(math.floor(free * p + 1e-4)) for p in phases]
        return [[(s + i * frame_step) % num_frames for i in range(clip_frames)] for s in starts]
    if sampling == "uniform":
        stride = num_frames / clip_frames
        return [[min(int((0.5 + i) * stride), num_frames - 1) for i in range(clip_frames)]]
    if sampling == "segments":
        snippets = segment_indices(num_frames, num_segments, clip_frames // num_segments)
        return [[i for snippet in snippets for i in snippet]]
    raise ValueError(f"sampling must be dense, uniform or segments. Received: {sampling!r}")


DEFAULT_STREAM_WINDOW_S = 2.0  # a window of a model that samples sparsely (uniform, TSN)


class StreamWindows:
    """A live stream cut into windows as ``window_clips(n, window, stride=stride)`` cuts a
    finished video, so a window model classifies a stream as ``kvid predict
    --sliding-window`` classifies the file: window k holds frames [k * stride, k * stride +
    window) and is ready when its last frame arrives; its clip is the frames at
    ``clip_positions(window, clip_frames, max_clips=1, ...)``. Only the last ``window``
    frames are kept (a ring buffer)."""

    def __init__(self, clip_frames: int, window: int, stride: int, *, sampling: str = "dense",
                 frame_step: int = 1, num_segments: int = 3):
        for name, value in (("clip_frames", clip_frames), ("window", window),
                            ("stride", stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {value!r}")
        self.clip_frames, self.window, self.stride = clip_frames, window, stride
        self.positions = clip_positions(window, clip_frames, sampling=sampling,
                                        frame_step=frame_step, num_segments=num_segments,
                                        max_clips=1)[0]
        self._ring: collections.deque = collections.deque(maxlen=window)
        self.frames = 0  # pushed so far

    @classmethod
    def for_model(cls, meta: dict, clip_frames: int, window: int | None = None,
                  stride: int | None = None) -> "StreamWindows":
        """From a model's kvid.json / ``kvid_metadata`` (its sampling and fps). Default
        window: the span of the clip it was trained on (dense sampling), else
        DEFAULT_STREAM_WINDOW_S at its fps; default stride: half the window."""
        sampling = meta.get("sampling", "dense")
        frame_step = int(meta.get("frame_step", 1))
        if window is None:
            window = clip_span(clip_frames, frame_step) if sampling == "dense" else max(
                clip_frames, round(DEFAULT_STREAM_WINDOW_S * float(meta.get("fps") or 25)))
        return cls(clip_frames, window, stride or max(1, window // 2), sampling=sampling,
                   frame_step=frame_step, num_segments=int(meta.get("num_segments", 3)))

    def copy(self) -> "StreamWindows":
        other = copy.copy(self)
        other._ring = self._ring.copy()
        return other

    def push(self, frame) -> tuple[int, list] | None:
        """Adds one frame; (the window's first frame, its clip) when it completes one."""
        self._ring.append(frame)
        self.frames += 1
        start = self.frames - self.window
        if start < 0 or start % self.stride:
            return None
        return start, [self._ring[i] for i in self.positions]

    def describe(self) -> dict:
        return {"clip_frames": self.clip_frames, "window": self.window, "stride": self.stride}
