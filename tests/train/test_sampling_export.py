"""The training's temporal sampling travels with the model: --frame-step and --num-segments
reach input.json, the export picks a record's frames as evaluation does, and kvid predict's
client-side positions are the TF sampler's."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.data.sampling import temporal_indices
from kvid.train.runs import export_run, load_run
from kvid.train.trainer import TrainConfig, train
from kvid.video.sampling import clip_positions


@pytest.mark.parametrize("sampling,frames,step,segments", [
    ("dense", 4, 1, 3), ("dense", 3, 3, 3), ("uniform", 5, 1, 3), ("segments", 6, 1, 3),
    ("segments", 4, 1, 2)])
@pytest.mark.parametrize("n", [2, 9, 16, 37])
def test_client_positions_are_the_evaluation_sampler(sampling, frames, step, segments, n):
    want = temporal_indices(tf.constant(n), frames, sampling=sampling, training=False,
                            num_segments=segments, frame_step=step).numpy().tolist()
    got = clip_positions(n, frames, sampling=sampling, frame_step=step,
                         num_segments=segments, max_clips=1)
    assert got == [want]


def test_frame_step_reaches_the_export(tiny_data, tmp_path):
    out = str(tmp_path / "run")
    train(TrainConfig(data_dir=tiny_data["data"], output_dir=out, model="cnn_gru",
                      model_kwargs={"units": 8, "small_cnn_widths": (8, 16), "dropout": 0.0},
                      clip_frames=2, frame_step=2, epochs=1, batch_size=4, verbose=0))
    saved = json.load(open(os.path.join(out, "input.json")))["input"]
    assert (saved["clip_frames"], saved["frame_step"], saved["sampling"]) == (2, 2, "dense")
    run = load_run(out)
    export = export_run(out, str(tmp_path / "export"))
    meta = json.load(open(os.path.join(export, "assets", "kvid.json")))
    assert (meta["sampling"], meta["frame_step"], meta["clip_frames"]) == ("dense", 2, 2)
    served = tf.saved_model.load(export)
    frames = list(schema.from_example(run.sample).frames)
    assert len(frames) == 4  # centred: 2 frames 2 apart from 4 start at frame 0
    by_record = served.signatures["serving_examples"](examples=tf.constant([run.sample]))
    by_frames = served.signatures["serving_default"](
        frames=tf.constant([[frames[0], frames[2]]]))
    np.testing.assert_allclose(by_record["probabilities"].numpy(),
                               by_frames["probabilities"].numpy(), atol=1e-6)
    shifted = served.signatures["serving_default"](frames=tf.constant([frames[1:3]]))
    assert not np.allclose(shifted["probabilities"].numpy(), by_frames["probabilities"].numpy(),
                           atol=1e-6)
