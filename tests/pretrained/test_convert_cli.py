"""`kvid convert`, `kvid train --pretrained`, export and serve of a converted checkpoint, and
the errors for checkpoints that do not fit (torchvision mc3_18: the quickest to build)."""

import json
import os

import numpy as np
import pytest

from kvid.cli import main
from kvid.pretrained import get_importer, label_names, read_metadata
from kvid.pretrained.parity import randomized_reference, reference_logits, save_reference

SPEC = "torchvision:mc3_18"


@pytest.fixture(scope="module")
def checkpoint(torchvision, tmp_path_factory):
    importer = get_importer(SPEC)
    module = randomized_reference(importer, seed=3)
    path = str(tmp_path_factory.mktemp("ckpt") / importer.checkpoint_name)
    return {"path": save_reference(importer, module, path), "module": module,
            "importer": importer}


def one_line_error(capsys, argv, *expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err


def test_convert_writes_a_keras_file_equal_to_the_reference(checkpoint, tmp_path, capsys):
    import keras

    out = str(tmp_path / "mc3.keras")
    argv = ["convert", SPEC, checkpoint["path"], "-o", out, "--clip-frames", "8",
            "--image-size", "64"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["converted"] == SPEC and line["input_shape"] == [8, 64, 64, 3]
    meta = read_metadata(out)
    assert meta["labels"] == label_names("kinetics400") and len(meta["labels"]) == 400
    assert meta["labels"][0] == "abseiling" and meta["normalization"] == "kinetics"
    assert (meta["clip_frames"], meta["image_size"], meta["fps"]) == (8, [64, 64], 15.0)
    model = keras.models.load_model(out, compile=False)
    clip = np.random.default_rng(1).standard_normal((2, 8, 64, 64, 3)).astype(np.float32)
    expected = reference_logits(checkpoint["importer"], checkpoint["module"], clip)
    np.testing.assert_allclose(np.asarray(model(clip)), expected, atol=1e-4)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temp files left
    one_line_error(capsys, argv, "exists", "--overwrite")
    assert main(argv + ["--overwrite"]) == 0


def test_checkpoints_that_do_not_fit_fail_in_one_line(checkpoint, torch, tmp_path, capsys):
    out = str(tmp_path / "x.keras")
    # Another architecture: r3d_18's tensors into mc3_18 (same names, other shapes).
    r3d = get_importer("torchvision:r3d_18")
    other = save_reference(r3d, r3d.reference(), str(tmp_path / "r3d.pth"))
    one_line_error(capsys, ["convert", SPEC, other, "-o", out], "does not fit torchvision:mc3_18",
                   "shape mismatch", "layer2.0.conv1.0")
    # A truncated state dict: the missing tensors are named.
    state = torch.load(checkpoint["path"], weights_only=True)
    del state["fc.weight"], state["layer4.1.conv2.1.running_var"]
    torch.save(state, str(tmp_path / "cut.pth"))
    one_line_error(capsys, ["convert", SPEC, str(tmp_path / "cut.pth"), "-o", out],
                   "2 missing from the checkpoint", "fc.weight", "layer4.1.conv2.1.running_var")
    # A pickled module (code, not tensors) is refused by weights_only, never unpickled.
    torch.save(checkpoint["module"], str(tmp_path / "module.pth"))
    one_line_error(capsys, ["convert", SPEC, str(tmp_path / "module.pth"), "-o", out],
                   "weights_only=True")
    one_line_error(capsys, ["convert", "torchvision:nope", checkpoint["path"], "-o", out],
                   "Unknown pretrained source", "torchvision:r2plus1d_18")
    one_line_error(capsys, ["convert", SPEC, str(tmp_path / "absent.pth"), "-o", out],
                   "does not exist")
    assert not os.path.exists(out)


def test_models_lists_importers_with_published_top1(capsys):
    import kvid.models
    import kvid.pretrained

    assert kvid.models.load_pretrained is kvid.pretrained.load_pretrained
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "[converts torchvision:r2plus1d_18, Kinetics top-1 67.5%]" in lines["r2plus1d_18"]
    assert "converts" not in lines["cnn_gru"]


def test_fine_tune_from_the_cli_then_export_and_serve(checkpoint, tiny_data, tmp_path, capsys):
    """Backbone from the checkpoint (frozen here, so it must come out unchanged), a new head
    for the 3 synthetic classes, exported with their names and served over REST."""
    import keras

    from kvid.pretrained import load_pretrained
    from kvid.serving.server import start_server

    run = str(tmp_path / "run")
    assert main(["train", "--data", tiny_data["data"], "--output", run, "--model", "mc3_18",
                 "--pretrained", f"torchvision:{checkpoint['path']}", "--freeze-backbone",
                 "--epochs", "1", "--batch-size", "4", "--lr", "0.01"]) == 0
    capsys.readouterr()
    trained = keras.models.load_model(os.path.join(run, "last.keras"), compile=False)
    converted = load_pretrained(SPEC, checkpoint["path"], input_shape=(4, 32, 32, 3))
    for name in ("stem_conv", "res3_0_conv1_conv", "res5_1_conv2_bn"):
        for got, want in zip(trained.get_layer(name).get_weights(),
                             converted.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert trained.get_layer("logits").kernel.shape == (512, 3)

    base = str(tmp_path / "served" / "mc3")
    assert main(["export", run, os.path.join(base, "1")]) == 0
    capsys.readouterr()
    label = tiny_data["info"]["labels"][0]
    video = os.path.join(tiny_data["videos"], label, sorted(
        os.listdir(os.path.join(tiny_data["videos"], label)))[0])
    server = start_server(base, "mc3", poll_seconds=0)
    try:
        assert main(["predict", video, "--server", server.rest_url, "--model", "mc3"]) == 0
    finally:
        server.stop()
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines] and \
        sorted(line.split()[1] for line in lines) == sorted(tiny_data["info"]["labels"])
    # Fine-tuning with another checkpoint kind than the model is refused before training.
    one_line_error(capsys, ["train", "--data", tiny_data["data"], "--output", str(tmp_path / "r"),
                            "--model", "r3d_18", "--pretrained",
                            f"torchvision:mc3_18:{checkpoint['path']}"],
                   "converts into model 'mc3_18', not 'r3d_18'")
