"""PipelineConfig: defaults, JSON file, KVID_* variables, and what reaches the Trainer."""

import json

import pytest

from kvid.demo import DemoConfig
from kvid.synth import MOTION
from kvid.tfx.config import PipelineConfig


def test_env_overrides_file_and_other_models_drop_the_demo_kwargs(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 3, "model": "c3d"}))
    config = PipelineConfig.load(str(path), environ={"KVID_EPOCHS": "5", "KVID_PRESET": "tiny",
                                                     "KVID_FLIP": "no", "KVID_CROP": "random"})
    assert (config.epochs, config.model, config.preset, config.flip, config.crop) == \
        (5, "c3d", "tiny", False, "random")
    assert config.model_kwargs == {}  # early fusion's kwargs are not c3d's
    demo = PipelineConfig.load(environ={})
    assert demo.model == DemoConfig.model == MOTION.model
    assert demo.model_kwargs == DemoConfig().model_kwargs == dict(MOTION.model_kwargs)
    given = PipelineConfig.load(environ={"KVID_MODEL": "cnn_lstm",
                                         "KVID_MODEL_KWARGS": '{"units": 16}'})
    assert given.model_kwargs == {"units": 16}


def test_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="KVID_EPOCHS='many' is not a valid int"):
        PipelineConfig.load(environ={"KVID_EPOCHS": "many"})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ValueError, match="Unknown pipeline config keys"):
        PipelineConfig.load(str(path), environ={})
    with pytest.raises(ValueError, match="crop must be one of"):
        PipelineConfig.load(environ={"KVID_CROP": "zoom"})


def test_the_trainer_stream_is_checked_with_the_data():
    flow = PipelineConfig.load(environ={"KVID_MODALITY": "flow", "KVID_FLOW": "dis",
                                        "KVID_MODEL": "cnn_lstm"})
    assert (flow.modality, flow.ingest_config().flow) == ("flow", "dis")
    with pytest.raises(ValueError, match="needs optical flow in the records"):
        PipelineConfig.load(environ={"KVID_MODALITY": "flow", "KVID_MODEL": "cnn_lstm"})
    with pytest.raises(ValueError, match="takes rgb only"):
        PipelineConfig.load(environ={"KVID_MODALITY": "flow", "KVID_FLOW": "dis",
                                     "KVID_MODEL": "r2plus1d_18"})
    two = PipelineConfig.load(environ={"KVID_MODALITY": "rgb+flow", "KVID_FLOW": "dis",
                                       "KVID_MODEL": "two_stream", "KVID_FLOW_FRAMES": "10"})
    assert (two.modality, two.flow_frames) == ("rgb+flow", 10)
    with pytest.raises(ValueError, match="is for modality rgb\\+flow"):
        PipelineConfig.load(environ={"KVID_FLOW_FRAMES": "10", "KVID_FLOW": "dis"})
    with pytest.raises(ValueError, match="rgb\\+flow is for the two-stream models"):
        PipelineConfig.load(environ={"KVID_MODALITY": "rgb+flow", "KVID_FLOW": "dis",
                                     "KVID_MODEL": "cnn_lstm"})


def test_the_trainer_schedule_reaches_the_trainer():
    from kvid.tfx.pipeline import create_pipeline

    config = PipelineConfig.load(environ={"KVID_SCHEDULE": "multigrid",
                                          "KVID_DATA_ROOT": "/videos", "KVID_NUM_CLASSES": "3"})
    trainer = next(c for c in create_pipeline(config, local=False).components
                   if c.id == "Trainer")
    custom = json.loads(trainer.exec_properties["custom_config"])
    assert (custom["schedule"], custom["seed"]) == ("multigrid", 0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        PipelineConfig.load(environ={"KVID_SCHEDULE": "sometimes"})


def test_the_paper_preset_fills_what_is_not_given():
    config = PipelineConfig.load(environ={"KVID_MODEL": "c3d", "KVID_PRESET": "paper",
                                          "KVID_EPOCHS": "3"})
    assert (config.clip_frames, config.image_size, config.optimizer, config.learning_rate,
            config.batch_size, config.crop, config.epochs) == (16, 112, "sgd", 0.003, 30,
                                                               "random", 3)


def test_step_drops_and_bidirectional_flow_reach_the_trainer():
    from kvid.tfx.pipeline import create_pipeline

    env = {"KVID_SCHEDULE": "step", "KVID_LR_STEPS": "0.4 0.8", "KVID_DATA_ROOT": "/videos",
           "KVID_NUM_CLASSES": "3", "KVID_FLOW": "dis", "KVID_MODALITY": "rgb+flow",
           "KVID_MODEL": "two_stream", "KVID_FLOW_FRAMES": "10",
           "KVID_FLOW_DIRECTION": "bidirectional"}
    with pytest.raises(ValueError, match="needs the backward flow"):
        PipelineConfig.load(environ=env)
    config = PipelineConfig.load(environ={**env, "KVID_FLOW_BACKWARD": "1"})
    assert config.lr_steps == (0.4, 0.8) and config.ingest_config().flow_backward
    trainer = next(c for c in create_pipeline(config, local=False).components
                   if c.id == "Trainer")
    custom = json.loads(trainer.exec_properties["custom_config"])
    assert (custom["lr_steps"], custom["flow_direction"]) == ([0.4, 0.8], "bidirectional")
    paper = PipelineConfig.load(environ={"KVID_MODEL": "c3d", "KVID_PRESET": "paper"})
    assert paper.lr_steps == (0.25, 0.5, 0.75)  # C3D's /10 every 4 of 16 epochs
