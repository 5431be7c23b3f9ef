"""What a request may make the server allocate, checked before anything is allocated.

A request's size on the wire says little about what it costs: a 300 KB JPEG can decode to
192 MB (8000x8000), and a 68-byte gRPC ``TensorProto`` declaring shape
``[1,8,2000,2000,3]`` with one value expands to 384 MB (TF fills a short value list with
its last value). So images are measured by their headers (JPEG, PNG, GIF, BMP: what
``tf.io.decode_image`` and ``decode_jpeg`` accept) and tensors by their declared shapes,
and a request over a limit gets INVALID_ARGUMENT (REST 400) before the model runs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2

from kvid.serving.errors import invalid_argument

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic ...): C0-CF
# except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, 0xD8, *range(0xD0, 0xD8)])  # TEM, SOI, RSTn: no length


def _jpeg_pixels(data: bytes) -> int | None:
    """Height x width from the first SOF segment, walking the markers as libjpeg does."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:  # garbage between segments: libjpeg skips to the next 0xFF
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker == 0xD9:  # EOI before any frame: nothing to decode
            return 0
        if marker in _SOF:
            if i + 9 > n:
                return None
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return height * width
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2:
            return None
        i += 2 + length
    return None


def _gif_pixels(data: bytes) -> int | None:
    """Screen width x height x the number of frames (``decode_gif`` decodes them all)."""
    if len(data) < 13:
        return None
    width = int.from_bytes(data[6:8], "little")
    height = int.from_bytes(data[8:10], "little")
    i = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames, n = 0, len(data)

    def skip_sub_blocks(j: int) -> int:
        while j < n and data[j]:
            j += data[j] + 1
        return j + 1

    while i < n:
        block = data[i]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            i = skip_sub_blocks(i + 2)
        elif block == 0x2C:  # image descriptor
            frames += 1
            flags = data[i + 9] if i + 9 < n else 0
            i += 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
            i = skip_sub_blocks(i + 1)  # LZW minimum code size, then the data
        else:
            break
    return width * height * max(frames, 1)


def image_pixels(data: bytes) -> int | None:
    """Pixels an encoded image decodes to, from its header; None if it is not an image
    (or its header is cut short, in which case the decoder fails on it anyway)."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_pixels(data)
    if data[:8] == _PNG:
        if len(data) < 24:
            return None
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_pixels(data)
    if data[:2] == b"BM" and len(data) >= 26:
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)
        return abs(width * height)
    return None


def _example_images(data: bytes):
    """The byte values of a serialized ``tf.Example`` (clip records hold JPEG frames)."""
    try:
        example = example_pb2.Example.FromString(data)
    except Exception:  # not an Example: protobuf's DecodeError, or worse bytes
        return
    for feature in example.features.feature.values():
        yield from feature.bytes_list.value


def _itemsize(dtype: int) -> int:
    """Bytes per element once materialized: TF's size, or a pointer for strings, resources
    and enum values TF does not know."""
    try:
        return tf.as_dtype(dtype).size or 8
    except TypeError:
        return 8


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """``kvid serve --max_decoded_pixels`` and ``--max_body_bytes`` as request checks."""

    max_decoded_pixels: int
    max_tensor_bytes: int

    def check_images(self, inputs: dict[str, np.ndarray]) -> int:
        """Sums the pixels of every image in the string inputs (also the frames inside
        serialized clip records); over the limit: INVALID_ARGUMENT naming the largest."""
        total, largest = 0, (0, "")
        for name, array in sorted(inputs.items()):
            if array.dtype != object:
                continue
            for index, value in enumerate(array.ravel()):
                if not isinstance(value, bytes):
                    continue
                images = [value]
                if value[:1] == b"\n" and image_pixels(value) is None:  # Example field 1
                    images = list(_example_images(value))
                for data in images:
                    pixels = image_pixels(data) or 0
                    total += pixels
                    if pixels > largest[0]:
                        largest = (pixels, f"element {index} of input '{name}'")
        if total > self.max_decoded_pixels:
            raise invalid_argument(
                f"The request's images decode to {total} pixels, more than the limit of "
                f"{self.max_decoded_pixels} (--max_decoded_pixels); the largest, "
                f"{largest[1]}, has {largest[0]}")
        return total

    def check_tensor_proto(self, name: str, proto: tensor_pb2.TensorProto) -> None:
        """A gRPC input's declared shape: valid dims, and at most ``max_tensor_bytes``
        once materialized (a short value list is filled up to the declared size)."""
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise invalid_argument(f"Input '{name}' declares an invalid shape "
                                   f"[{','.join(map(str, dims))}]")
        elements = math.prod(dims)
        size = elements * _itemsize(proto.dtype)
        if size > self.max_tensor_bytes:
            raise invalid_argument(
                f"Input '{name}' declares shape [{','.join(map(str, dims))}]: {elements} "
                f"elements, {size} bytes once materialized, more than the limit of "
                f"{self.max_tensor_bytes} bytes (--max_body_bytes)")
