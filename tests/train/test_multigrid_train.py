"""kvid train --schedule multigrid: Wu et al.'s long cycle of clip shapes with batch sizes
scaled to keep the work per step, one model.fit per shape, on a model of variable T, H, W."""

import json
import os

import pytest

from kvid.cli import main


def test_multigrid_run_cycles_shapes_then_evaluates_and_exports(tiny_data, tmp_path, capsys):
    from kvid.data import InputConfig
    from kvid.train.runs import load_run
    from kvid.train.trainer import TrainConfig, multigrid_plan

    run = str(tmp_path / "run")
    train = ["train", "--data", tiny_data["data"], "--output", run, "--model", "r2plus1d_18",
             "--preset", "tiny", "--batch-size", "2", "--schedule", "multigrid",
             "--epochs", "4", "--no-flip"]
    for argv, message in [
        ([*train[:-2], "3", "--no-flip"], "give --epochs 4 or more"),
        ([*train[:6], "c3d", *train[7:]], "cannot take"),
        ([*train, "--steps-per-epoch", "3"], "leave out --steps-per-epoch"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
        assert not os.path.exists(os.path.join(run, "config.json"))
    assert main(train) == 0
    capsys.readouterr()

    # 4 stages of one epoch: 1/4 and 1/2 of the frames, smaller frames, larger batches
    num_train = tiny_data["info"]["splits"]["train"]["num_clips"]
    config = TrainConfig(data_dir=tiny_data["data"], output_dir=run, model="r2plus1d_18",
                         batch_size=2, schedule="multigrid", epochs=4)
    schedule, steps, _ = multigrid_plan(config, InputConfig(clip_frames=4, image_size=32),
                                        num_train)
    shapes = [(s.shape.batch_size, s.shape.frames, s.shape.size) for s in schedule.stages()]
    assert shapes == [(15, 1, 23), (8, 2, 23), (4, 2, 32), (2, 4, 32)]
    assert len(set(steps)) > 1  # larger batches: fewer steps in the coarse stages
    loaded = load_run(run, weights="last")
    assert int(loaded.model.optimizer.iterations.numpy()) == sum(steps)
    with open(os.path.join(run, "train_log.csv")) as f:
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1", "2", "3"]
    assert loaded.model.input_shape == (None, None, None, None, 3)

    # evaluated and exported at the base shape, as trained last
    assert main(["evaluate", run, "--clips", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["clip"]["count"] == tiny_data["info"]["splits"]["test"]["num_clips"]
    export = tmp_path / "export" / "1"
    assert main(["export", run, str(export)]) == 0
    meta = json.load(open(export / "assets" / "kvid.json"))
    assert (meta["clip_frames"], meta["image_size"]) == (4, [32, 32])


def test_multigrid_refuses_resume():
    from kvid.train.trainer import TrainConfig

    with pytest.raises(ValueError, match="cannot be resumed"):
        TrainConfig(data_dir="d", output_dir="o", schedule="multigrid", epochs=4, resume=True)
