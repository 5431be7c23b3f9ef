"""The registry contract, and every registered model at its tiny configuration.

Each model is built once per module (``built``) and checked for: exact output shape and
dtype, the input/layer naming contract, ``.keras`` save/load giving equal outputs, and one
training step lowering the loss on a fixed batch.
"""

import dataclasses
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from kvid.models import MODELS, ModelInfo, build_model, get_model_info, list_models

NAMES = list_models()


def _tiny_key(name):
    info = MODELS[name]
    builder = info.builder
    if not isinstance(builder, functools.partial):
        return name
    kwargs = {k: v for k, v in {**builder.keywords, **info.tiny_kwargs}.items() if k != "name"}
    return builder.func, repr(sorted(kwargs.items())), info.tiny_input_shape


# A variant whose tiny configuration is another's is the same network (every MoViNet's tiny
# form is A0's): the tests that build, save and train it run once per distinct network.
TINY = [n for i, n in enumerate(NAMES) if _tiny_key(n) not in {_tiny_key(m) for m in NAMES[:i]}]


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            info = MODELS[name]
            keras.utils.set_random_seed(0)
            cache[name] = build_model(name, info.tiny_input_shape, 3, **info.tiny_kwargs)
        return cache[name]

    return get


def _expected_inputs(info: ModelInfo):
    return ("rgb", "flow") if info.modality == "rgb+flow" else (info.modality,)


def test_list_models_sorted_and_complete():
    assert NAMES == sorted(MODELS)
    issue_6 = {"single_frame", "early_fusion", "late_fusion", "slow_fusion", "multires", "cnn_lstm",
               "cnn_gru", "cnn_bilstm", "cnn_stacked_lstm", "lrcn_soft_attention", "c3d", "i3d",
               "two_stream", "two_stream_fusion", "tsn", "fstcn", "r2plus1d", "t3d", "actionvlad",
               "hidden_two_stream", "slowfast", "x3d", "conv3d_attention", "vivit"}
    assert issue_6 <= set(NAMES)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="cnn_gru") as err:
        get_model_info("no_such_model")
    assert "no_such_model" in str(err.value)
    with pytest.raises(ValueError, match="Valid names"):
        build_model("no_such_model", (4, 32, 32, 3), 2)


def test_model_info_is_frozen_and_checked():
    info = get_model_info("c3d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.modality = "flow"
    with pytest.raises(ValueError, match="modality"):
        dataclasses.replace(info, modality="depth")
    with pytest.raises(ValueError, match="normalization"):
        dataclasses.replace(info, normalization="zscore")


@pytest.mark.parametrize("name", NAMES)
def test_info_fields(name):
    info = MODELS[name]
    assert callable(info.builder)
    if isinstance(info.builder, functools.partial):  # a variant declared as data
        assert info.builder.func.__name__.startswith("build_") and info.builder.keywords
    else:
        assert info.builder.__name__ == f"build_{name}"
    assert info.description and info.paper
    ref = info.reference_input_shape
    shapes = ref.values() if isinstance(ref, dict) else [ref]
    assert all(len(s) == 4 for s in shapes)


def test_demo_model_is_small():
    model = build_model("cnn_gru", input_shape=(8, 64, 64, 3), num_classes=4)
    assert 100_000 < model.count_params() < 1_000_000
    assert tuple(model.output.shape) == (None, 4)


@pytest.mark.parametrize("name", TINY)
def test_builds_with_contract(name, built, make_inputs):
    info = MODELS[name]
    model = built(name)
    assert sorted(t.name for t in model.inputs) == sorted(_expected_inputs(info))
    assert all("/" not in layer.name for layer in model.layers)
    assert not model.compiled
    out = model(make_inputs(info.tiny_input_shape), training=False)
    assert tuple(out.shape) == (2, 3)
    assert out.dtype == "float32"
    assert tuple(model.output.shape) == (None, 3)


@pytest.mark.parametrize("name", TINY)
def test_keras_save_load_equal_outputs(name, built, make_inputs, tmp_path):
    model = built(name)
    x = make_inputs(MODELS[name].tiny_input_shape)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_one_training_step_lowers_loss(name, built, make_inputs):
    """One eager SGD step (what ``fit`` does, without tracing a train function per model)."""
    model = built(name)
    x = make_inputs(MODELS[name].tiny_input_shape, batch=4, seed=1)
    y = np.array([0, 1, 2, 1])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def loss():  # training mode: BatchNorm uses batch statistics, as in the step itself
        return loss_fn(y, model(x, training=True))

    before = float(loss())
    with tf.GradientTape() as tape:
        total = loss() + sum(model.losses)
    grads = tape.gradient(total, model.trainable_variables)
    assert all(g is not None for g in grads)
    keras.optimizers.SGD(0.01).apply(grads, model.trainable_variables)
    assert float(loss()) < before
