"""The ingest parameters, validated once, recorded in dataset.json ("params")."""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping

from kvid import validate
from kvid.video.sampling import SHORT_POLICIES

FLOW_METHODS = ("none", "farneback", "dis", "tvl1")
LAYOUTS = ("clips", "video")
COMPRESSIONS = ("", "GZIP")


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """How videos become clips.

    Defaults follow PERF.md: uncompressed shards (gzip reads 4-9x slower for ~20% smaller
    files of JPEGs) and one single-threaded decoder per worker process.
    """

    fps: float | None = None  # target frame rate; None keeps the source rate
    # "clips": fixed windows of clip_frames (or one TSN clip); "video": the whole video in
    # one record (longer ones in chunks of max_frames, chunk_overlap shared), so that
    # readers sample clips and views over the whole video at read time
    layout: str = "clips"
    max_frames: int = 300  # layout "video": frames per record at most
    chunk_overlap: int = 64  # layout "video": frames consecutive chunks share (>= a clip's span)
    clip_frames: int = 16  # T; with segments > 0 a clip has segments * snippet frames instead
    stride: int | None = None  # frames between clip starts; None = clip_frames (no overlap)
    max_clips: int | None = None  # per video, spread evenly; None = all windows
    segments: int = 0  # TSN: K segments, one clip of the center snippet of each
    snippet: int = 1  # frames per TSN segment
    short_policy: str = "loop"  # a video shorter than a clip: loop | repeat_last | reject
    short_side: int | None = None  # resize keeping aspect ratio ...
    size: tuple[int, int] | None = None  # ... or to exactly (H, W), scale + center crop
    jpeg_quality: int = 90
    flow: str = "none"  # none | farneback | dis | tvl1 (tvl1 needs opencv-contrib)
    # also store the backward flow (frame i+1 back to i) for bi-directional flow stacks
    # (Simonyan & Zisserman); twice the flow's cost and storage
    flow_backward: bool = False
    compression: str = ""  # "" (default, see PERF.md) or "GZIP"
    split_ratios: tuple[tuple[str, float], ...] = (("train", 0.7), ("val", 0.15), ("test", 0.15))
    seed: int = 0  # of the group -> split hash
    workers: int = 1  # DirectRunner processes
    num_shards: int = 0  # per split; 0 = each worker writes its own (no shuffle), see shard_mb
    shard_mb: float = 128.0  # with num_shards=0, a worker starts a new shard after this many MB
    decode_threads: int = 1

    def __post_init__(self):
        if isinstance(self.split_ratios, Mapping):
            object.__setattr__(self, "split_ratios", tuple(self.split_ratios.items()))
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        validate.positive("fps", self.fps, optional=True)  # inf would never end a video
        _check(self.layout in LAYOUTS, f"layout must be one of {LAYOUTS}", layout=self.layout)
        _check(self.max_frames >= 2, "max_frames must be >= 2", max_frames=self.max_frames)
        _check(0 <= self.chunk_overlap < self.max_frames,
               "chunk_overlap must be in [0, max_frames)", chunk_overlap=self.chunk_overlap,
               max_frames=self.max_frames)
        _check(self.layout == "clips" or not self.segments,
               "segments (a stored TSN clip) need layout 'clips'; with layout 'video' TSN "
               "samples its segments at read time", layout=self.layout, segments=self.segments)
        _check(self.clip_frames >= 1, "clip_frames must be >= 1", clip_frames=self.clip_frames)
        _check(self.stride is None or self.stride >= 1, "stride must be >= 1", stride=self.stride)
        _check(self.max_clips is None or self.max_clips >= 1, "max_clips must be >= 1",
               max_clips=self.max_clips)
        _check(self.segments >= 0, "segments must be >= 0", segments=self.segments)
        _check(self.snippet >= 1, "snippet must be >= 1", snippet=self.snippet)
        _check(self.short_policy in SHORT_POLICIES, f"short_policy must be one of {SHORT_POLICIES}",
               short_policy=self.short_policy)
        _check(self.short_side is None or self.size is None, "give short_side or size, not both",
               short_side=self.short_side, size=self.size)
        _check(self.short_side is None or self.short_side >= 8, "short_side must be >= 8",
               short_side=self.short_side)
        _check(self.size is None or (len(self.size) == 2 and min(self.size) >= 8),
               "size must be (height, width), each >= 8", size=self.size)
        _check(1 <= self.jpeg_quality <= 100, "jpeg_quality must be in 1..100",
               jpeg_quality=self.jpeg_quality)
        _check(self.flow in FLOW_METHODS, f"flow must be one of {FLOW_METHODS}", flow=self.flow)
        _check(not self.flow_backward or self.flow != "none",
               "flow_backward needs a flow method", flow_backward=self.flow_backward,
               flow=self.flow)
        _check(self.compression in COMPRESSIONS, f"compression must be one of {COMPRESSIONS}",
               compression=self.compression)
        ratios = dict(self.split_ratios)
        _check(bool(ratios) and all(math.isfinite(r) and r >= 0 for r in ratios.values())
               and sum(ratios.values()) > 0,
               "split_ratios must be >= 0 with a positive sum", split_ratios=ratios)
        _check(self.workers >= 1, "workers must be >= 1", workers=self.workers)
        _check(self.num_shards >= 0, "num_shards must be >= 0", num_shards=self.num_shards)
        validate.positive("shard_mb", self.shard_mb)
        _check(self.decode_threads >= 1, "decode_threads must be >= 1",
               decode_threads=self.decode_threads)

    @property
    def frames_per_clip(self) -> int | None:
        """T of every stored clip (None for video-level records: each has its video's)."""
        if self.layout == "video":
            return None
        return self.segments * self.snippet if self.segments else self.clip_frames

    @property
    def chunk_stride(self) -> int:
        """Frames between the starts of a long video's chunks (layout "video")."""
        return self.max_frames - self.chunk_overlap

    @property
    def ratios(self) -> dict[str, float]:
        return dict(self.split_ratios)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["split_ratios"] = dict(self.split_ratios)
        d["size"] = list(self.size) if self.size else None
        return d


def _check(ok: bool, message: str, **received) -> None:
    if not ok:
        got = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(f"{message}. Received: {got}")
