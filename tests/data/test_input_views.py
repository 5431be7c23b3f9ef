import numpy as np
import pytest
import tensorflow as tf

from kvid.data import average_video_scores, make_eval_views, predict_video_scores
from kvid.data.pipeline import spatial_crops
from kvid.data.preprocess import resize_cover_crop

from data_fixtures import frame_ids


def test_views_count_order_ids_and_positions(shard_dir):
    views = make_eval_views(shard_dir, "test", clip_frames=4, image_size=24, num_clips=3,
                            num_crops=3, batch_size=4)
    assert int(views.cardinality()) == 7  # ceil(27 views / 4)
    xs, ys, ids = zip(*[(x.numpy(), y.numpy(), v.numpy()) for x, y, v in views])
    x, y, ids = np.concatenate(xs), np.concatenate(ys), np.concatenate(ids)
    assert x.shape == (3 * 3 * 3, 4, 24, 24, 3)  # 3 records x 3 clips x 3 crops
    assert ids.tolist() == [b"vid0"] * 9 + [b"vid1"] * 9 + [b"vid2"] * 9
    assert y.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    # Clip-major: 3 crops of the first (earliest) clip, ..., then crops of the last clip.
    assert [frame_ids(v)[0] for v in x[:9]] == [0, 0, 0, 4, 4, 4, 8, 8, 8]
    left = [float(v[0, :, 0, 0].mean()) for v in x[:3]]  # red at the left edge: x position
    assert left[0] < left[1] < left[2]


def test_one_crop_is_the_serving_center_crop():
    frames = tf.random.uniform([2, 30, 40, 3], 0, 255, seed=1)
    np.testing.assert_array_equal(spatial_crops(frames, (24, 24), 1)[0],
                                  resize_cover_crop(frames, (24, 24)))
    tall = spatial_crops(tf.transpose(frames, [0, 2, 1, 3]), (24, 24), 3)
    assert tall.shape == (3, 2, 24, 24, 3)  # portrait frames: top/center/bottom


def test_ten_crops_are_corners_and_center_and_their_mirrors():
    frames = tf.random.uniform([2, 32, 48, 2], 0, 255, seed=2)
    crops = spatial_crops(frames, (16, 16), 10).numpy()
    assert crops.shape == (10, 2, 16, 16, 2)
    side = int(32 * 0.875)  # the cover crop is 32 x 32, ten-crop windows 87.5% of it
    windows = [frames[:, :side, :side], frames[:, :side, -side:], frames[:, -side:, :side],
               frames[:, -side:, -side:], frames[:, 2:2 + side, 10:10 + side]]
    for got, window in zip(crops[:5], windows):
        np.testing.assert_allclose(got, tf.image.resize(window, (16, 16)), atol=1e-3)
    np.testing.assert_array_equal(crops[5:], crops[:5, :, :, ::-1])
    flow = spatial_crops(frames, (16, 16), 10, is_flow=True).numpy()
    np.testing.assert_allclose(flow[5:, ..., 0], 255 - crops[:5, :, :, ::-1, 0], atol=1e-3)
    np.testing.assert_array_equal(flow[5:, ..., 1], crops[5:, ..., 1])


def test_average_video_scores_keeps_first_seen_order():
    ids, scores = average_video_scores(
        [b"b", b"a", b"b", b"a"], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.5, 0.5]])
    assert ids.tolist() == [b"b", b"a"]
    np.testing.assert_allclose(scores, [[0.5, 0.0], [0.25, 0.75]])
    with pytest.raises(ValueError, match="same N"):
        average_video_scores([b"a"], [[1.0], [2.0]])


def test_predict_video_scores_averages_all_views(shard_dir):
    views = make_eval_views(shard_dir, "test", clip_frames=4, image_size=16, num_clips=2,
                            num_crops=1, batch_size=5)

    def model(x, training):  # score 0 = mean green = mean sampled frame index
        return tf.stack([tf.reduce_mean(x[..., 1], axis=[1, 2, 3]), tf.zeros(tf.shape(x)[0])], 1)

    ids, scores, labels = predict_video_scores(model, views)
    assert ids.tolist() == [b"vid0", b"vid1", b"vid2"] and labels.tolist() == [0, 1, 2]
    # Clips [0..3] and [8..11]: mean frame 5.5, green 16 * 5.5 / 255.
    np.testing.assert_allclose(scores[:, 0], 16 * 5.5 / 255, atol=0.01)
