"""Temporal models do what they claim: on kvid synth data only motion tells the class."""

import pytest

from kvid.synth import SynthConfig, generate

pytestmark = pytest.mark.slow


def test_temporal_model_beats_single_frame_on_motion_task(tmp_path):
    from kvid.ingest import IngestConfig, run_ingest
    from kvid.train.evaluate import evaluate_run
    from kvid.train.trainer import TrainConfig, train

    videos, data = str(tmp_path / "videos"), str(tmp_path / "data")
    generate(videos, SynthConfig(num_classes=4, videos_per_class=32))
    info = run_ingest(videos, data, IngestConfig(fps=12.5, clip_frames=8, size=(64, 64)))
    scores = {}
    for name, kwargs, epochs in (
            ("early_fusion", {"width_multiplier": 0.25, "fc_units": (128,), "dropout": 0.3}, 20),
            ("single_frame", {"small_cnn_widths": (16, 32, 64, 128)}, 15)):
        out = str(tmp_path / name)
        train(TrainConfig(data_dir=data, output_dir=out, model=name, model_kwargs=kwargs,
                          epochs=epochs, learning_rate=1e-3, flip=False, verbose=0), info=info)
        scores[name] = evaluate_run(out, split="test")["clip"]["top1"]
    print("motion task test top-1:", scores)  # recorded in the issue notes
    assert scores["early_fusion"] >= 0.25 + 0.25, scores  # chance is 0.25
    assert scores["single_frame"] <= 0.25 + 0.2, scores
    assert scores["early_fusion"] - scores["single_frame"] >= 0.25, scores
