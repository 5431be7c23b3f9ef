"""Resize/JPEG, clip windows, TSN segments, the writer, flow quantisation."""

import numpy as np
import pytest

from kvid.video.encode import write_video
from kvid.video.flow import dequantize_flow, quantize_flow
from kvid.video.frames import decode_jpeg, encode_jpeg, resize_frame
from kvid.video.sampling import TooShortError, segment_indices, window_clips
from kvid.video.testing import index_frame, read_index


def test_resize_short_side_keeps_aspect():
    rgb = np.zeros((240, 320, 3), np.uint8)
    assert resize_frame(rgb, short_side=120).shape == (120, 160, 3)
    assert resize_frame(rgb, short_side=240) is rgb
    assert resize_frame(rgb).shape == (240, 320, 3)


def test_resize_to_size_center_crops():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, 50:150] = 255  # the center half
    out = resize_frame(rgb, size=(50, 50))
    assert out.shape == (50, 50, 3) and out.flags["C_CONTIGUOUS"]
    assert out.min() == 255  # only the center survives the crop
    with pytest.raises(ValueError, match="not both"):
        resize_frame(rgb, short_side=10, size=(10, 10))


def test_jpeg_roundtrip_within_error():
    rgb = index_frame(173, 64, 64)
    back = decode_jpeg(encode_jpeg(rgb, 90))
    assert back.shape == rgb.shape and read_index(back) == 173
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 4
    with pytest.raises(ValueError):
        decode_jpeg(b"nope")


@pytest.mark.parametrize("n,kwargs,expected", [
    (10, {}, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (10, {"stride": 3}, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]),
    (20, {"max_clips": 3}, [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]),
    (20, {"max_clips": 1}, [[8, 9, 10, 11]]),
    (3, {}, [[0, 1, 2, 0]]),
    (3, {"short_policy": "repeat_last"}, [[0, 1, 2, 2]]),
    (0, {}, []),
])
def test_window_clips(n, kwargs, expected):
    assert window_clips(n, 4, **kwargs) == expected


def test_window_clips_reject_and_validation():
    with pytest.raises(TooShortError):
        window_clips(3, 4, short_policy="reject")
    with pytest.raises(ValueError, match="short_policy"):
        window_clips(3, 4, short_policy="pad")
    with pytest.raises(ValueError, match="clip_frames"):
        window_clips(3, 0)


def test_segment_indices():
    assert segment_indices(30, 3) == [[4], [14], [24]]  # floor of each segment's center
    assert segment_indices(30, 3, snippet=2) == [[4, 5], [14, 15], [24, 25]]
    assert segment_indices(2, 4) == [[0], [0], [1], [1]]
    with pytest.raises(ValueError):
        segment_indices(10, 0)


def test_write_video_is_atomic_and_rejects_no_frames(tmp_path):
    path = str(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="no frames"):
        write_video(path, [])
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    assert write_video(path, (index_frame(i) for i in range(3))) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]


def test_flow_quantisation_roundtrip():
    flow = np.stack(np.meshgrid(np.linspace(-10, 10, 8), np.linspace(-3, 3, 8)), -1)
    image = quantize_flow(flow.astype(np.float32))
    assert image.dtype == np.uint8 and image.shape == (8, 8, 3) and (image[..., 2] == 128).all()
    np.testing.assert_allclose(dequantize_flow(image), flow, atol=1 / 16 + 1e-6)
    assert dequantize_flow(quantize_flow(np.full((2, 2, 2), 100.0, np.float32))).max() < 16


@pytest.mark.parametrize("sampling,frame_step,window,stride", [
    ("dense", 1, 4, 2), ("dense", 2, 9, 3), ("dense", 1, 6, 8),
    ("uniform", 1, 10, 5), ("segments", 1, 12, 4)])
def test_stream_windows_cut_a_stream_as_window_clips_cuts_the_file(sampling, frame_step,
                                                                  window, stride):
    """Pushed frame by frame, a stream completes the windows window_clips cuts from the
    whole video, each clip at clip_positions' frames, keeping only the last window."""
    from kvid.video.sampling import StreamWindows, clip_positions, window_clips

    n, t = 30, 4
    ring = StreamWindows(t, window, stride, sampling=sampling, frame_step=frame_step,
                         num_segments=2)
    got = [w for w in map(ring.push, range(n)) if w is not None]
    positions = clip_positions(window, t, sampling=sampling, frame_step=frame_step,
                               num_segments=2, max_clips=1)[0]
    expected = [(w[0], [w[p] for p in positions]) for w in window_clips(n, window,
                                                                        stride=stride)]
    assert got == expected and len(got) >= 3
    assert len(ring._ring) == window
    copy = ring.copy()
    copy.push(99)
    assert ring.frames == n and copy.frames == n + 1  # a copy does not share the ring
    with pytest.raises(ValueError, match="window"):
        StreamWindows(t, 0, 1)


def test_stream_windows_default_to_the_trained_clip():
    from kvid.video.sampling import StreamWindows

    dense = StreamWindows.for_model({"sampling": "dense", "frame_step": 2}, 8)
    assert (dense.window, dense.stride) == (15, 7)
    tsn = StreamWindows.for_model({"sampling": "segments", "fps": 10}, 3)
    assert (tsn.window, tsn.stride) == (20, 10)  # 2 s at its fps
    assert StreamWindows.for_model({}, 16, window=20, stride=3).describe() == {
        "clip_frames": 16, "window": 20, "stride": 3}
