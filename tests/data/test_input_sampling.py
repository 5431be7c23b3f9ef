import numpy as np
import pytest
import tensorflow as tf

from kvid.data.sampling import temporal_indices
from kvid.video import segment_indices


def idx(n, t, **kw):
    return temporal_indices(tf.constant(n), t, **kw).numpy().tolist()


def seeds(k):
    return [tf.constant([7, i], tf.int64) for i in range(k)]


def test_dense_eval_centre_phase_step_and_loop():
    assert idx(12, 4, training=False) == [4, 5, 6, 7]
    assert idx(12, 4, training=False, phase=0.0) == [0, 1, 2, 3]
    assert idx(12, 4, training=False, phase=1.0) == [8, 9, 10, 11]
    assert idx(12, 4, training=False, frame_step=2) == [2, 4, 6, 8]
    assert idx(3, 5, training=False) == [0, 1, 2, 0, 1]  # short clip loops


def test_dense_training_is_a_random_window_inside_the_clip():
    starts = set()
    for s in seeds(20):
        got = idx(12, 4, training=True, seed=s, frame_step=2)
        assert got == list(range(got[0], got[0] + 8, 2)) and 0 <= got[0] <= 5
        starts.add(got[0])
    assert len(starts) > 2


def test_uniform_spreads_over_the_whole_clip():
    assert idx(12, 4, sampling="uniform", training=False) == [1, 4, 7, 10]
    assert idx(3, 6, sampling="uniform", training=False) == [0, 0, 1, 1, 2, 2]
    for s in seeds(10):
        got = idx(12, 4, sampling="uniform", training=True, seed=s)
        assert np.all(np.diff(got) == 3) and 0 <= got[0] < 3  # one shared random phase


@pytest.mark.parametrize("n,k,snippet", [(12, 3, 1), (12, 3, 2), (25, 4, 3), (7, 3, 1), (5, 8, 1)])
def test_segments_eval_matches_kvid_video(n, k, snippet):
    want = sum(segment_indices(n, k, snippet), [])
    assert idx(n, k * snippet, sampling="segments", num_segments=k, training=False) == want


def test_segments_training_takes_one_snippet_inside_each_segment():
    for s in seeds(10):
        got = np.array(idx(24, 6, sampling="segments", num_segments=3, training=True, seed=s))
        snippets = got.reshape(3, 2)
        assert np.all(np.diff(snippets, axis=1) == 1)
        for k, (a, b) in enumerate(snippets):
            assert 8 * k <= a and b < 8 * (k + 1)


@pytest.mark.parametrize("kw,match", [
    (dict(sampling="random"), "sampling must be one of"),
    (dict(sampling="segments", num_segments=3), "multiple of num_segments"),
    (dict(frame_step=0), "frame_step"),
])
def test_bad_arguments_raise(kw, match):
    with pytest.raises(ValueError, match=match):
        temporal_indices(tf.constant(12), 4, training=False, **kw)
