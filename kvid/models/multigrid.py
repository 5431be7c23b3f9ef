"""Multigrid training: cycle the clip shape (frames x size) and the batch size together.

Wu, Girshick, He, Feichtenhofer & Krähenbühl, "A Multigrid Method for Efficiently Training
Video Models", CVPR 2020 (https://arxiv.org/abs/1912.00998).

Training on coarser clips with proportionally larger batches keeps the work per step the
same while taking more steps per epoch early on; the model sees the base shape again at
the end of every long cycle. Two cycles:

- long cycle (per epochs): ``(frames, size)`` scaled by ``(1/4, 1/sqrt 2)``, ``(1/2, 1/sqrt 2)``,
  ``(1/2, 1)``, ``(1, 1)`` with batch sizes x8, x4, x2, x1;
- short cycle (per step): ``size`` scaled by ``1/2``, ``1/sqrt 2``, ``1`` with batch sizes x4,
  x2, x1.

Use it with ``model.fit`` through :func:`fit_multigrid` (one ``fit`` call per long-cycle
stage, so any callbacks and learning-rate schedules keyed on the epoch keep working), or
build the per-stage datasets with :func:`multigrid_dataset` yourself. The paper aligns one
long cycle with each stage of a step learning-rate schedule: :func:`multigrid_lr_schedule`
is that schedule (``num_stages`` equal stages, x``decay`` each, after a linear warm-up); use
``MultigridSchedule(num_long_cycles=num_stages)`` with it. The model must take
variable T, H, W: build a fully convolutional zoo model with ``input_shape=(None, None,
None, 3)`` (``i3d``, ``r2plus1d``, ``x3d``, ``t3d``, ``slowfast``, ``conv3d_attention``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import tensorflow as tf

from keras import ops

from kvid.models.layers import check_positive_int

LONG_CYCLE = ((0.25, 2**-0.5), (0.5, 2**-0.5), (0.5, 1.0), (1.0, 1.0))
SHORT_CYCLE = (0.5, 2**-0.5, 1.0)


@dataclass(frozen=True)
class GridShape:
    """One training shape: clips of ``frames`` x ``size`` x ``size`` in batches of ``batch_size``."""

    batch_size: int
    frames: int
    size: int


@dataclass(frozen=True)
class Stage:
    """Epochs ``[start_epoch, end_epoch)`` trained at the long-cycle ``shape``."""

    start_epoch: int
    end_epoch: int
    shape: GridShape
    short_cycle: bool = True


@dataclass(frozen=True)
class MultigridSchedule:
    """The multigrid schedule for a base shape ``(batch_size, frames, size)`` over ``epochs``.

    Attributes:
        batch_size, frames, size: the base (finest) shape.
        epochs: total epochs.
        num_long_cycles: long cycles over the training (the paper aligns one with each
            learning-rate stage).
        final_epochs: epochs at the base shape after the last cycle (no short cycle either),
            as the paper's last fine-tuning phase.
        long_cycle: ``(frame factor, size factor)`` per long-cycle stage.
        short_cycle: size factors of the short cycle (empty: no short cycle).
        size_multiple: sizes are rounded to a multiple of this (keeps stride-32 nets exact).
    """

    batch_size: int
    frames: int
    size: int
    epochs: int
    num_long_cycles: int = 1
    final_epochs: int = 0
    long_cycle: tuple = LONG_CYCLE
    short_cycle: tuple = SHORT_CYCLE
    size_multiple: int = 1

    def __post_init__(self):
        for name in ("batch_size", "frames", "size", "epochs", "num_long_cycles", "size_multiple"):
            check_positive_int(getattr(self, name), name)
        if not 0 <= self.final_epochs < self.epochs:
            raise ValueError(f"`final_epochs` must be in [0, epochs). "
                             f"Received: final_epochs={self.final_epochs}")
        cycle_epochs = self.epochs - self.final_epochs
        if cycle_epochs < self.num_long_cycles * len(self.long_cycle):
            raise ValueError(f"Needs at least {len(self.long_cycle)} epochs per long cycle. Received: "
                             f"epochs={self.epochs}, final_epochs={self.final_epochs}, "
                             f"num_long_cycles={self.num_long_cycles}")

    def shape(self, frame_factor: float, size_factor: float) -> GridShape:
        """The shape at the given factors, batch size scaled to keep ``B * T * S^2`` constant."""
        frames = max(1, round(self.frames * frame_factor))
        size = self._round_size(self.size * size_factor)
        work = self.batch_size * self.frames * self.size**2
        return GridShape(max(1, round(work / (frames * size**2))), frames, size)

    def _round_size(self, size: float) -> int:
        return max(self.size_multiple, round(size / self.size_multiple) * self.size_multiple)

    def stages(self) -> list[Stage]:
        """Long-cycle stages with their epoch ranges, then the final base-shape stage."""
        stages, cycle_epochs = [], self.epochs - self.final_epochs
        boundaries = [round(i * cycle_epochs / (self.num_long_cycles * len(self.long_cycle)))
                      for i in range(self.num_long_cycles * len(self.long_cycle) + 1)]
        for i, (start, end) in enumerate(zip(boundaries, boundaries[1:])):
            stages.append(Stage(start, end, self.shape(*self.long_cycle[i % len(self.long_cycle)])))
        if self.final_epochs:
            base = GridShape(self.batch_size, self.frames, self.size)
            stages.append(Stage(cycle_epochs, self.epochs, base, short_cycle=False))
        return stages

    def short_cycle_shapes(self, shape: GridShape) -> list[GridShape]:
        """The short cycle around a long-cycle shape (its own shape last)."""
        result = []
        for factor in self.short_cycle:
            size = self._round_size(shape.size * factor)
            batch = max(1, round(shape.batch_size * shape.size**2 / size**2))
            result.append(GridShape(batch, shape.frames, size))
        return result

    def steps_per_epoch(self, shapes: list[GridShape], num_examples: int) -> int:
        """Steps that see about ``num_examples`` clips when cycling through ``shapes``."""
        mean_batch = sum(s.batch_size for s in shapes) / len(shapes)
        return max(1, math.ceil(num_examples / mean_batch))


def resample_clip(video, frames: int, size: int):
    """Evenly spaced ``frames`` of ``video`` [T, H, W, C], resized to ``size`` x ``size``."""
    length = tf.shape(video)[0]
    index = tf.cast(tf.round(tf.linspace(0.0, tf.cast(length - 1, tf.float32), frames)), tf.int32)
    video = tf.gather(video, index)
    return tf.image.resize(video, (size, size), method="bilinear")


def multigrid_dataset(clips: tf.data.Dataset, shapes: list[GridShape]) -> tf.data.Dataset:
    """Batches of ``clips`` cycling through ``shapes`` step by step.

    Args:
        clips: an unbatched, repeated dataset of ``(video [T, H, W, C], label)`` at the base
            shape (single-input models).
        shapes: the shapes to cycle through (one shape: a plain batched dataset).
    """
    def batches(shape):
        return clips.map(lambda video, label: (resample_clip(video, shape.frames, shape.size), label),
                         num_parallel_calls=tf.data.AUTOTUNE).batch(shape.batch_size, drop_remainder=True)

    if len(shapes) == 1:
        return batches(shapes[0]).prefetch(tf.data.AUTOTUNE)
    choice = tf.data.Dataset.range(len(shapes)).repeat()
    return tf.data.Dataset.choose_from_datasets([batches(s) for s in shapes], choice).prefetch(
        tf.data.AUTOTUNE)


def fit_multigrid(model: keras.Model, clips: tf.data.Dataset, schedule: MultigridSchedule, *,
                  num_examples: int, validation_data=None, callbacks=None, verbose="auto",
                  **fit_kwargs) -> list[keras.callbacks.History]:
    """Trains a compiled ``model`` with ``model.fit`` under the multigrid ``schedule``.

    Args:
        model: compiled, taking variable T, H, W (``input_shape=(None, None, None, 3)``).
        clips: unbatched ``(video, label)`` at the base shape; repeated here.
        schedule: the :class:`MultigridSchedule`.
        num_examples: clips per epoch (sets ``steps_per_epoch`` for every stage).
        validation_data, callbacks, verbose, fit_kwargs: passed to every ``model.fit``.

    Returns:
        One ``History`` per stage.
    """
    check_positive_int(num_examples, "num_examples")
    histories = []
    for stage in schedule.stages():
        shapes = [stage.shape]
        if stage.short_cycle and schedule.short_cycle:
            shapes = schedule.short_cycle_shapes(stage.shape)
        histories.append(model.fit(
            multigrid_dataset(clips.repeat(), shapes), initial_epoch=stage.start_epoch,
            epochs=stage.end_epoch, steps_per_epoch=schedule.steps_per_epoch(shapes, num_examples),
            validation_data=validation_data, callbacks=callbacks, verbose=verbose, **fit_kwargs))
    return histories


@keras.saving.register_keras_serializable(package="kvid")
class MultigridLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Step schedule of ``num_stages`` equal stages (x``decay`` each) after a linear warm-up.

    The warm-up goes from ``base_lr / 10`` to ``base_lr`` over ``warmup_steps``. Wu et al.
    run one multigrid long cycle per stage.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 num_stages: int = 3, decay: float = 0.1):
        check_positive_int(total_steps, "total_steps")
        check_positive_int(num_stages, "num_stages")
        if not 0 <= warmup_steps < total_steps or not base_lr > 0 or not 0 < decay <= 1:
            raise ValueError(
                "Needs base_lr > 0, 0 < decay <= 1 and 0 <= warmup_steps < total_steps. Received: "
                f"base_lr={base_lr}, decay={decay}, warmup_steps={warmup_steps}, "
                f"total_steps={total_steps}")
        self.base_lr, self.decay = float(base_lr), float(decay)
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.num_stages = int(num_stages)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        stage = ops.minimum(ops.floor(step * self.num_stages / self.total_steps),
                            self.num_stages - 1)
        lr = self.base_lr * ops.power(self.decay, stage)
        if not self.warmup_steps:
            return lr
        warm = self.base_lr * (0.1 + 0.9 * step / self.warmup_steps)
        return ops.where(step < self.warmup_steps, warm, lr)

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "num_stages": self.num_stages,
                "decay": self.decay}


def multigrid_lr_schedule(base_lr: float, *, total_steps: int, warmup_steps: int = 0,
                          num_stages: int = 3, decay: float = 0.1) -> MultigridLearningRate:
    """The learning-rate schedule multigrid training aligns its long cycles with (Wu et al. 2020)."""
    return MultigridLearningRate(base_lr, total_steps, warmup_steps, num_stages, decay)
