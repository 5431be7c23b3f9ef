"""kvid synth: real, deterministic videos whose classes differ only by motion."""

import numpy as np
import pytest

from kvid.synth import CLASSES, SynthConfig, generate, group_of, render_video
from kvid.video import iter_frames, probe


def _object_mask(frames):
    """Pixels that change between the first and last frame (the moving object)."""
    f = np.stack(frames).astype(np.float32)
    return np.abs(f[-1] - f[0]).sum(-1) > 60


def test_writes_layout_groups_and_is_deterministic(tmp_path):
    cfg = SynthConfig(num_classes=3, videos_per_class=4, frames=8, size=48, actors=2)
    a = generate(str(tmp_path / "a"), cfg)
    b = generate(str(tmp_path / "b"), cfg)
    assert len(a) == 12
    assert sorted(p.split("/a/")[1].split("/")[0] for p in a)[::4] == list(CLASSES[:3])
    assert {group_of(p) for p in a} == {"actor00", "actor01"}
    info = probe(a[0])
    assert (info.width, info.height, info.codec) == (48, 48, "h264")
    fa = [f.rgb for f in iter_frames(a[5])]
    fb = [f.rgb for f in iter_frames(b[5])]
    assert len(fa) == 8
    np.testing.assert_array_equal(fa[3], fb[3])  # same seed, same pixels


def _centroid_track(label, seed):
    cfg = SynthConfig(frames=32, size=64)
    rng = np.random.default_rng(seed)
    frames = list(render_video(label, cfg, rng, np.random.default_rng(99)))
    bg = np.median(np.stack(frames), axis=0)
    track = []
    for f in frames:
        diff = np.abs(f.astype(np.float32) - bg).sum(-1) > 80
        ys, xs = np.nonzero(diff)
        track.append((xs.mean(), ys.mean()))
    return np.array(track)


@pytest.mark.parametrize("label,axis,sign", [("move_left", 0, -1), ("move_right", 0, 1),
                                             ("move_up", 1, -1), ("move_down", 1, 1)])
def test_translation_classes_move_the_right_way(label, axis, sign):
    track = _centroid_track(label, seed=3)
    assert sign * (track[-1, axis] - track[0, axis]) > 5


def test_single_frames_do_not_give_the_direction_away():
    """Trajectories are centred: mean object position over many videos is the frame centre
    for both opposite classes, so where the object is says nothing about where it goes."""
    means = {}
    for label in ("move_left", "move_right"):
        means[label] = np.mean([_centroid_track(label, s)[:, 0].mean() for s in range(8)])
    assert abs(means["move_left"] - means["move_right"]) < 6


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="num_classes"):
        SynthConfig(num_classes=9)
    with pytest.raises(ValueError, match="size"):
        SynthConfig(size=33)
