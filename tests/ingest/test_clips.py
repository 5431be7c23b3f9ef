"""One video -> clips without Beam: windows, TSN segments, short policies, flow."""

import numpy as np
import pytest

from kvid.ingest.clips import clip_indices, video_to_clips
from kvid.ingest.config import IngestConfig
from kvid.ingest.manifests import VideoItem
from kvid.video.decode import VideoError
from kvid.video.encode import write_video
from kvid.video.flow import make_flow_fn
from kvid.video.frames import decode_jpeg
from kvid.video.sampling import TooShortError
from kvid.video.testing import read_index, write_index_video


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("v") / "idx.mkv")
    write_index_video(path, 30, fps=25, height=32, width=32)
    return path


def indices(clip):
    return [read_index(decode_jpeg(f)) for f in clip.frames]


def test_tsn_segments_take_the_center_of_each_segment(index_video):
    item = VideoItem(index_video, "a", "g")
    clips, frames = video_to_clips(item, 0, IngestConfig(segments=3, snippet=2))
    assert frames == 30 and len(clips) == 1
    assert indices(clips[0]) == [4, 5, 14, 15, 24, 25]  # segments of 10, snippet centered
    assert IngestConfig(segments=3, snippet=2).frames_per_clip == 6


def test_windows_with_stride_and_fps(index_video):
    item = VideoItem(index_video, "a", "g")
    clips, frames = video_to_clips(item, 1, IngestConfig(fps=5, clip_frames=2, stride=1))
    assert frames == 6
    assert [indices(c) for c in clips] == [[0, 5], [5, 10], [10, 15], [15, 20], [20, 25]]
    assert [c.clip_start_frame for c in clips] == [0, 1, 2, 3, 4]
    assert {(c.label, c.fps, c.video_id, c.group) for c in clips} == {(1, 5.0, "idx.mkv", "g")}


@pytest.mark.parametrize("policy,expected", [("loop", [0, 10, 20, 0, 10]),
                                             ("repeat_last", [0, 10, 20, 20, 20])])
def test_short_video_policies(index_video, policy, expected):
    item = VideoItem(index_video, "a", "g")
    clips, _ = video_to_clips(item, 0, IngestConfig(fps=2.5, clip_frames=5, short_policy=policy))
    assert [indices(c) for c in clips] == [expected]
    with pytest.raises(TooShortError):
        video_to_clips(item, 0, IngestConfig(fps=2.5, clip_frames=5, short_policy="reject"))
    with pytest.raises(TooShortError):
        clip_indices(2, IngestConfig(segments=3, short_policy="reject"))


def test_time_range_and_source_rate(index_video):
    item = VideoItem(index_video, "a", "g", start_sec=0.2, end_sec=0.6)
    clips, frames = video_to_clips(item, 0, IngestConfig(clip_frames=10))
    assert frames == 10 and [indices(c) for c in clips] == [list(range(5, 15))]
    assert clips[0].fps == 25.0
    with pytest.raises(VideoError, match="empty"):
        video_to_clips(VideoItem(index_video, "a", "g", start_sec=5.0), 0, IngestConfig())


def moving_square(n=6, size=48, step=2):
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    for i in range(n):
        frame = background.copy()
        x = 8 + i * step
        frame[16:32, x:x + 16] = 220
        yield frame


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_flow_follows_the_motion(tmp_path, method):
    path = str(tmp_path / "move.mkv")
    write_video(path, moving_square(), fps=10, codec="ffv1")
    clips, _ = video_to_clips(VideoItem(path, "a", "g"), 0, IngestConfig(clip_frames=6),
                              make_flow_fn(method))
    from kvid.video.flow import dequantize_flow
    flows = [dequantize_flow(decode_jpeg(f)) for f in clips[0].flow]
    assert len(flows) == 5
    square = np.stack([f[18:30, 14:26] for f in flows])  # inside the square, all frames
    assert 1.0 < np.median(square[..., 0]) < 3.0  # moves 2 px right per frame
    assert abs(np.median(square[..., 1])) < 0.5


def test_tvl1_needs_contrib():
    from kvid.video.flow import check_method, tvl1_available
    if tvl1_available():
        check_method("tvl1")
    else:
        with pytest.raises(ValueError, match="opencv-contrib"):
            make_flow_fn("tvl1")
    with pytest.raises(ValueError, match="flow method"):
        check_method("lucas")


@pytest.mark.parametrize("kwargs,match", [
    ({"fps": 0}, "fps"), ({"clip_frames": 0}, "clip_frames"), ({"stride": 0}, "stride"),
    ({"short_side": 64, "size": (64, 64)}, "not both"), ({"size": (64,)}, "size"),
    ({"jpeg_quality": 0}, "jpeg_quality"), ({"flow": "magic"}, "flow"),
    ({"compression": "zip"}, "compression"), ({"split_ratios": {"train": -1}}, "split_ratios"),
    ({"short_policy": "pad"}, "short_policy"), ({"workers": 0}, "workers"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IngestConfig(**kwargs)
