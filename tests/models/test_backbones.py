"""Frame backbones: keras.applications with input adapters, local weights, SavedModel dirs."""

import keras
import numpy as np
import pytest

from kvid.models import build_model
from kvid.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_backbone, input_adapter


@pytest.mark.parametrize("normalization, native, pixel, expected", [
    ("unit", "tf", [1.0, 0.5, 0.0], [1.0, 0.0, -1.0]),
    ("symmetric", "raw", [1.0, 0.0, -1.0], [255.0, 127.5, 0.0]),
    ("unit", "caffe", [0.0, 0.0, 1.0], [255 - 103.939, -116.779, -123.68]),  # RGB -> BGR
    ("imagenet", "torch", [0.3, -0.2, 1.0], [0.3, -0.2, 1.0]),
])
def test_input_adapter_converts(normalization, native, pixel, expected):
    adapter = input_adapter(normalization, native, name="adapter")
    if adapter is None:
        assert pixel == expected
        return
    out = adapter(np.array([[pixel]], dtype="float32"))
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5, atol=1e-4)


def test_input_adapter_imagenet_to_tf():
    pixel_unit = np.array([0.2, 0.4, 0.9], dtype="float32")
    normalized = (pixel_unit - IMAGENET_MEAN) / IMAGENET_STD
    out = input_adapter("imagenet", "tf", name="a")(normalized[None].astype("float32"))
    np.testing.assert_allclose(out[0], pixel_unit * 2 - 1, atol=1e-5)


def test_small_cnn_shape_and_unknown_name():
    net = build_backbone("small_cnn", (64, 64, 3))
    assert tuple(net.output.shape) == (None, 4, 4, 128)
    with pytest.raises(ValueError, match="backbone"):
        build_backbone("vgg99", (64, 64, 3))
    with pytest.raises(ValueError, match="weights"):
        build_backbone("small_cnn", (64, 64, 3), weights="/no/such/file.weights.h5")


def test_application_backbone_no_download():
    net = build_backbone("MobileNetV3Small", (32, 32, 3), name="mnv3")
    assert net.name == "mnv3"
    assert net.layers[1].name == "mnv3_adapter"
    assert net(np.zeros((1, 32, 32, 3), "float32")).shape[-1] == 576
    with pytest.raises(ValueError, match="at least 75"):
        build_backbone("inception_v3", (32, 32, 3))


def test_local_weights_file(tmp_path):
    keras.utils.set_random_seed(1)
    source = build_backbone("small_cnn", (16, 16, 3), small_cnn_widths=(4, 8))
    path = str(tmp_path / "frames.weights.h5")
    source.save_weights(path)
    keras.utils.set_random_seed(2)
    loaded = build_backbone("small_cnn", (16, 16, 3), small_cnn_widths=(4, 8), weights=path)
    for a, b in zip(source.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_saved_model_directory_backbone(tmp_path, make_inputs):
    """A TF-Hub-style feature-vector SavedModel as the per-frame backbone of a zoo model."""
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 3)(inputs))
    path = str(tmp_path / "hub_model")
    keras.Model(inputs, features).export(path, verbose=False)

    model = build_model("single_frame", (3, 16, 16, 3), 2, backbone=path, dropout=0.0,
                        backbone_trainable=False)
    x = make_inputs((3, 16, 16, 3))
    assert model(x).shape == (2, 2)
    assert model.get_layer("backbone").output.shape[-1] == 6
    keras.saving.save_model(model, tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=False)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
