"""Dense optical flow with OpenCV, stored as 8-bit images in the clip record's ``flow`` feature.

DIS is the default choice for speed (~2x Farneback at MEDIUM, ~11x at FAST on this machine
kind, PERF.md); TV-L1 (the two-stream papers' method) only exists in the opencv-contrib
build, so asking for it without ``cv2.optflow`` is an error up front, not a silent fallback.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from kvid.schema import FLOW_SCALE
from kvid.video.frames import encode_jpeg

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
METHODS = ("farneback", "dis", "tvl1")


def tvl1_available() -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def check_method(method: str) -> None:
    """Raises ValueError when ``method`` is unknown or not in this OpenCV build."""
    if method not in METHODS:
        raise ValueError(f"flow method must be one of {METHODS}. Received: method={method!r}")
    if method == "tvl1" and not tvl1_available():
        raise ValueError("flow method 'tvl1' needs OpenCV's contrib modules (cv2.optflow), "
                         "which the plain opencv-python-headless wheel lacks: install "
                         "opencv-contrib-python-headless, or use --flow dis (fast) or farneback.")


def make_flow_fn(method: str) -> FlowFn:
    """Returns ``fn(prev_gray, next_gray) -> [H, W, 2] float32`` flow in pixels per frame.

    The OpenCV objects are built once here (build it once per worker: DoFn.setup).
    """
    check_method(method)
    if method == "farneback":
        def farneback(prev, nxt):
            return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return farneback
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return lambda prev, nxt: dis.calc(prev, nxt, None)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return lambda prev, nxt: tvl1.calc(prev, nxt, None)


def quantize_flow(flow: np.ndarray) -> np.ndarray:
    """[H, W, 2] float flow -> [H, W, 3] uint8: x in R, y in G, B = 128 (schema.FLOW_SCALE)."""
    q = np.clip(np.rint(128.0 + flow * FLOW_SCALE), 0, 255).astype(np.uint8)
    return np.dstack([q, np.full(q.shape[:2], 128, np.uint8)])


def dequantize_flow(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_flow` (up to quantisation and JPEG error)."""
    return (image[..., :2].astype(np.float32) - 128.0) / FLOW_SCALE


def flow_jpeg(fn: FlowFn, prev_gray: np.ndarray, next_gray: np.ndarray, quality: int = 90) -> bytes:
    """The stored form of the flow between two gray frames."""
    return encode_jpeg(quantize_flow(fn(prev_gray, next_gray)), quality)
