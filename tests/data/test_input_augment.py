import numpy as np
import pytest
import tensorflow as tf

from kvid.data import AugmentConfig, make_config, preprocess_clip
from kvid.data.augment import GRAY, color_jitter, crop_window, cutmix, jitter_factors, mixup

from data_fixtures import frame_ids, make_clip


def clip_dict(flow=False):
    c = make_clip(1, "v", flow=flow)
    out = {"rgb": tf.constant(c.frames), "label": tf.constant(1, tf.int64)}
    if flow:
        out["flow"] = tf.constant(c.flow)
    return out


def seed(i):
    return tf.constant([3, i], tf.int64)


@pytest.mark.parametrize("crop", ["random_resized", "multiscale", "random"])
def test_crop_and_flip_are_the_same_on_every_frame(crop):
    cfg = make_config(clip_frames=6, image_size=16, augment=AugmentConfig(crop=crop))
    clip = clip_dict()
    flips = set()
    for i in range(6):
        x, _ = preprocess_clip(clip, cfg, training=True, seed=seed(i))
        x = x.numpy() * 255
        assert x.shape == (6, 16, 16, 3)
        # Red/blue ramps encode position: the same profile on all frames = one crop and flip.
        cols, rows = x[..., 0].mean(axis=1), x[..., 2].mean(axis=2)  # [T, W], [T, H]
        np.testing.assert_allclose(cols, np.broadcast_to(cols[:1], cols.shape), atol=1.5)
        np.testing.assert_allclose(rows, np.broadcast_to(rows[:1], rows.shape), atol=1.5)
        ids = frame_ids(x / 255)
        assert ids == list(range(ids[0], ids[0] + 6))
        red = x[0, ..., 0].mean(axis=0)
        flips.add(bool(red[0] > red[-1]))
    assert flips == {True, False}  # 6 seeds saw both orientations


def test_flip_negates_flow_x_with_the_rgb_flip():
    cfg = make_config(clip_frames=4, image_size=16, modality="rgb+flow", augment="center")
    clip = clip_dict(flow=True)
    signs = set()
    for i in range(8):
        x, _ = preprocess_clip(clip, cfg, training=True, seed=seed(i))
        rgb, flow = x["rgb"].numpy(), x["flow"].numpy()
        assert rgb.shape == (4, 16, 16, 3) and flow.shape == (4, 16, 16, 2)
        ids = frame_ids(rgb)
        stored_x = np.array([(128 + 4 * (min(i, 10) + 1)) / 127.5 - 1 for i in ids])  # 11 flows
        flipped = rgb[0, :, 0, 0].mean() > rgb[0, :, -1, 0].mean()
        np.testing.assert_allclose(flow[..., 0].mean(axis=(1, 2)),
                                   -stored_x if flipped else stored_x, atol=0.02)
        np.testing.assert_allclose(flow[..., 1], 96 / 127.5 - 1, atol=0.02)  # y unchanged
        signs.add(flipped)
    assert signs == {True, False}


def test_multiscale_windows_use_the_tsn_scales():
    cfg = AugmentConfig(crop="multiscale")
    allowed = {int(240 * s) for s in cfg.scales}
    for i in range(20):
        y, x, h, w = crop_window(240, 320, (224, 224), cfg, seed(i)).numpy().tolist()
        assert h in allowed and w in allowed
        assert y in (0, 240 - h, round((240 - h) / 2))
        assert x in (0, 320 - w, round((320 - w) / 2))


def test_color_jitter_is_seeded_and_stays_in_range():
    cfg = make_config(clip_frames=4, image_size=16, augment=AugmentConfig(color_jitter=0.4))
    a, _ = preprocess_clip(clip_dict(), cfg, training=True, seed=seed(1))
    b, _ = preprocess_clip(clip_dict(), cfg, training=True, seed=seed(1))
    plain = make_config(clip_frames=4, image_size=16)
    c, _ = preprocess_clip(clip_dict(), plain, training=True, seed=seed(1))
    np.testing.assert_array_equal(a, b)
    assert float(tf.reduce_max(tf.abs(a - c))) > 0.01
    assert 0 <= float(tf.reduce_min(a)) and float(tf.reduce_max(a)) <= 1


def test_color_jitter_matches_the_three_steps_done_one_by_one():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 255, (3, 5, 6, 3)).astype(np.float32)
    for i in range(4):
        b, c, s = jitter_factors(0.4, seed(i)).numpy()
        x = frames.astype(np.float64) + b * 255
        mean = x.mean(axis=(0, 1, 2))
        x = (x - mean) * (1 + c) + mean
        gray = (x * np.array(GRAY)).sum(-1, keepdims=True)
        expected = np.clip((x - gray) * (1 + s) + gray, 0, 255)
        np.testing.assert_allclose(color_jitter(tf.constant(frames), 0.4, seed(i)), expected,
                                   atol=2e-3)


def test_mixup_and_cutmix_mix_inputs_and_labels_alike():
    x = tf.concat([tf.zeros([1, 2, 8, 8, 3]), tf.ones([1, 2, 8, 8, 3])], 0)
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    for fn in (mixup, cutmix):
        mx, my = fn(x, y, 1.0, seed(5))
        # Input 0 is zeros mixed with ones: its mean is exactly the weight of label 1.
        np.testing.assert_allclose(float(tf.reduce_mean(mx[0])), float(my[0, 1]), atol=1e-5)
        np.testing.assert_allclose(tf.reduce_sum(my, 1), [1.0, 1.0], atol=1e-6)
    mx, _ = cutmix({"rgb": x, "flow": x[..., :2]}, y, 1.0, seed(5))
    np.testing.assert_array_equal(mx["rgb"][..., 0], mx["flow"][..., 0])  # one box for both


@pytest.mark.parametrize("kw,match", [
    (dict(crop="zoom"), "crop must be one of"),
    (dict(area_range=(0.5, 1.5)), "area_range"),
    (dict(mixup_alpha=-1.0), "mixup_alpha"),
])
def test_bad_augment_raises(kw, match):
    with pytest.raises(ValueError, match=match):
        AugmentConfig(**kw)


def test_rgb_and_flow_take_all_stored_frames():
    """12 frames have 11 flows: all 12 frames are used, the last flow repeats."""
    cfg = make_config(clip_frames=12, image_size=16, modality="rgb+flow")
    x, _ = preprocess_clip(clip_dict(flow=True), cfg, training=False)
    assert frame_ids(x["rgb"].numpy()) == list(range(12))
    flow_ids = (x["flow"][..., 0].numpy().mean(axis=(1, 2)) + 1) * 127.5
    np.testing.assert_allclose(flow_ids, [128 + 4 * (min(i, 10) + 1) for i in range(12)], atol=1)


def test_flip_left_right_mirrors_width_exactly():
    from kvid.data.augment import flip_left_right

    x = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    np.testing.assert_array_equal(flip_left_right(tf.constant(x)).numpy(), x[:, :, ::-1])
    flow = x[..., :2]
    out = flip_left_right(tf.constant(flow), is_flow=True).numpy()
    np.testing.assert_array_equal(out[..., 0], 255 - flow[:, :, ::-1, 0])
    np.testing.assert_array_equal(out[..., 1], flow[:, :, ::-1, 1])
