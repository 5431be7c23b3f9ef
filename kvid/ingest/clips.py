"""One video -> its clips, without Beam: the work inside the ingest DoFn, testable alone.

A video is decoded to the end before any clip is returned, so a file that breaks
mid-stream gives a dead letter and no partial clips. Only JPEG bytes (and small gray frames
when flow is on) are kept per frame, so a long video costs megabytes, not gigabytes.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from kvid.ingest.config import IngestConfig
from kvid.ingest.manifests import VideoItem
from kvid.schema import Clip
from kvid.video.decode import iter_frames, probe
from kvid.video.flow import FlowFn, flow_jpeg
from kvid.video.frames import encode_jpeg, resize_frame
from kvid.video.sampling import TooShortError, segment_indices, window_clips

TOO_SHORT = "too_short"  # dead-letter reason: fewer frames than one clip, policy "reject"


@dataclasses.dataclass
class DecodedVideo:
    """The sampled frames of one video, stored form only."""

    jpegs: list[bytes]
    grays: list[np.ndarray]  # empty unless flow is computed
    height: int
    width: int
    fps: float  # rate of the sampled frames


def decode_video(item: VideoItem, config: IngestConfig, *, keep_gray: bool = False) -> DecodedVideo:
    """Decodes, resamples, resizes and JPEG-encodes every sampled frame of ``item``."""
    jpegs, grays = [], []
    h = w = 0
    fps = config.fps
    for frame in iter_frames(item.path, fps=config.fps, start_sec=item.start_sec,
                             end_sec=item.end_sec, threads=config.decode_threads):
        rgb = resize_frame(frame.rgb, short_side=config.short_side, size=config.size)
        h, w = rgb.shape[:2]
        jpegs.append(encode_jpeg(rgb, config.jpeg_quality))
        if keep_gray:
            grays.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    if fps is None:
        fps = probe(item.path).fps
    return DecodedVideo(jpegs, grays, h, w, float(fps or 0.0))


def chunk_indices(num_frames: int, config: IngestConfig) -> list[list[int]]:
    """Layout "video": the whole video, or chunks of ``max_frames`` starting every
    ``chunk_stride`` frames, the last one ending with the video."""
    if num_frames < config.clip_frames and config.short_policy == "reject":
        raise TooShortError(f"{num_frames} frames, fewer than one clip of {config.clip_frames}")
    if num_frames <= config.max_frames:
        return [list(range(num_frames))] if num_frames else []
    starts = list(range(0, num_frames - config.max_frames, config.chunk_stride))
    starts.append(starts[-1] + config.chunk_stride)  # the last chunk reaches the end
    return [list(range(s, min(s + config.max_frames, num_frames))) for s in starts]


def clip_indices(num_frames: int, config: IngestConfig) -> list[list[int]]:
    """Frame indices of each record: windows of T frames, one TSN clip of K segments, or
    (layout "video") the video's chunks."""
    if config.layout == "video":
        return chunk_indices(num_frames, config)
    if config.segments:
        if num_frames < config.frames_per_clip and config.short_policy == "reject":
            raise TooShortError(f"{num_frames} frames, fewer than {config.segments} segments "
                                f"of {config.snippet}")
        return [[i for seg in segment_indices(num_frames, config.segments, config.snippet)
                 for i in seg]]
    return window_clips(num_frames, config.clip_frames, stride=config.stride,
                        max_clips=config.max_clips, short_policy=config.short_policy)


def video_to_clips(
    item: VideoItem,
    label: int,
    config: IngestConfig,
    flow_fn: FlowFn | None = None,
) -> tuple[list[Clip], int]:
    """All clips of one video, and the number of sampled frames decoded.

    Raises ``VideoError`` (undecodable) or ``TooShortError`` (policy "reject"): the caller
    turns them into dead letters.
    """
    video = decode_video(item, config, keep_gray=flow_fn is not None)
    flows: dict[tuple[int, int], bytes] = {}  # pairs shared by overlapping clips are computed once

    def flow_of(indices, backward=False):
        """Flow a -> b of each pair of consecutive frames; ``backward``: b -> a."""
        if flow_fn is None or (backward and not config.flow_backward):
            return ()
        out = []
        for a, b in zip(indices, indices[1:]):
            pair = (b, a) if backward else (a, b)
            if pair not in flows:
                flows[pair] = flow_jpeg(flow_fn, video.grays[pair[0]], video.grays[pair[1]],
                                        config.jpeg_quality)
            out.append(flows[pair])
        return out

    chunks = config.layout == "video"
    records = clip_indices(len(video.jpegs), config)
    clips = [
        Clip(frames=[video.jpegs[i] for i in indices], label=label, label_name=item.label,
             video_id=item.video_id, group=item.group, clip_index=k,
             clip_start_frame=indices[0], fps=video.fps, height=video.height, width=video.width,
             flow=flow_of(indices), flow_backward=flow_of(indices, backward=True),
             video_frames=len(video.jpegs) if chunks else 0,
             chunk_stride=config.chunk_stride if chunks and len(records) > 1 else 0)
        for k, indices in enumerate(records)
    ]
    return clips, len(video.jpegs)
