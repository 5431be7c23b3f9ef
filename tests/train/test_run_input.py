"""A run is self-contained: its input settings, label order, frame rate and a sample record
live in the run folder, so re-ingesting or moving the data never changes an old run."""

import filecmp
import json
import os
import shutil

import pytest

from kvid.ingest import IngestConfig, run_ingest
from kvid.train.evaluate import evaluate_run
from kvid.train.runs import export_run, load_run
from kvid.train.trainer import RunPaths, TrainConfig, train



@pytest.fixture(scope="module")
def own_run(tiny_data, tmp_path_factory):
    """A run on a copy of the tiny data, which the tests then re-ingest and move."""
    root = tmp_path_factory.mktemp("selfcontained")
    data = str(root / "data")
    shutil.copytree(tiny_data["data"], data)
    run = str(root / "run")
    train(TrainConfig(data_dir=data, output_dir=run, model="cnn_gru",
                      model_kwargs={"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0},
                      epochs=1, batch_size=4, verbose=0))
    return {"root": root, "data": data, "run": run, **{k: tiny_data[k] for k in ("videos",)},
            "info": json.load(open(os.path.join(data, "dataset.json")))}


def _scores(report):
    return {level: (report[level]["top1"], report[level]["confusion_matrix"])
            for level in ("clip", "video")}


def test_run_keeps_its_input_settings(own_run):
    paths = RunPaths(own_run["run"])
    saved = json.load(open(paths.input))
    assert saved["input"]["clip_frames"] == 4 and saved["input"]["image_size"] == [32, 32]
    assert saved["input"]["labels"] == own_run["info"]["labels"]
    assert saved["input"]["sampling"] == "dense" and saved["fps"] == own_run["info"]["fps"]
    run = load_run(own_run["run"])
    assert run.labels == own_run["info"]["labels"] and run.sample is not None


def test_reingested_and_moved_data_leave_the_run_as_it_was(own_run, tmp_path):
    run_dir, data = own_run["run"], own_run["data"]
    before = evaluate_run(run_dir, output_dir=str(tmp_path / "eval0"), num_clips=2)
    export_run(run_dir, str(tmp_path / "export0" / "1"))

    # The same videos again with the label order reversed: labels are matched by name, so
    # the scores are the same, not permuted.
    labels = own_run["info"]["labels"]
    run_ingest(own_run["videos"], data, IngestConfig(clip_frames=4, size=(32, 32)),
               labels=labels[::-1], overwrite=True)
    assert json.load(open(os.path.join(data, "dataset.json")))["labels"] == labels[::-1]
    reordered = evaluate_run(run_dir, output_dir=str(tmp_path / "eval1"), num_clips=2)
    assert _scores(reordered) == _scores(before)

    # Other stored clips (8 frames of 40x40): the run still feeds its model 4 x 32 x 32.
    run_ingest(own_run["videos"], data, IngestConfig(clip_frames=8, size=(40, 40)),
               overwrite=True)
    other = evaluate_run(run_dir, output_dir=str(tmp_path / "eval2"), num_clips=2)
    stored = json.load(open(os.path.join(data, "dataset.json")))
    assert stored["clip_frames"] == 8
    assert other["clip"]["count"] == stored["splits"]["test"]["num_clips"] < \
        before["clip"]["count"]
    export_run(run_dir, str(tmp_path / "export2" / "1"))

    # Moved away: export needs no data at all, evaluation takes the new place.
    moved = str(own_run["root"] / "moved")
    run_ingest(own_run["videos"], data, IngestConfig(clip_frames=4, size=(32, 32)),
               overwrite=True)
    os.rename(data, moved)
    export_run(run_dir, str(tmp_path / "export3" / "1"))
    after = evaluate_run(run_dir, data_dir=moved, output_dir=str(tmp_path / "eval3"),
                         num_clips=2)
    assert _scores(after) == _scores(before)

    first = tmp_path / "export0" / "1"
    for later in ("export2", "export3"):
        again = tmp_path / later / "1"
        for name in ("assets/labels.txt", "assets/kvid.json",
                     "assets.extra/tf_serving_warmup_requests"):
            assert filecmp.cmp(first / name, again / name, shallow=False), (later, name)
