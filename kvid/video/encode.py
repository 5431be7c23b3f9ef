"""Writing videos with PyAV: used by ``kvid synth`` and by tests to make real fixtures."""

from __future__ import annotations

import fractions
import os
from typing import Iterable

import av
import numpy as np


# Pixel format per codec when none is given: what players expect for lossy codecs, RGB for
# the lossless ones (yuv420p would halve their chroma), a palette-free 8-bit RGB for gif.
DEFAULT_PIX_FMT = {"libx264": "yuv420p", "h264": "yuv420p", "mpeg4": "yuv420p",
                   "libvpx": "yuv420p", "libvpx-vp9": "yuv420p", "libx264rgb": "rgb24",
                   "ffv1": "bgr0", "gif": "rgb8"}


def write_video(
    path: str,
    frames: Iterable[np.ndarray],
    *,
    fps: float = 25.0,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    options: dict | None = None,
) -> int:
    """Encodes RGB uint8 frames to ``path`` (container from the extension); returns the count.

    Lossless fixtures: ``codec="libx264rgb", options={"crf": "0"}`` or ``codec="ffv1"``.
    The file is written under a temporary name and renamed, so it is whole or absent.
    """
    tmp = f"{path}.partial{os.path.splitext(path)[1]}"
    rate = fractions.Fraction(fps).limit_denominator(1001)
    n = 0
    try:
        with av.open(tmp, "w") as container:
            stream = None
            for rgb in frames:
                if stream is None:
                    h, w = rgb.shape[:2]
                    stream = container.add_stream(codec, rate=rate, options=options or {})
                    stream.width, stream.height = w, h
                    stream.pix_fmt = pix_fmt or DEFAULT_PIX_FMT.get(codec, stream.pix_fmt)
                    if codec == "libx264":  # one slice per frame, like real videos (PERF.md)
                        stream.codec_context.options = {**(options or {}), "x264-params": "slices=1"}
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n
