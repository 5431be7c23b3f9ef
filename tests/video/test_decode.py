"""Decoding picks exactly the frames on screen at each target time, in every container."""

import fractions
import os

import av
import numpy as np
import pytest

from kvid.video import decode
from kvid.video.decode import VideoError, iter_frames, probe
from kvid.video.testing import CODECS, index_frame, read_index, write_index_video


def indices(path, **kwargs):
    return [read_index(f.rgb) for f in iter_frames(path, **kwargs)]


@pytest.fixture(scope="module")
def lossless(tmp_path_factory):
    """30 frames at 25 fps, libx264rgb crf 0: decoded frames equal the written ones."""
    path = str(tmp_path_factory.mktemp("v") / "idx.mp4")
    return path, write_index_video(path, 30, fps=25, height=32, width=48)


def test_lossless_roundtrip_is_bit_exact(lossless):
    path, written = lossless
    frames = list(iter_frames(path))
    assert len(frames) == 30
    for i, f in enumerate(frames):
        assert (f.index, f.source_index) == (i, i) and f.time == pytest.approx(i / 25)
        np.testing.assert_array_equal(f.rgb, written[i])
    info = probe(path)
    assert (info.fps, info.num_frames, info.width, info.height) == (25.0, 30, 48, 32)
    assert info.duration == pytest.approx(1.2)


@pytest.mark.parametrize("kwargs,expected", [
    ({"fps": 5}, [0, 5, 10, 15, 20, 25]),
    ({"fps": 10}, [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27]),  # frame on screen at k/10 s
    ({"fps": 50}, [i // 2 for i in range(60)]),  # upsampling repeats
    ({"fps": 10, "start_sec": 0.4, "end_sec": 0.8}, [10, 12, 15, 17]),
    ({"start_sec": 1.0}, [25, 26, 27, 28, 29]),
    ({"end_sec": 0.1}, [0, 1, 2]),
    ({"fps": 4, "start_sec": 0.1}, [2, 8, 15, 21, 27]),  # 0.1, 0.35, 0.6, 0.85, 1.1 s
])
def test_resampling_selects_by_timestamp(lossless, kwargs, expected):
    assert indices(lossless[0], **kwargs) == expected


def test_source_index_after_seek_counts_from_the_stream_start(lossless):
    frames = list(iter_frames(lossless[0], fps=5, start_sec=0.6))
    assert [(f.index, f.source_index) for f in frames] == [(0, 15), (1, 20), (2, 25)]


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_every_container_decodes_the_written_frames(tmp_path, ext):
    path = str(tmp_path / f"v{ext}")
    write_index_video(path, 20, fps=25, height=32, width=32, lossless=False)
    assert indices(path) == list(range(20))
    assert indices(path, fps=12.5) == list(range(0, 20, 2))
    assert probe(path).fps == pytest.approx(25.0)


def write_vfr(path, times_ms):
    """An ffv1/mkv video whose frame k shows k at time times_ms[k] (variable frame rate)."""
    with av.open(path, "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 32, 32, "bgr0"
        s.time_base = s.codec_context.time_base = fractions.Fraction(1, 1000)
        for k, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(index_frame(k, 32, 32), format="rgb24")
            frame.pts, frame.time_base = t, fractions.Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_variable_frame_rate_uses_timestamps(tmp_path):
    path = str(tmp_path / "vfr.mkv")
    write_vfr(path, [0, 40, 300, 320, 700, 1000])
    frames = list(iter_frames(path))
    assert [round(f.time, 3) for f in frames] == [0, 0.04, 0.3, 0.32, 0.7, 1.0]
    # at 5 fps (0, .2, .4, .6, .8, 1.0 s) the frame on screen is the last one shown before
    assert indices(path, fps=5)[:6] == [0, 1, 3, 3, 4, 5]


@pytest.mark.parametrize("name,data,reason", [
    ("zero.mp4", b"", decode.EMPTY),
    ("text.mp4", b"not a video at all\n" * 10, decode.INVALID_DATA),
    ("random.avi", bytes(range(256)) * 20, decode.INVALID_DATA),
])
def test_bad_files_raise_video_error_with_reason(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(VideoError) as e:
        list(iter_frames(str(path)))
    assert e.value.reason == reason
    with pytest.raises(VideoError, match=decode.MISSING_FILE):
        list(iter_frames(str(tmp_path / "nope.mp4")))


def test_truncated_stream_is_not_a_short_video(tmp_path):
    path = tmp_path / "full.mkv"
    write_index_video(str(path), 50, fps=25, height=32, width=32)
    (tmp_path / "cut.mkv").write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(VideoError) as e:
        list(iter_frames(str(tmp_path / "cut.mkv")))
    assert e.value.reason == decode.TRUNCATED
    # a range that ends inside what is left is fine
    assert indices(str(tmp_path / "cut.mkv"), end_sec=0.4) == list(range(10))


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.mp4"
    write_index_video(str(path), 3, fps=25, height=32, width=32)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(decode.av, "open", deny)  # root reads a chmod 000 file anyway
    with pytest.raises(VideoError) as e:
        list(iter_frames(str(path)))
    assert e.value.reason == decode.UNREADABLE


def test_argument_validation(lossless):
    with pytest.raises(ValueError, match="fps"):
        list(iter_frames(lossless[0], fps=0))
    with pytest.raises(ValueError, match="end_sec"):
        list(iter_frames(lossless[0], start_sec=1.0, end_sec=0.5))
