"""Per-frame image work shared by ingest, the from-video loader and clients: resize and JPEG.

cv2 is used for both: it measured faster than PIL and tf here (PERF.md), and INTER_LINEAR
rather than INTER_AREA, which is very slow on 1080p input.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_frame(
    rgb: np.ndarray, *, short_side: int | None = None, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Resizes an [H, W, 3] uint8 frame.

    ``short_side``: scale so the shorter side has this length, keeping the aspect ratio.
    ``size=(height, width)``: scale to cover, then center-crop to exactly that size.
    Neither: the frame is returned unchanged.
    """
    if short_side is not None and size is not None:
        raise ValueError("Give short_side or size, not both. "
                         f"Received: short_side={short_side}, size={size}")
    h, w = rgb.shape[:2]
    if short_side is not None:
        if min(h, w) == short_side:
            return rgb
        scale = short_side / min(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        return cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if size is not None:
        th, tw = size
        if (h, w) == (th, tw):
            return rgb
        scale = max(th / h, tw / w)
        new_w, new_h = max(tw, round(w * scale)), max(th, round(h * scale))
        resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        y, x = (new_h - th) // 2, (new_w - tw) // 2
        return np.ascontiguousarray(resized[y:y + th, x:x + tw])
    return rgb


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encodes an RGB uint8 frame as JPEG (or a 2-channel flow frame padded to 3)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {rgb.shape}")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decodes JPEG bytes to an RGB uint8 array."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
