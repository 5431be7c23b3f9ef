"""Two-stream family, TSN and hidden two-stream: inputs, flow stacking, MotionNet warp."""

import numpy as np
import pytest

from kvid.models import build_model
from kvid.models.hidden_two_stream import MotionNetLoss, warp
from kvid.models.layers import StackFrames
from kvid.models.two_stream import two_stream_shapes

TINY = {"small_cnn_widths": (8, 16), "dropout": 0.0}


def test_stack_frames_order():
    flow = np.arange(2 * 4 * 1 * 1 * 2, dtype="float32").reshape(2, 4, 1, 1, 2)
    stacked = np.asarray(StackFrames(2)(flow))
    assert stacked.shape == (2, 2, 1, 1, 4)
    # stack g holds frames 2g, 2g+1 as (x, y, x, y)
    np.testing.assert_array_equal(stacked[0, 1, 0, 0], np.concatenate([flow[0, 2, 0, 0], flow[0, 3, 0, 0]]))


def test_two_stream_shapes():
    assert two_stream_shapes((1, 32, 32, 3), 10) == ((1, 32, 32, 3), (10, 32, 32, 2))
    shapes = {"rgb": (2, 16, 16, 3), "flow": (4, 16, 16, 2)}
    assert two_stream_shapes(shapes, 10) == ((2, 16, 16, 3), (4, 16, 16, 2))
    with pytest.raises(ValueError, match="'rgb' and 'flow'"):
        two_stream_shapes({"rgb": (2, 16, 16, 3)}, 10)
    with pytest.raises(ValueError, match="channels"):
        two_stream_shapes({"rgb": (2, 16, 16, 3), "flow": (4, 16, 16, 3)}, 10)


@pytest.mark.parametrize("fusion", ["average", "learned"])
def test_two_stream_tuple_input_shape(fusion, make_inputs):
    model = build_model("two_stream", (1, 32, 32, 3), 3, flow_frames=4, fusion=fusion, **TINY)
    x = make_inputs({"rgb": (1, 32, 32, 3), "flow": (4, 32, 32, 2)})
    assert model(x).shape == (2, 3)
    assert model.get_layer("flow_backbone").input.shape[-1] == 8


def test_two_stream_fusion_at_intermediate_layer(make_inputs):
    model = build_model("two_stream_fusion", (2, 32, 32, 3), 3, flow_length=2,
                        fusion_layer="block0_relu", keep_flow_stream=False, **TINY)
    assert model.get_layer("rgb_backbone").output.shape[1:] == (16, 16, 8)
    assert model(make_inputs({"rgb": (2, 32, 32, 3), "flow": (4, 32, 32, 2)})).shape == (2, 3)
    with pytest.raises(ValueError, match="no layer"):
        build_model("two_stream_fusion", (2, 32, 32, 3), 3, fusion_layer="nope", **TINY)
    with pytest.raises(ValueError, match="flow_length"):
        build_model("two_stream_fusion", {"rgb": (2, 32, 32, 3), "flow": (3, 32, 32, 2)}, 3,
                    flow_length=2, **TINY)


def test_tsn_flow_segments(make_inputs):
    model = build_model("tsn", (6, 32, 32, 2), 3, modality="flow", num_segments=3, **TINY)
    assert model.inputs[0].name == "flow"
    assert model.get_layer("backbone").input.shape[-1] == 4
    assert model(make_inputs((6, 32, 32, 2))).shape == (2, 3)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        build_model("tsn", (5, 32, 32, 2), 3, modality="flow", num_segments=3, **TINY)


def test_warp_integer_shift_is_exact():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(1, 6, 7, 3)).astype("float32")
    flow = np.zeros((1, 6, 7, 2), "float32")
    flow[..., 0] = 1.0  # sample one pixel to the right
    warped = np.asarray(warp(image, flow))
    np.testing.assert_allclose(warped[:, :, :-1], image[:, :, 1:], rtol=1e-6)


def test_motionnet_loss_prefers_true_flow():
    rng = np.random.default_rng(1)
    frame = rng.uniform(size=(1, 8, 9, 3)).astype("float32")
    moved = np.roll(frame, 1, axis=2)  # content moves one pixel right
    frames = np.stack([frame, moved], axis=1)
    true_flow = np.zeros((1, 8, 9, 2), "float32")
    true_flow[..., 0] = 1.0
    layer = MotionNetLoss(smoothness=0.0)
    layer([frames, true_flow])
    right = float(layer.losses[-1])
    layer = MotionNetLoss(smoothness=0.0)
    layer([frames, np.zeros_like(true_flow)])
    assert right < float(layer.losses[-1])


def test_hidden_two_stream_adds_motion_loss(make_inputs):
    model = build_model("hidden_two_stream", (3, 32, 32, 3), 3, motionnet_widths=(4,), **TINY)
    model(make_inputs((3, 32, 32, 3)))
    assert len(model.losses) == 1
    plain = build_model("hidden_two_stream", (3, 32, 32, 3), 3, motionnet_widths=(4,),
                        motion_loss_weight=0.0, spatial_stream=False, **TINY)
    plain(make_inputs((3, 32, 32, 3)))
    assert not plain.losses
    with pytest.raises(ValueError, match="divisible"):
        build_model("hidden_two_stream", (3, 30, 30, 3), 3, motionnet_widths=(4, 8), **TINY)
