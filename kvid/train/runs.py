"""A training run folder as a unit: load its model and settings, export it, evaluate it."""

from __future__ import annotations

import dataclasses
import logging
import os

import keras

from kvid import schema
from kvid.data import InputConfig
from kvid.train.export import INPUTS, Member, check_export_dir, export_members, \
    export_saved_model
from kvid.train.trainer import (RunPaths, TrainConfig, first_record, flow_settings,
                                input_config, load_run_config, load_run_input)


@dataclasses.dataclass
class Run:
    config: TrainConfig
    input: InputConfig  # what the model was trained on (RUN/input.json), labels included
    fps: float | None  # frame rate of the training clips
    model: keras.Model
    sample: bytes | None = None  # one training record (the export's warm-up request)
    flow: dict | None = None  # how the training data's flow was made (trainer.flow_settings)

    @property
    def labels(self) -> list[str]:
        return list(self.input.labels)

    @property
    def clip_frames(self) -> int:
        return self.input.clip_frames

    @property
    def image_size(self) -> tuple[int, int]:
        return self.input.image_size

    @property
    def normalization(self) -> str:
        return self.input.normalize


def load_run(run_dir: str, weights: str = "best") -> Run:
    """Loads ``best.keras`` (or ``last.keras``) with the run's own settings: nothing is read
    from the data folder, so re-ingesting or moving the data leaves the run as it was."""
    import kvid.models  # noqa: F401  (registers the zoo's custom layers for loading)
    import kvid.train.optim  # noqa: F401  (and the fine-tuning optimizers)

    paths = RunPaths(run_dir)
    if not os.path.exists(paths.config):
        raise FileNotFoundError(f"{run_dir} is not a kvid run folder (no config.json)")
    config = load_run_config(run_dir)
    model_path = paths.model_file(weights)
    if os.path.exists(paths.input):
        cfg, extras, sample = load_run_input(paths)
    else:  # a run from before input.json: its settings as its data folder gives them now
        from kvid.data import load_dataset_info

        logging.getLogger(__name__).warning(
            "%s has no input.json; its input settings come from %s/dataset.json", run_dir,
            config.data_dir)
        info = load_dataset_info(config.data_dir)
        cfg, sample = input_config(config, info), None
        extras = {"fps": info.get("fps"), "flow": flow_settings(info)}
    return Run(config, cfg, extras["fps"], keras.models.load_model(model_path), sample,
               extras["flow"])


def _export_converted(path: str, export_dir: str, *, model_name: str, top_k: int | None,
                      overwrite: bool) -> str:
    import kvid.models  # noqa: F401  (registers the zoo's custom layers for loading)
    from kvid.pretrained import read_metadata

    meta = read_metadata(path)
    if meta is None:
        raise ValueError(f"{path} is neither a run folder nor a .keras file written by "
                         "`kvid convert` (which carries the labels and preprocessing)")
    model = keras.models.load_model(path, compile=False)
    return export_saved_model(
        model, export_dir, labels=meta["labels"], clip_frames=meta["clip_frames"],
        image_size=tuple(meta["image_size"]), normalization=meta["normalization"],
        top_k=top_k, model_name=model_name, overwrite=overwrite,
        extra_metadata={"model": meta["model"], "fps": meta["fps"], "source": meta["source"]})


def first_clip(data_dir: str, split: str = "test") -> schema.Clip | None:
    """The first stored clip of a split, parsed with the schema (None if the split is empty).

    Finds the files as tf.data does, so kvid shards and TFX Examples artifacts both work.
    """
    try:
        record = first_record(data_dir, split)
    except FileNotFoundError:
        return None
    return None if record is None else schema.from_example(record)


def export_run(run_dir: str, export_dir: str, *, weights: str = "best",
               model_name: str = "kvid", top_k: int | None = None,
               overwrite: bool = False, clip_aggregation: str | None = None) -> str:
    """Exports a run's model (see :func:`export_saved_model`): an existing non-empty
    ``export_dir`` is refused unless ``overwrite``, before the model is loaded.

    ``run_dir`` may also be a ``.keras`` file written by ``kvid convert``: its labels (the
    source's classes) and preprocessing come from the file itself; or a fused folder written
    by ``kvid fuse``: one SavedModel taking each member's inputs (``weights`` and
    ``clip_aggregation`` are then the members' own).
    """
    from kvid.train.fuse import is_fusion

    check_export_dir(export_dir, overwrite)
    if os.path.isfile(run_dir):
        return _export_converted(run_dir, export_dir, model_name=model_name, top_k=top_k,
                                 overwrite=overwrite)
    if is_fusion(run_dir):
        if clip_aggregation or weights != "best":
            raise ValueError("a fused run's members keep the checkpoint and clip aggregation "
                             "they were fused with; --weights/--clip-aggregation are for a "
                             "single run")
        return _export_fusion(run_dir, export_dir, model_name=model_name, top_k=top_k,
                              overwrite=overwrite)
    run = load_run(run_dir, weights)
    return export_members([member_of(run, clip_aggregation=clip_aggregation)], export_dir,
                          labels=run.labels, top_k=top_k, model_name=model_name,
                          warmup=_warmup(run), overwrite=overwrite)


def export_run_tflite(run_dir: str, output_dir: str, *, quantization: str,
                      weights: str = "best", calibration_clips: int = 100,
                      calibration_data: str | None = None, overwrite: bool = False,
                      clip_aggregation: str | None = None) -> str:
    """A run's model as a TF Lite folder (:func:`kvid.train.tflite.export_tflite`); int8
    calibrates on ``calibration_clips`` clips of the training split of ``calibration_data``
    (default: the run's own data folder)."""
    from kvid import validate
    from kvid.train.fuse import is_fusion
    from kvid.train.tflite import calibration_clips as clips_of, export_tflite

    validate.positive("calibration_clips", calibration_clips, integer=True)
    check_export_dir(output_dir, overwrite)
    if os.path.isfile(run_dir) or is_fusion(run_dir):
        raise ValueError(f"{run_dir}: TF Lite export takes a run folder of `kvid train` (a "
                         "fused or converted model: export the SavedModel instead)")
    run = load_run(run_dir, weights)
    member = member_of(run, clip_aggregation=clip_aggregation)
    calibration = None
    if quantization == "int8":
        data = calibration_data or run.config.data_dir
        calibration = clips_of(member, data, count=calibration_clips).as_numpy_iterator()
    return export_tflite(member, output_dir, labels=run.labels, quantization=quantization,
                         calibration=calibration, overwrite=overwrite)


def member_of(run: Run, *, weight: float = 1.0, label_order=None,
              clip_aggregation: str | None = None) -> Member:
    """A run's model as an export member, with the input it was trained on."""
    return Member(run.model, run.input.evaluation(),
                  clip_aggregation or run.config.clip_aggregation, weight, label_order,
                  metadata={"model": run.config.model, "fps": run.fps, "flow": run.flow})


def _warmup(*runs: Run) -> dict[str, list[bytes]]:
    """A real training clip per input the runs read (a realistic warm-up request)."""
    out = {}
    for run in runs:
        if run.sample is not None:
            record = schema.from_example(run.sample)
            for s in run.input.streams:
                frames = record.flow if s == "flow" else record.frames
                if frames:
                    out.setdefault(INPUTS[s], list(frames))
    return out


def _export_fusion(fused_dir: str, export_dir: str, *, model_name: str, top_k: int | None,
                   overwrite: bool) -> str:
    from kvid.train.fuse import load_fusion

    fusion = load_fusion(fused_dir)
    members = [member_of(run, weight=w, label_order=fusion.label_order(run))
               for run, w in zip(fusion.members, fusion.weights)]
    return export_members(members, export_dir, labels=fusion.labels, top_k=top_k,
                          model_name=model_name, warmup=_warmup(*fusion.members),
                          overwrite=overwrite,
                          extra_metadata={"fusion": {"weights": fusion.weights,
                                                     "preset": fusion.preset}})

