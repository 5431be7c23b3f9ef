"""LRCN-family specifics: per-step logits, test-time pooling, argument checks."""

import keras
import numpy as np
import pytest

from kvid.models import build_model, clip_logits
from kvid.models.recurrent import RECURRENT_VARIANTS, build_recurrent

TINY = {"small_cnn_widths": (8,), "units": 4, "dropout": 0.0}


@pytest.mark.parametrize("name", sorted(RECURRENT_VARIANTS))
def test_per_step_logits(name, make_inputs):
    model = build_model(name, (5, 16, 16, 3), 3, per_step=True, **TINY)
    assert tuple(model.output.shape) == (None, 5, 3)
    x = make_inputs((5, 16, 16, 3))
    assert model(x).shape == (2, 5, 3)


def test_clip_logits_mean_and_last():
    steps = np.arange(2 * 3 * 4, dtype="float32").reshape(2, 3, 4)
    np.testing.assert_allclose(clip_logits(steps), steps.mean(axis=1))
    np.testing.assert_allclose(clip_logits(steps, "last"), steps[:, -1])
    with pytest.raises(ValueError, match="mode"):
        clip_logits(steps, "max")


def test_recurrent_stack_matches_variant():
    stacked = build_model("cnn_stacked_lstm", (4, 16, 16, 3), 2, **TINY)
    assert [l.name for l in stacked.layers if isinstance(l, keras.layers.LSTM)] == ["lstm0", "lstm1"]
    bi = build_model("cnn_bilstm", (4, 16, 16, 3), 2, **TINY)
    assert bi.get_layer("bilstm0").output.shape[-1] == 2 * TINY["units"]


def test_flow_modality_input():
    model = build_recurrent((4, 16, 16, 2), 2, modality="flow", **TINY)
    assert model.inputs[0].name == "flow"
    with pytest.raises(ValueError, match="channels"):
        build_recurrent((4, 16, 16, 3), 2, modality="flow", **TINY)


@pytest.mark.parametrize("kwargs, match", [
    ({"cell": "rnn"}, "cell"), ({"units": 0}, "units"), ({"dropout": 1.0}, "dropout"),
    ({"input_shape": (16, 16, 3)}, "input_shape"), ({"num_classes": 0}, "num_classes"),
])
def test_bad_arguments(kwargs, match):
    args = {"input_shape": (4, 16, 16, 3), "num_classes": 2, **TINY, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_recurrent(**args)
