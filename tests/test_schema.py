"""The clip record round trip: what ingest writes is what tf.data and TFX read back."""

import numpy as np
import tensorflow as tf

from kvid import schema
from kvid.video import decode_jpeg, encode_jpeg


def _clip(flow=()):
    rng = np.random.default_rng(0)
    frames = [encode_jpeg(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(5)]
    return schema.Clip(frames=frames, label=2, label_name="move_up", video_id="v/1", group="actor03",
                       clip_index=1, clip_start_frame=5, fps=12.5, height=24, width=32, flow=flow)


def test_python_round_trip_is_exact():
    clip = _clip(flow=[b"f1", b"f2"])
    assert schema.from_example(schema.serialize_clip(clip)) == clip


def test_tf_parse_matches_python_values():
    clip = _clip()
    parsed = schema.parse_clips(tf.constant([schema.serialize_clip(clip)] * 2))
    assert parsed[schema.FRAMES].shape.as_list()[:1] == [2]
    assert [bytes(b) for b in parsed[schema.FRAMES][0].numpy()] == list(clip.frames)
    assert parsed[schema.LABEL].numpy().tolist() == [2, 2]
    assert parsed[schema.NUM_FRAMES].numpy().tolist() == [5, 5]
    assert parsed[schema.GROUP].numpy()[0] == b"actor03"
    np.testing.assert_allclose(parsed[schema.FPS].numpy(), 12.5)
    one = schema.parse_clip(tf.constant(schema.serialize_clip(clip)))
    assert one[schema.CLIP_START_FRAME].numpy() == 5 and one[schema.WIDTH].numpy() == 32


def test_frames_survive_jpeg_within_tolerance():
    y, x = np.mgrid[0:32, 0:32]
    smooth = np.stack([x * 6, y * 6, (x + y) * 3], axis=-1).astype(np.uint8)
    back = decode_jpeg(encode_jpeg(smooth, quality=95))
    assert back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth.astype(int)).mean() < 3.0


def test_flow_is_optional_in_the_spec():
    assert schema.FLOW not in schema.feature_spec()
    assert schema.FLOW in schema.feature_spec(with_flow=True)
    parsed = schema.parse_clips(tf.constant([schema.serialize_clip(_clip(flow=[b"a"] * 4))]),
                                with_flow=True)
    assert parsed[schema.FLOW][0].shape[0] == 4
