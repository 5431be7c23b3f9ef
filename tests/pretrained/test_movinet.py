"""MoViNet against TF Model Garden's own (tf-models-official, the test extra) on the same
random weights, and the step model against the causal clip model it shares weights with."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kvid.models.movinet import (SPECS, build_movinet, build_movinet_step, initial_states,
                                 load_model_garden_weights, state_shapes)


# Model Garden's published form, and its TF Lite form (export_saved_model.py's example)
LITE = {"conv_type": "2plus1d", "se_type": "2plus3d", "activation": "hard_swish",
        "gating_activation": "hard_sigmoid"}
FORMS = {"base": {}, "causal": {"causal": True}, "lite": {"causal": True, **LITE},
         "lite_base": LITE,
         "lite_pos": {"causal": True, "use_positional_encoding": True, **LITE}}


def _kvid_form(form):
    form = dict(form)
    if form.pop("use_positional_encoding", False):
        form["positional_encoding"] = True
    return form


def _reference(model_garden, model_id, form, num_classes=5, frames=6, size=40, seed=0):
    """Model Garden's MovinetClassifier with every weight random (BN statistics and the
    zero-initialized rezero scales too, so that every path counts)."""
    import tf_keras

    movinet_ref, movinet_model = model_garden
    tf_keras.backend.clear_session()
    backbone = movinet_ref.Movinet(model_id=model_id, **form)
    ref = movinet_model.MovinetClassifier(backbone=backbone, num_classes=num_classes,
                                          activation=form.get("activation", "swish"))
    ref.build([1, frames, size, size, 3])
    rng = np.random.default_rng(seed)
    for v in ref.weights:
        shape = tuple(v.shape)
        if any(k in v.name for k in ("moving_variance", "gamma", "scale")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 100
            value = rng.normal(0.0, (2.0 / fan_in) ** 0.5, shape)
        v.assign(value.astype("float32"))
    return ref


def _kvid(form, model_id="a0", num_classes=5, frame_shape=(None, None)):
    return build_movinet((None, *frame_shape, 3), num_classes, model_id=model_id,
                         dropout=0.0, head_activation=form.get("activation", "swish"),
                         **_kvid_form(form))


@pytest.mark.parametrize("form", ["base", "causal", "lite_base", "lite_pos"])
def test_a0_equals_model_garden(form, model_garden):
    ref = _reference(model_garden, "a0", FORMS[form])
    model = _kvid(FORMS[form])
    assert load_model_garden_weights(model, ref) == len(ref.weights)
    x = np.random.default_rng(1).uniform(0, 1, (2, 6, 40, 40, 3)).astype("float32")
    expected = ref(x, training=False).numpy()
    got = model(x, training=False).numpy()
    assert np.abs(expected).max() > 0.5  # logits that are not all ~0
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # a causal network's logits differ from the base one's on the same weights
    if form == "causal":
        base = _kvid(FORMS["base"])
        base.set_weights(model.get_weights())
        assert np.abs(base(x, training=False).numpy() - got).max() > 1e-3


def test_the_specs_are_model_gardens(model_garden):
    """Every variant's block specs, field by field, against Model Garden's BLOCK_SPECS."""
    movinet_ref, _ = model_garden
    for model_id, spec in SPECS.items():
        stem, *blocks, head = movinet_ref.BLOCK_SPECS[model_id]
        assert (spec.stem, spec.project, spec.head) == (stem.filters, head.project_filters,
                                                        head.head_filters), model_id
        assert stem.kernel_size == (1, 3, 3) and stem.strides == (1, 2, 2)
        assert [(b.filters, b.expand, b.kernels, b.strides) for b in spec.blocks] == [
            (b.base_filters, tuple(b.expand_filters), tuple(b.kernel_sizes), tuple(b.strides))
            for b in blocks], model_id


@pytest.mark.parametrize("name", ["movinet_a2", "movinet_a3_stream"])
def test_registry_variants_have_model_gardens_parameters(name, model_garden):
    """The registry's variants: base as Model Garden's base models, stream as its stream
    checkpoints' network (positional encoding from A3 on)."""
    from kvid.models import build_model

    movinet_ref, movinet_model = model_garden
    model_id = name.split("_")[1]
    stream = name.endswith("_stream")
    form = {"causal": True, "use_positional_encoding": model_id in ("a3", "a4", "a5"),
            **LITE} if stream else {}
    ref = movinet_model.MovinetClassifier(
        backbone=movinet_ref.Movinet(model_id=model_id, **form), num_classes=600)
    ref.build([1, 1, 64, 64, 3])
    model = build_model(name, (None, None, None, 3), 600)
    assert model.count_params() == ref.count_params()
    assert model.name == name
    assert load_model_garden_weights(model, ref) == len(ref.weights)


@pytest.mark.parametrize("form", ["causal", "lite_pos"])
def test_the_step_model_streams_the_causal_model(form):
    keras.utils.set_random_seed(0)
    model = _kvid(FORMS[form], num_classes=4, frame_shape=(32, 32))
    rng = np.random.default_rng(0)
    for w in model.weights:  # rezero scales and BN statistics away from their initial 0/1
        if "scale" in w.path or "moving" in w.path:
            w.assign(rng.uniform(0.5, 1.5, tuple(w.shape)).astype("float32"))
    step = build_movinet_step(model, (32, 32))
    assert step.count_params() == model.count_params()  # the same weights, shared
    shapes = state_shapes(model, (32, 32))
    assert {t.name for t in step.inputs} == {"rgb", *shapes}
    assert any("pos_enc" in k for k in shapes) == (form == "lite_pos")
    # block 1's first layer (K33, stride 2): a 3d conv buffers its input, 2plus1d its
    # per-frame conv's strided output
    assert shapes["state_block1_layer0_stream_buffer"][0] == (
        (2, 8, 8, 80) if form == "causal" else (2, 4, 4, 80))
    x = tf.constant(rng.uniform(0, 1, (2, 6, 32, 32, 3)).astype("float32"))
    for chunk in (1, 2, 3):  # frame by frame, or a few frames a step
        states = initial_states(step, batch=2)
        for t in range(0, 6, chunk):
            out = step({"rgb": x[:, t:t + chunk], **states})
            states = {k: v for k, v in out.items() if k != "logits"}
            clip = model(x[:, :t + chunk], training=False).numpy()
            np.testing.assert_allclose(out["logits"].numpy(), clip, atol=2e-5)
    firsts = [model(x[:, :t], training=False).numpy() for t in (1, 3, 6)]
    assert min(np.abs(a - b).max() for a, b in zip(firsts, firsts[1:])) > 1e-3
    # a shared layer: training the clip model changes what the step model computes
    before = step({"rgb": x[:, :1], **initial_states(step, 2)})["logits"].numpy()
    model.get_layer("classifier_head__classifier__conv3d").bias.assign(np.ones(4, "float32"))
    after = step({"rgb": x[:, :1], **initial_states(step, 2)})["logits"].numpy()
    np.testing.assert_allclose(after - before, 1.0, atol=1e-5)  # the bias was 0
    with pytest.raises(ValueError, match="needs a causal MoViNet"):
        build_movinet_step(build_movinet((None, 32, 32, 3), 4, dropout=0.0), (32, 32))
    with pytest.raises(ValueError, match="not a MoViNet built by kvid"):
        build_movinet_step(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
                           (32, 32))


def test_the_stream_model_trains_from_the_cli_as_its_causal_clip_model(movinet_stream_run):
    from kvid.train.runs import load_run

    loaded = load_run(movinet_stream_run)
    assert loaded.model.name == "movinet_a0_stream"
    assert loaded.model.get_layer("block1_layer0__bneck__feature__buffer").size == 2
    # the trained run's model (loaded from its .keras file) streams with its own layers
    step = build_movinet_step(loaded.model, (32, 32))
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 4, 32, 32, 3)), tf.float32)
    states = initial_states(step)
    for t in range(4):
        out = step({"rgb": x[:, t:t + 1], **states})
        states = {k: v for k, v in out.items() if k != "logits"}
    np.testing.assert_allclose(out["logits"].numpy(),
                               loaded.model(x, training=False).numpy(), atol=2e-5)


def test_a_stream_models_export_streams_through_the_serving_api(tmp_path):
    """stream_init + stream_step of the SavedModel, frame by frame with the states carried
    by the caller (as a TF Serving client must), end at serving_default's scores on the
    whole clip; a base model's export has no stream signatures."""
    from kvid.train.export import export_saved_model
    from kvid.video.frames import encode_jpeg

    keras.utils.set_random_seed(0)
    model = _kvid(FORMS["lite_pos"], num_classes=4, frame_shape=(32, 32))
    for w in model.weights:
        if "scale" in w.path:
            w.assign(np.float32(0.7))
    rng = np.random.default_rng(2)
    clip = [encode_jpeg(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(5)]
    out = export_saved_model(model, str(tmp_path / "m" / "1"), labels=list("abcd"),
                             clip_frames=5, image_size=(32, 32), normalization="unit")
    served = tf.saved_model.load(out)
    assert {"stream_init", "stream_step"} <= set(served.signatures)
    whole = served.signatures["serving_default"](frames=tf.constant([clip]))
    states = served.signatures["stream_init"](batch_size=tf.constant(1))
    assert len(states) == len(state_shapes(model, (32, 32)))
    for frame in clip:
        step = served.signatures["stream_step"](frames=tf.constant([[frame]]), **states)
        states = {k: v for k, v in step.items() if k in states}
    np.testing.assert_allclose(step["probabilities"].numpy(),
                               whole["probabilities"].numpy(), atol=1e-5)
    assert step["labels"].numpy()[0, 0] == whole["labels"].numpy()[0, 0]
    import json
    import os

    meta = json.load(open(os.path.join(out, "assets", "kvid.json")))
    assert meta["stream"] == {"init": "stream_init", "step": "stream_step"}
    from kvid.data import InputConfig
    from kvid.train.export import Member, _stream_signatures

    base = _kvid(FORMS["base"], num_classes=4, frame_shape=(32, 32))
    assert _stream_signatures([Member(base, InputConfig(5, (32, 32)))], None) == {}
