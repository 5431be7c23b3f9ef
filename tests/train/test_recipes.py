"""kvid train --preset paper: the paper's recipe fills the flags left out, given flags win,
and every recipe is a valid TrainConfig for its model."""

import json
import os

import pytest

from kvid.cli import build_parser, main
from kvid.train.recipes import RECIPES, paper_settings
from kvid.train.trainer import TrainConfig


def _config(argv):
    from kvid.cli import _train_config

    return _train_config(build_parser("train").parse_args(["train", *argv]))


def test_the_recipe_fills_what_the_flags_leave_out():
    base = ["--data", "d", "--output", "o", "--model", "c3d"]
    default = _config(base)
    assert (default.optimizer, default.learning_rate, default.epochs, default.batch_size) == (
        TrainConfig.optimizer, TrainConfig.learning_rate, TrainConfig.epochs,
        TrainConfig.batch_size)
    paper = _config([*base, "--preset", "paper"])
    assert (paper.clip_frames, paper.image_size, paper.crop, paper.optimizer,
            paper.learning_rate, paper.batch_size, paper.epochs, paper.schedule) == (
        16, 112, "random", "sgd", 0.003, 30, 16, "step")
    mine = _config([*base, "--preset", "paper", "--lr", "0.01", "--epochs", "2"])
    assert (mine.learning_rate, mine.epochs, mine.batch_size) == (0.01, 2, 30)
    # TSN's flow stream has its own rate and 5 flow fields per segment
    tsn = _config(["--data", "d", "--output", "o", "--model", "tsn", "--preset", "paper",
                   "--modality", "flow"])
    assert (tsn.learning_rate, tsn.clip_frames, tsn.num_segments, tsn.sampling) == (
        0.005, 15, 3, "segments")
    assert _config(["--data", "d", "--output", "o", "--model", "tsn", "--preset",
                    "paper"]).learning_rate == 0.001
    slowfast = _config(["--data", "d", "--output", "o", "--model", "slowfast", "--preset",
                        "paper"])
    assert slowfast.learning_rate == pytest.approx(1.6 * slowfast.batch_size / 1024)
    assert paper_settings("cnn_gru") == {}  # no recipe: the builder's paper defaults only


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_every_recipe_is_a_valid_config_and_input(model):
    from kvid.data import InputConfig
    from kvid.models.registry import get_model_info

    for modality in {get_model_info(model).modality, *RECIPES[model].by_modality}:
        settings = paper_settings(model, modality)
        config = TrainConfig(data_dir="d", output_dir="o", model=model, preset="paper",
                             **settings)
        InputConfig(clip_frames=config.clip_frames, image_size=config.image_size,
                    sampling=config.sampling, num_segments=config.num_segments,
                    frame_step=config.frame_step, modality=modality,
                    flow_frames=config.flow_frames)
        assert RECIPES[model].source and RECIPES[model].ingest


def test_a_paper_run_trains_with_the_recipe(tiny_data, tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", "--data", tiny_data["data"], "--output", run, "--model", "c3d",
                 "--preset", "paper", "--model-args",
                 '{"width_multiplier": 0.0625, "fc_units": [16], "dropout": 0.0}',
                 "--clip-frames", "4", "--image-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--no-flip"]) == 0
    saved = json.load(open(os.path.join(run, "config.json")))
    assert (saved["optimizer"], saved["learning_rate"], saved["schedule"], saved["crop"]) == (
        "sgd", 0.003, "step", "random")
    assert (saved["clip_frames"], saved["epochs"]) == (4, 1)


def test_step_schedule_divides_at_the_recipes_fractions(capsys):
    from kvid.train.trainer import _schedule

    c3d = _config(["--data", "d", "--output", "o", "--model", "c3d", "--preset", "paper"])
    assert c3d.lr_steps == (0.25, 0.5, 0.75)  # /10 every 4 of 16 epochs
    schedule = _schedule(c3d, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 40, 41, 80, 81, 121, 159)]
    assert rates == pytest.approx([0.003, 0.003, 3e-4, 3e-4, 3e-5, 3e-6, 3e-6])
    given = _config(["--data", "d", "--output", "o", "--model", "c3d", "--preset", "paper",
                     "--lr-steps", "0.5"])
    assert given.lr_steps == (0.5,)
    assert json.loads(json.dumps(TrainConfig(data_dir="d", output_dir="o", model="c3d",
                                             lr_steps=[0.3, 0.6]).lr_steps)) == [0.3, 0.6]
    for bad in ("0.8,0.5", "0.5,1.5", "0.5,0.5"):
        assert main(["train", "--data", "d", "--output", "o", "--model", "c3d",
                     "--lr-steps", bad]) == 2
        err = capsys.readouterr().err
        assert "lr_steps must be increasing" in err and len(err.strip().splitlines()) == 1
