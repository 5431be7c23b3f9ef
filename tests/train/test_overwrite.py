"""Issue 17: what `kvid train` and `kvid export` do with an output that already exists, and
the arguments they refuse up front (unknown model kwargs, clips longer than stored ones,
a top-k beyond the classes, non-finite numbers)."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from kvid import cli
from kvid.models.registry import MODELS, build_model, builder_keywords
from kvid.serving.servables import versions_on_disk
from kvid.train.export import WARMUP_FILE, read_preprocessing
from kvid.train.runs import export_run, load_run
from kvid.train.trainer import RunPaths, TrainConfig, check_resumable, train

TINY_MODEL = {"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0}  # as conftest's
KVID = os.path.join(os.path.dirname(sys.executable), "kvid")


def _snapshot(root) -> dict:
    """Every file's bytes and every folder under ``root``: equal snapshots, untouched tree."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.join(rel, d) + "/"] = None
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.join(rel, name)] = f.read()
    return out


def _complete(version_dir) -> bool:
    """A whole SavedModel as export writes it (the warm-up file is written last)."""
    return all(os.path.isfile(os.path.join(version_dir, p)) for p in
               ("saved_model.pb", "variables/variables.index", "assets/kvid.json",
                f"assets.extra/{WARMUP_FILE}"))


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    """A finished cnn_gru run of one epoch (tests copy it before changing anything)."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    train(TrainConfig(data_dir=tiny_data["data"], output_dir=out, model="cnn_gru",
                      model_kwargs=TINY_MODEL, epochs=1, batch_size=4, verbose=0))
    return out


@pytest.fixture(scope="module")
def served(finished, tmp_path_factory):
    """serving/models/kvid with version 1 exported from ``finished`` (top-k 2)."""
    base = tmp_path_factory.mktemp("served") / "kvid"
    export_run(finished, str(base / "1"), top_k=2)
    return base


@pytest.fixture
def run_copy(finished, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(finished, path)
    return path


@pytest.fixture
def base_copy(served, tmp_path):
    path = tmp_path / "kvid"
    shutil.copytree(served, path)
    return path


# --- train: an existing run ----------------------------------------------------------------

def test_finished_run_is_refused_without_overwrite_and_left_byte_identical(
        tiny_data, run_copy, capsys):
    before = _snapshot(run_copy)
    with pytest.raises(FileExistsError, match="--overwrite") as err:
        train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(run_copy),
                          model="single_frame", epochs=1, batch_size=4, verbose=0))
    assert RunPaths(str(run_copy)).found() == ["config.json", "best.keras", "last.keras",
                                               "train_log.csv"]
    assert "\n" not in str(err.value) and "--resume" in str(err.value)
    code = cli.main(["train", "--data", tiny_data["data"], "--output", str(run_copy),
                     "--model", "cnn_gru", "--epochs", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--overwrite" in lines[0], lines
    assert lines[0].startswith("kvid train: error:")
    assert _snapshot(run_copy) == before


def test_overwrite_replaces_the_run_cleanly(tiny_data, run_copy, capsys):
    """A run of another model replaces the old one; nothing of the old run stays (backup,
    TensorBoard events, evaluations), files that are not the run's do."""
    (run_copy / "backup").mkdir()
    (run_copy / "backup" / "stale.weights.h5").write_text("old")
    (run_copy / "tensorboard" / "stale.tfevents").write_text("old")
    (run_copy / "eval-test").mkdir()
    (run_copy / "eval-test" / "report.json").write_text("{}")
    (run_copy / "notes.txt").write_text("mine")
    assert cli.main(["train", "--data", tiny_data["data"], "--output", str(run_copy),
                     "--model", "single_frame", "--model-args", '{"small_cnn_widths": [8]}',
                     "--epochs", "1", "--batch-size", "4", "--overwrite"]) == 0
    capsys.readouterr()
    config = json.load(open(run_copy / "config.json"))
    assert config["model"] == "single_frame" and config["overwrite"] is True
    assert not (run_copy / "backup").exists()
    assert not (run_copy / "tensorboard" / "stale.tfevents").exists()
    assert os.listdir(run_copy / "tensorboard")  # the new run's events
    assert not (run_copy / "eval-test").exists()
    assert (run_copy / "notes.txt").read_text() == "mine"
    assert open(run_copy / "train_log.csv").read().splitlines()[1].startswith("0,")
    assert len(open(run_copy / "train_log.csv").read().strip().splitlines()) == 2
    model = load_run(str(run_copy)).model
    expected = build_model("single_frame", (4, 32, 32, 3), 3, small_cnn_widths=(8,))
    assert model.count_params() == expected.count_params()


def test_resume_and_overwrite_together_are_refused(tiny_data, tmp_path, capsys):
    with pytest.raises(ValueError, match="resume.*overwrite"):
        TrainConfig(data_dir="d", output_dir="o", resume=True, overwrite=True)
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "--data", tiny_data["data"], "--output", str(tmp_path / "r"),
                  "--resume", "--overwrite"])
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("change,named", [
    ({"model": "single_frame", "model_kwargs": {"small_cnn_widths": (8,)}}, "model"),
    ({"model_kwargs": {**TINY_MODEL, "units": 16}}, "model kwargs"),
    ({"model_kwargs": {}, "preset": "tiny", "clip_frames": 2}, "clip_frames"),
    ({"image_size": 16}, "image_size"),
])
def test_resume_with_other_settings_is_refused_before_config_json_is_written(
        tiny_data, run_copy, change, named):
    (run_copy / "backup").mkdir()  # an interrupted run: its checkpoint is for cnn_gru 4x32x32
    (run_copy / "backup" / "training_metadata.json").write_text("{}")
    before = _snapshot(run_copy)
    settings = {"model": "cnn_gru", "model_kwargs": TINY_MODEL, **change}
    with pytest.raises(ValueError, match=f"--resume needs the settings.*{named}") as err:
        train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(run_copy), epochs=2,
                          batch_size=4, verbose=0, resume=True, **settings))
    assert "\n" not in str(err.value)
    assert _snapshot(run_copy) == before  # config.json included


def test_resume_accepts_the_same_settings_spelled_differently(tiny_data, run_copy):
    """The tiny preset is the run's TINY_MODEL; clip_frames/image_size = the stored ones."""
    same = TrainConfig(data_dir=tiny_data["data"], output_dir=str(run_copy), model="cnn_gru",
                       preset="tiny", clip_frames=4, image_size=32, resume=True)
    check_resumable(same, RunPaths(str(run_copy)), tiny_data["info"])
    other = TrainConfig(data_dir=tiny_data["data"], output_dir=str(run_copy), model="cnn_gru",
                        preset="tiny", model_kwargs={"units": 4}, resume=True)
    with pytest.raises(ValueError, match="units"):
        check_resumable(other, RunPaths(str(run_copy)), tiny_data["info"])


def test_resume_of_a_finished_run_is_refused(tiny_data, run_copy):
    before = _snapshot(run_copy)
    with pytest.raises(FileExistsError, match="finished run.*--overwrite"):
        train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(run_copy),
                          model="cnn_gru", model_kwargs=TINY_MODEL, epochs=1, batch_size=4,
                          verbose=0, resume=True))
    assert _snapshot(run_copy) == before


# --- train: arguments refused up front -----------------------------------------------------

@pytest.mark.parametrize("field,value", [
    ("learning_rate", float("inf")), ("learning_rate", float("nan")), ("learning_rate", 0),
    ("warmup_epochs", -1.0), ("warmup_epochs", float("inf")), ("weight_decay", float("nan")),
    ("label_smoothing", 1.0), ("label_smoothing", float("nan")), ("clip_frames", 0),
    ("image_size", -32), ("steps_per_epoch", 0), ("epochs", 1.5), ("batch_size", True),
    ("model_kwargs", [1]),
])
def test_config_refuses_bad_numbers_as_the_cli_does(field, value):
    with pytest.raises(ValueError, match=field if field != "model_kwargs" else "kwargs"):
        TrainConfig(data_dir="d", output_dir="o", **{field: value})


def test_unknown_model_kwarg_is_one_line_and_exit_2_from_the_console_script(tmp_path):
    """Refused from the config, before any data is read (--data does not even exist)."""
    out = tmp_path / "run"
    proc = subprocess.run([KVID, "train", "--data", str(tmp_path / "no-data"), "--output",
                           str(out), "--model", "cnn_gru", "--model-args", '{"nope": 1}'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kvid train: error: Unknown keyword argument nope"), last
    assert "Valid keyword arguments: units, backbone" in last
    assert proc.stderr.count("kvid train: error:") == 1
    assert not out.exists()


def test_wrongly_typed_model_kwarg_is_a_value_error_before_the_folder_is_made(
        tiny_data, tmp_path):
    with pytest.raises(ValueError, match="Valid keyword arguments: width_multiplier, fc_units"):
        build_model("early_fusion", (4, 32, 32, 3), 3, fc_units=5)  # int is not iterable
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="could not be built"):
        train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(out),
                          model="early_fusion", model_kwargs={"fc_units": 5}, verbose=0))
    assert not out.exists()
    with pytest.raises(ValueError, match="input_shape cannot be a model keyword"):
        TrainConfig(data_dir="d", output_dir="o", model_kwargs={"input_shape": [4, 32, 32, 3]})


def test_every_builder_keyword_is_known_and_name_reaches_the_builder():
    for name, info in MODELS.items():
        keywords = builder_keywords(name)
        assert keywords and set(info.tiny_kwargs) <= set(keywords), name
        assert "input_shape" not in keywords and "num_classes" not in keywords
    model = build_model("cnn_gru", (4, 32, 32, 3), 3, name="mine", **TINY_MODEL)
    assert model.name == "mine"


def test_clip_frames_longer_than_the_stored_clips_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"clip_frames \(--clip-frames\) 8, frame_step 1 spans "
                                         r"8 frames, more than the stored clips of 4 frames"):
        train(TrainConfig(data_dir=tiny_data["data"], output_dir=str(out), clip_frames=8,
                          model_kwargs=TINY_MODEL, verbose=0))
    assert cli.main(["train", "--data", tiny_data["data"], "--output", str(out),
                     "--clip-frames", "5"]) == 2
    assert "spans 5 frames, more than the stored clips of 4" in capsys.readouterr().err
    # 3 frames 2 apart span 5 frames too
    assert cli.main(["train", "--data", tiny_data["data"], "--output", str(out),
                     "--clip-frames", "3", "--frame-step", "2"]) == 2
    assert "spans 5 frames, more than the stored clips of 4" in capsys.readouterr().err
    assert not out.exists()


# --- export --------------------------------------------------------------------------------

def test_export_over_an_existing_version_is_refused_and_changes_nothing(
        finished, base_copy, capsys):
    before = _snapshot(base_copy)
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_run(finished, str(base_copy / "1"))
    assert cli.main(["export", finished, str(base_copy / "1"), "--top-k", "3"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0], lines
    assert _snapshot(base_copy) == before


def test_export_overwrite_replaces_the_version_and_it_loads(finished, base_copy, capsys):
    assert read_preprocessing(str(base_copy / "1"))["top_k"] == 2
    assert cli.main(["export", finished, str(base_copy / "1"), "--top-k", "3",
                     "--overwrite"]) == 0
    assert "exported" in capsys.readouterr().out
    assert sorted(os.listdir(base_copy)) == ["1"]  # no temp folder, no replaced version
    assert read_preprocessing(str(base_copy / "1"))["top_k"] == 3
    clip = [tf.io.encode_jpeg(tf.zeros([32, 32, 3], tf.uint8)).numpy()] * 4
    out = tf.saved_model.load(str(base_copy / "1")).signatures["serving_default"](
        frames=tf.constant([clip]))
    assert out["classes"].shape == (1, 3)


def test_export_swaps_versions_by_renames_never_in_place(finished, base_copy, monkeypatch):
    """The SavedModel is written in a hidden `.1.tmp-*` sibling that the server's version
    scan ignores; version 1 stays the old whole model until a rename replaces it, and the
    served folder is never deleted file by file."""
    old = _snapshot(base_copy / "1")
    seen, states, removed = {}, [], []
    real_save, real_rmtree = tf.saved_model.save, shutil.rmtree
    real_rename, real_replace = os.rename, os.replace

    def save(obj, export_dir, *args, **kwargs):
        seen.update(target=os.path.relpath(export_dir, base_copy),
                    versions=versions_on_disk(str(base_copy)),
                    old_intact=_snapshot(base_copy / "1") == old)
        return real_save(obj, export_dir, *args, **kwargs)

    def watched(fn):
        def call(*args, **kwargs):
            result = fn(*args, **kwargs)
            v1 = base_copy / "1"
            states.append("absent" if not v1.exists() else
                          "whole" if _complete(v1) else "partial")
            return result
        return call

    def rmtree(path, *args, **kwargs):
        removed.append(os.path.abspath(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(tf.saved_model, "save", save)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(os, "rename", watched(real_rename))
    monkeypatch.setattr(os, "replace", watched(real_replace))
    export_run(finished, str(base_copy / "1"), top_k=3, overwrite=True)

    top = seen["target"].split(os.sep)[0]
    assert top.startswith(".1.tmp-") and not top.isdigit(), seen["target"]
    assert list(seen["versions"]) == [1] and seen["old_intact"]
    assert states and set(states) <= {"absent", "whole"}, states
    assert os.path.abspath(base_copy / "1") not in removed
    assert sorted(os.listdir(base_copy)) == ["1"]
    assert read_preprocessing(str(base_copy / "1"))["top_k"] == 3


def test_killed_export_leaves_the_served_version_whole(finished, base_copy):
    """`kvid export --overwrite` SIGKILLed while it writes: version 1 is still the old,
    whole model, and the half-written one lies only in a hidden folder servers ignore."""
    old = _snapshot(base_copy / "1")
    proc = subprocess.Popen([KVID, "export", finished, str(base_copy / "1"), "--top-k", "3",
                             "--overwrite"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    temp, deadline = None, time.time() + 300
    try:
        while temp is None and time.time() < deadline and proc.poll() is None:
            temp = next((n for n in os.listdir(base_copy) if n.startswith(".1.tmp-")), None)
            time.sleep(0.002)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert temp is not None, f"no hidden temp folder appeared while exporting: {err[-2000:]}"
    assert _snapshot(base_copy / "1") == old
    assert versions_on_disk(str(base_copy)) == {1: str(base_copy / "1")}
    assert [n for n in os.listdir(base_copy) if n.isdigit()] == ["1"]
    export_run(finished, str(base_copy / "1"), top_k=3, overwrite=True)  # a leftover temp
    assert read_preprocessing(str(base_copy / "1"))["top_k"] == 3        # does not block


def test_top_k_beyond_the_classes_is_refused(finished, tmp_path, capsys):
    target = tmp_path / "kvid" / "1"
    with pytest.raises(ValueError, match=r"at most the number of classes \(3\)"):
        export_run(finished, str(target), top_k=4)
    assert cli.main(["export", finished, str(target), "--top-k", "4"]) == 2
    assert "top_k=4" in capsys.readouterr().err
    assert not (tmp_path / "kvid").exists()
    export_run(finished, str(target))  # the default: 5, or every class when fewer
    assert read_preprocessing(str(target))["top_k"] == 3
