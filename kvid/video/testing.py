"""Test fixtures: real videos whose frame i shows the number i, so frame selection is exact.

The idea of pytorchvideo's ``temp_encoded_video``: encode known frames, decode, and compare
with what was written. The index is drawn as 8 black/white cells (bits of ``i % 256``), which
survives lossy codecs, resizing without cropping and JPEG; lossless codecs (``ffv1``,
``libx264rgb`` at crf 0) give back the frames bit-exactly.
"""

from __future__ import annotations

import os

import numpy as np

from kvid.video.encode import write_video

BITS = 8
_ROWS, _COLS = 2, 4

# codec, pix_fmt and options by container extension; lossless where the format allows.
LOSSLESS = {"codec": "libx264rgb", "options": {"crf": "0", "preset": "ultrafast"}}
CODECS = {
    ".mp4": {"codec": "libx264", "options": {"preset": "ultrafast", "crf": "10"}},
    ".avi": {"codec": "mpeg4", "options": {"qscale": "2"}},
    ".mkv": {"codec": "ffv1"},
    ".webm": {"codec": "libvpx-vp9", "options": {"crf": "10", "b": "0", "deadline": "realtime",
                                                 "cpu-used": "8"}},
    ".mov": {"codec": "libx264", "options": {"preset": "ultrafast", "crf": "10"}},
    ".gif": {"codec": "gif"},
}


def index_frame(i: int, height: int = 64, width: int = 64) -> np.ndarray:
    """An RGB frame showing ``i % 256`` as 2x4 cells, bit k set = white cell k."""
    frame = np.zeros((height, width, 3), np.uint8)
    for k in range(BITS):
        if (i >> k) & 1:
            r, c = divmod(k, _COLS)
            frame[r * height // _ROWS:(r + 1) * height // _ROWS,
                  c * width // _COLS:(c + 1) * width // _COLS] = 255
    return frame


def read_index(rgb: np.ndarray) -> int:
    """The number drawn by :func:`index_frame`, read from the middle of each cell."""
    h, w = rgb.shape[:2]
    gray = rgb.astype(np.float32).mean(axis=-1)
    value = 0
    for k in range(BITS):
        r, c = divmod(k, _COLS)
        cy, cx = int((r + 0.5) * h / _ROWS), int((c + 0.5) * w / _COLS)
        dy, dx = max(1, h // (_ROWS * 4)), max(1, w // (_COLS * 4))
        if gray[cy - dy:cy + dy, cx - dx:cx + dx].mean() > 127:
            value |= 1 << k
    return value


def write_index_video(
    path: str,
    num_frames: int,
    *,
    fps: float = 25.0,
    height: int = 64,
    width: int = 64,
    lossless: bool = True,
) -> list[np.ndarray]:
    """Writes a video whose frame i shows i; returns the frames written.

    The codec follows the extension (:data:`CODECS`); ``lossless`` with ``.mp4``/``.mkv``
    uses libx264rgb crf 0 / ffv1 so decoded frames equal the returned ones exactly.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in CODECS:
        raise ValueError(f"no fixture codec for {ext!r}; known: {sorted(CODECS)}")
    spec = LOSSLESS if (lossless and ext == ".mp4") else CODECS[ext]
    frames = [index_frame(i, height, width) for i in range(num_frames)]
    write_video(path, frames, fps=fps, codec=spec["codec"], pix_fmt=spec.get("pix_fmt"),
                options=spec.get("options"))
    return frames
