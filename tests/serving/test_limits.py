"""Image sizes read from headers equal what TF decodes; the request checks refuse in time."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

from kvid import schema
from kvid.serving.errors import ServingError
from kvid.serving.limits import RequestLimits, image_pixels


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def _with_exif_thumbnail(jpeg: bytes, thumb: bytes) -> bytes:
    """An APP1 segment holding another JPEG (its own SOF) before the image's SOF, as
    cameras write EXIF thumbnails: the size must come from the image, not the thumbnail."""
    payload = b"Exif\x00\x00" + thumb
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def _gif(frames: int, h: int, w: int) -> bytes:
    images = [Image.fromarray(_noise(h, w, i)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:])
    return out.getvalue()


IMAGES = {
    "jpeg": cv2.imencode(".jpg", _noise(37, 53))[1].tobytes(),
    "jpeg_progressive": cv2.imencode(".jpg", _noise(64, 20),
                                     [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
    "jpeg_exif_thumbnail": _with_exif_thumbnail(
        cv2.imencode(".jpg", _noise(90, 120))[1].tobytes(),
        cv2.imencode(".jpg", _noise(8, 8))[1].tobytes()),
    "png": cv2.imencode(".png", _noise(41, 7))[1].tobytes(),
    "bmp": cv2.imencode(".bmp", _noise(13, 17))[1].tobytes(),
    "gif_3_frames": _gif(3, 24, 30),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_header_pixels_equal_the_decoded_image(kind):
    data = IMAGES[kind]
    decoded = tf.io.decode_image(data, expand_animations=True).numpy()
    want = int(np.prod(decoded.shape[:-1]))  # frames x height x width
    assert image_pixels(data) == want


def test_non_images_and_cut_headers_have_no_size():
    assert image_pixels(b"not an image") is None
    assert image_pixels(b"") is None
    assert image_pixels(IMAGES["png"][:20]) is None
    assert image_pixels(IMAGES["jpeg"][:4]) is None


def _limits(pixels: int, tensor_bytes: int = 1 << 20) -> RequestLimits:
    return RequestLimits(max_decoded_pixels=pixels, max_tensor_bytes=tensor_bytes)


def test_check_images_sums_frames_and_the_frames_inside_clip_records():
    frames = np.array([[IMAGES["jpeg"], IMAGES["png"]]], dtype=object)
    total = 37 * 53 + 41 * 7
    assert _limits(total).check_images({"frames": frames}) == total
    with pytest.raises(ServingError, match="largest, element 0 of input 'frames', has 1961"):
        _limits(total - 1).check_images({"frames": frames})
    record = schema.serialize_clip(schema.Clip(
        frames=[IMAGES["jpeg"]] * 3, label=0, label_name="a", video_id="v", group="g",
        clip_index=0, clip_start_frame=0, fps=25.0, height=37, width=53))
    examples = {"examples": np.array([record, record], dtype=object)}
    assert _limits(10**9).check_images(examples) == 6 * 37 * 53
    with pytest.raises(ServingError, match="--max_decoded_pixels"):
        _limits(6 * 37 * 53 - 1).check_images(examples)
    numbers = {"x": np.zeros((4, 3), np.float32), "tag": np.array([b"\n\x01"], dtype=object)}
    assert _limits(1).check_images(numbers) == 0  # not images, not decodable Examples


def _proto(dims, dtype=types_pb2.DT_FLOAT) -> tensor_pb2.TensorProto:
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, float_val=[1.0])


def test_declared_tensor_shapes_are_checked_before_materializing():
    limits = _limits(1, tensor_bytes=4 * 1000)
    limits.check_tensor_proto("x", _proto([10, 100]))  # exactly the limit
    with pytest.raises(ServingError, match=r"\[10,101\]: 1010 elements, 4040 bytes"):
        limits.check_tensor_proto("x", _proto([10, 101]))
    with pytest.raises(ServingError, match="invalid shape"):
        limits.check_tensor_proto("x", _proto([-5, 2]))
    with pytest.raises(ServingError, match="8 bytes once|8000 bytes once"):
        limits.check_tensor_proto("s", _proto([1000], types_pb2.DT_STRING))
