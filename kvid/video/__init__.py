"""Decoding (PyAV), frame resize/JPEG (OpenCV) and clip windowing shared by every stage."""

from kvid.video.decode import (DECODE_ERROR, EMPTY, INVALID_DATA, MISSING_FILE, NO_VIDEO_STREAM,
                               TRUNCATED, UNREADABLE, Frame,
                               VideoError, VideoInfo, iter_frames, probe)
from kvid.video.frames import decode_jpeg, encode_jpeg, resize_frame
from kvid.video.sampling import SHORT_POLICIES, TooShortError, segment_indices, window_clips

__all__ = [
    "DECODE_ERROR", "EMPTY", "INVALID_DATA", "MISSING_FILE", "NO_VIDEO_STREAM", "TRUNCATED",
    "UNREADABLE", "Frame", "VideoError",
    "VideoInfo", "iter_frames", "probe", "decode_jpeg", "encode_jpeg", "resize_frame",
    "SHORT_POLICIES", "TooShortError", "segment_indices", "window_clips",
]
