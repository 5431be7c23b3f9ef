"""Multigrid schedule (Wu et al. 2020): shapes, epochs, and a real model.fit run."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kvid.models import build_model
from kvid.models.multigrid import GridShape, MultigridSchedule, fit_multigrid, multigrid_dataset


def test_long_cycle_keeps_work_per_step():
    schedule = MultigridSchedule(batch_size=8, frames=16, size=224, epochs=8)
    stages = schedule.stages()
    assert [(s.start_epoch, s.end_epoch) for s in stages] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert [s.shape for s in stages] == [
        GridShape(64, 4, 158), GridShape(32, 8, 158), GridShape(16, 8, 224), GridShape(8, 16, 224)]
    assert [s.batch_size for s in schedule.short_cycle_shapes(stages[-1].shape)] == [32, 16, 8]


def test_final_epochs_at_base_shape_without_short_cycle():
    schedule = MultigridSchedule(batch_size=2, frames=8, size=32, epochs=6, final_epochs=2)
    last = schedule.stages()[-1]
    assert (last.start_epoch, last.end_epoch, last.short_cycle) == (4, 6, False)
    assert last.shape == GridShape(2, 8, 32)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 3}, "epochs per long cycle"), ({"final_epochs": 8}, "final_epochs"),
    ({"batch_size": 0}, "batch_size")])
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultigridSchedule(**{"batch_size": 2, "frames": 8, "size": 32, "epochs": 8, **kwargs})


def test_dataset_cycles_shapes():
    clips = tf.data.Dataset.from_tensor_slices(
        (np.zeros((8, 8, 16, 16, 3), "float32"), np.arange(8) % 2)).repeat()
    shapes = [GridShape(4, 4, 8), GridShape(2, 8, 16)]
    seen = [tuple(x.shape) for x, _ in multigrid_dataset(clips, shapes).take(4)]
    assert seen == [(4, 4, 8, 8, 3), (2, 8, 16, 16, 3)] * 2


@pytest.mark.slow  # one trace per shape (5 here)
def test_fit_multigrid_trains_a_3d_model():
    keras.utils.set_random_seed(0)
    model = build_model("r2plus1d", (None, None, None, 3), 2, depth=10, widths=(4, 4, 8, 8))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    clips = tf.data.Dataset.from_tensor_slices(
        (rng.uniform(size=(8, 8, 16, 16, 3)).astype("float32"), np.arange(8) % 2))
    schedule = MultigridSchedule(batch_size=2, frames=8, size=16, epochs=3, final_epochs=1,
                                 long_cycle=((0.5, 0.5), (1.0, 1.0)), short_cycle=(0.5, 1.0),
                                 size_multiple=4)
    epochs_begun = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epochs_begun.append(epoch))
    histories = fit_multigrid(model, clips, schedule, num_examples=8, verbose=0, callbacks=[record])
    assert len(histories) == 3
    assert epochs_begun == [0, 1, 2]  # one fit per stage, epochs continue across stages
    assert all(np.isfinite(h.history["loss"]).all() for h in histories)


def test_multigrid_lr_schedule_stages_and_warmup():
    from kvid.models.multigrid import multigrid_lr_schedule

    schedule = multigrid_lr_schedule(0.1, total_steps=300, warmup_steps=10)
    lrs = [float(schedule(step)) for step in (0, 5, 10, 99, 100, 199, 200, 299, 400)]
    np.testing.assert_allclose(lrs, [0.01, 0.055, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.001],
                               rtol=1e-5)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(restored(150)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="warmup_steps"):
        multigrid_lr_schedule(0.1, total_steps=10, warmup_steps=10)
