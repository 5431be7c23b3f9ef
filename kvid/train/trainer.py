"""The one training loop glue behind ``kvid train``, notebooks and the TFX Trainer's run_fn.

``train(TrainConfig(...))`` builds the datasets with :func:`kvid.data.make_dataset`, the
model from the registry, compiles it with the chosen optimizer and schedule, and fits with
checkpoints that survive a kill (``BackupAndRestore``: a resumed run continues from the
last finished epoch), best-model keeping, a CSV log, TensorBoard and Keras progress bars.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from typing import Any, Sequence

import keras
import tensorflow as tf

from kvid.video.sampling import clip_span

OPTIMIZERS = ("sgd", "adam", "adamw")
XLA = {"auto": "auto", "on": True, "off": False}  # --xla -> compile(jit_compile=)
CLIP_AGGREGATIONS = ("mean", "last")
SCHEDULES = ("constant", "cosine", "step", "multigrid")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as ``config.json`` beside the run.

    ``output_dir`` must not hold a run already: ``resume=True`` continues an interrupted one
    (same model and input), ``overwrite=True`` replaces it.
    """

    data_dir: str
    output_dir: str
    model: str = "cnn_gru"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    preset: str | None = None  # "paper" or "tiny" builder kwargs (registry); model_kwargs win
    epochs: int = 10
    batch_size: int = 8
    clip_frames: int | None = None  # default: the stored clip length (dataset.json)
    image_size: int | None = None  # default: the stored frame size
    sampling: str = "dense"
    frame_step: int = 1  # dense: frames between sampled frames (the clip spans (T-1)*step+1)
    num_segments: int = 3  # segments (TSN): K; clip_frames // K consecutive frames from each
    # per-step models (LRCN): clip logits for evaluation and export, the mean or the last step
    clip_aggregation: str = "mean"
    flip: bool = True  # random horizontal flips; off when mirroring changes the class
    crop: str = "random_resized"  # training crop, see kvid.data.AugmentConfig
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    # schedule "step": the fractions of training at which the rate is divided by 10
    lr_steps: tuple[float, ...] = (0.5, 0.75)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    mixed_precision: bool = False
    # XLA: "auto" (Keras's choice: on with a GPU, off on CPU), "on" or "off"
    xla: str = "auto"
    # SOURCE:PATH (a published checkpoint of `model`, e.g. torchvision:r2plus1d_18.pth), or
    # a kvid .keras/.weights.h5 file; the backbone starts from it, the head is new.
    pretrained: str | None = None
    freeze_backbone: bool = False  # train only the new head (with pretrained)
    # with pretrained: the backbone trains at learning_rate x this, the new head at learning_rate
    backbone_lr_scale: float = 1.0
    # "rgb", "flow" (the stored 8-bit flow: ingest --flow), "rgb+flow" (two-stream
    # models) or "rgbdiff" (TSN's RGB difference, any RGB model); None: the model's own
    modality: str | None = None
    # rgb+flow: flow images per clip when not clip_frames, centred on the RGB clip
    # (Simonyan & Zisserman: 1 RGB frame, 10 flow)
    flow_frames: int | None = None
    # "forward", or "bidirectional": each flow stack's first half is backward flow
    # (Simonyan & Zisserman; ingest --flow-backward)
    flow_direction: str = "forward"
    resume: bool = False
    overwrite: bool = False  # replace a run already in output_dir (else FileExistsError)
    seed: int = 0
    train_split: str = "train"
    val_split: str | None = "val"
    steps_per_epoch: int | None = None
    verbose: int | str = "auto"

    def __post_init__(self):
        from kvid import validate
        from kvid.models.registry import check_kwargs, preset_kwargs

        if self.xla not in XLA:
            raise ValueError(f"xla must be one of {tuple(XLA)}. Received: xla={self.xla!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}. "
                             f"Received: optimizer={self.optimizer!r}")
        if self.preset is not None:
            preset_kwargs(self.model, self.preset)  # unknown model or preset: fail now
        check_kwargs(self.model, self.model_kwargs)  # unknown builder arguments: fail now
        from kvid.data.augment import AugmentConfig

        AugmentConfig(crop=self.crop)  # an unknown crop: the same clear error, now
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}. "
                             f"Received: schedule={self.schedule!r}")
        for name in ("epochs", "batch_size", "frame_step", "num_segments"):
            validate.positive(name, getattr(self, name), integer=True)
        from kvid.data.pipeline import FLOW_DIRECTIONS, MODALITIES

        if self.modality is not None and self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}. "
                             f"Received: modality={self.modality!r}")
        if self.flow_direction not in FLOW_DIRECTIONS:
            raise ValueError(f"flow_direction must be one of {FLOW_DIRECTIONS}. "
                             f"Received: flow_direction={self.flow_direction!r}")
        if self.clip_aggregation not in CLIP_AGGREGATIONS:
            raise ValueError(f"clip_aggregation must be one of {CLIP_AGGREGATIONS}. "
                             f"Received: clip_aggregation={self.clip_aggregation!r}")
        for name in ("clip_frames", "image_size", "steps_per_epoch", "flow_frames"):
            validate.positive(name, getattr(self, name), integer=True, optional=True)
        validate.positive("learning_rate", self.learning_rate)
        steps = tuple(validate.positive("lr_steps", f) for f in self.lr_steps)
        if not steps or max(steps) >= 1 or list(steps) != sorted(set(steps)):
            raise ValueError("lr_steps must be increasing fractions of training in (0, 1). "
                             f"Received: lr_steps={self.lr_steps!r}")
        object.__setattr__(self, "lr_steps", steps)
        validate.non_negative("warmup_epochs", self.warmup_epochs)
        validate.non_negative("weight_decay", self.weight_decay)
        if validate.non_negative("label_smoothing", self.label_smoothing) >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1). "
                             f"Received: label_smoothing={self.label_smoothing!r}")
        validate.number("seed", self.seed, integer=True)
        if self.freeze_backbone and not self.pretrained:
            raise ValueError("freeze_backbone (--freeze-backbone) needs pretrained weights "
                             "(--pretrained): a frozen random backbone learns nothing")
        validate.positive("backbone_lr_scale", self.backbone_lr_scale)
        if self.backbone_lr_scale != 1.0 and not self.pretrained:
            raise ValueError("backbone_lr_scale (--backbone-lr-scale) needs pretrained weights "
                             "(--pretrained): without them there is no backbone to spare")
        if self.backbone_lr_scale != 1.0 and self.freeze_backbone:
            raise ValueError("freeze_backbone (--freeze-backbone) trains no backbone at all and "
                             "backbone_lr_scale (--backbone-lr-scale) trains it slower: give "
                             "one of them")
        if self.pretrained:
            from kvid.pretrained import parse_pretrained
            from kvid.pretrained.checkpoint import checkpoint_exists

            importer, path = parse_pretrained(self.pretrained, self.model)
            if not checkpoint_exists(path):
                raise FileNotFoundError(f"pretrained weights {path} do not exist")
            if importer is not None and importer.name != self.model:
                raise ValueError(f"--pretrained {importer.spec} converts into model "
                                 f"{importer.name!r}, not {self.model!r}")
        if self.schedule == "multigrid":
            if self.epochs < 4:
                raise ValueError("schedule 'multigrid' cycles 4 clip shapes, an epoch each at "
                                 f"least: give --epochs 4 or more. Received: epochs={self.epochs}")
            if self.resume:
                raise ValueError("a multigrid run cannot be resumed (its epochs run as one "
                                 "model.fit per clip shape); start it again with --overwrite")
            if self.steps_per_epoch:
                raise ValueError("schedule 'multigrid' sets each stage's steps from its batch "
                                 "size; leave out --steps-per-epoch")
        if self.resume and self.overwrite:
            raise ValueError("resume (--resume) continues the run in output_dir and overwrite "
                             "(--overwrite) replaces it: give one of them. "
                             f"Received: resume=True, overwrite=True")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def builder_kwargs(self) -> dict:
        """The builder kwargs the model is built with: the preset's, then model_kwargs."""
        from kvid.models.registry import preset_kwargs

        preset = preset_kwargs(self.model, self.preset) if self.preset else {}
        return {**preset, **self.model_kwargs}


@dataclasses.dataclass
class TrainResult:
    model: keras.Model
    history: dict
    output_dir: str
    labels: list[str]
    clip_frames: int
    image_size: tuple[int, int]
    normalization: str
    initial_epoch: int
    fps: float | None = None  # frame rate of the training clips (dataset.json), for export
    input: Any = None  # the run's InputConfig (input.json)
    flow: dict | None = None  # how the data's flow was made (flow_settings), for export


class RunPaths:
    """Where a run writes its files (one place, so CLI, evaluate and TFX agree).

    A folder holds a run when any of :attr:`markers` exists there: ``config.json`` is
    written first, then logs and checkpoints. A run is unfinished while ``backup/`` holds
    a checkpoint (``BackupAndRestore`` deletes it once the last epoch is done).
    """

    def __init__(self, output_dir: str):
        self.root = output_dir
        self.backup = os.path.join(output_dir, "backup")
        self.best = os.path.join(output_dir, "best.keras")
        self.last = os.path.join(output_dir, "last.keras")
        self.csv_log = os.path.join(output_dir, "train_log.csv")
        self.tensorboard = os.path.join(output_dir, "tensorboard")
        self.config = os.path.join(output_dir, "config.json")
        self.curves = os.path.join(output_dir, "training_curves.png")
        self.input = os.path.join(output_dir, "input.json")  # the resolved input settings
        self.sample = os.path.join(output_dir, "sample.tfrecord")  # one training record

    @property
    def markers(self) -> tuple[str, ...]:
        return (self.config, self.best, self.last, self.csv_log, self.backup)

    def model_file(self, weights: str = "best") -> str:
        """``best.keras`` or ``last.keras`` (``weights``), the other if that one is missing;
        FileNotFoundError if the run has neither yet."""
        first, other = (self.best, self.last) if weights == "best" else (self.last, self.best)
        for path in (first, other):
            if os.path.exists(path):
                return path
        raise FileNotFoundError(f"{self.root} has no trained model yet (best.keras/last.keras)")

    def evaluation(self, split: str) -> str:
        """``kvid evaluate``'s default output folder for ``split``."""
        return os.path.join(self.root, f"eval-{split}")

    def found(self) -> list[str]:
        """Names of the run files in the folder (empty: no run there)."""
        return [os.path.basename(p) for p in self.markers
                if os.path.isfile(p) or (os.path.isdir(p) and os.listdir(p))]

    def has_backup(self) -> bool:
        return os.path.isdir(self.backup) and bool(os.listdir(self.backup))

    def owned(self) -> list[str]:
        """Every path a run and its default evaluations wrote (what --overwrite removes)."""
        own = [*self.markers, self.tensorboard, self.curves, self.input, self.sample]
        if os.path.isdir(self.root):
            own += [os.path.join(self.root, n) for n in sorted(os.listdir(self.root))
                    if n.startswith("eval-")
                    and os.path.isfile(os.path.join(self.root, n, "report.json"))]
        return [p for p in own if os.path.lexists(p)]

    def clear(self) -> None:
        """Removes what an earlier run wrote here, nothing else."""
        for path in self.owned():
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def check_output(config: TrainConfig, paths: RunPaths) -> bool:
    """Refuses to train over an existing run unless resuming or overwriting, before anything
    in the folder is touched. Returns whether training continues from ``backup/``."""
    if os.path.exists(paths.root) and not os.path.isdir(paths.root):
        raise NotADirectoryError(f"output {paths.root} is a file, not a run folder")
    found, has_backup = paths.found(), paths.has_backup()
    if config.resume:
        if os.path.exists(paths.last) and not has_backup:
            raise FileExistsError(
                f"{paths.root} holds a finished run: nothing to resume (no backup/); pass "
                "--overwrite to train it again or choose another --output.")
        return has_backup
    if found and not config.overwrite:
        if has_backup:
            raise FileExistsError(
                f"{paths.root} holds an unfinished run; pass --resume to continue it, "
                "--overwrite to start it again, or choose another --output.")
        raise FileExistsError(
            f"{paths.root} already holds a run ({', '.join(found)}); pass --overwrite to "
            "replace it or choose another --output (--resume continues an interrupted run).")
    return False


# What the backup checkpoint's weights depend on: a resumed run must build the same model.
_RESUME_KEYS = {"model": "model", "builder_kwargs": "model kwargs (--preset + --model-args)",
                "clip_frames": "clip_frames", "image_size": "image_size"}


def _checkpoint_settings(config: TrainConfig, info: dict) -> dict:
    stored = info.get("image_size") or [None, None]
    values = {"model": config.model, "builder_kwargs": config.builder_kwargs(),
              "clip_frames": config.clip_frames or info.get("clip_frames"),
              "image_size": config.image_size or stored[0]}
    # Through JSON, as config.json holds them: tuples and lists compare equal.
    return json.loads(json.dumps(values, sort_keys=True, default=repr))


def check_resumable(config: TrainConfig, paths: RunPaths, info: dict) -> None:
    """Refuses ``--resume`` with settings the run's checkpoint was not made with."""
    if not os.path.exists(paths.config):
        return
    try:
        old = load_run_config(paths.root)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{paths.config} cannot be read ({e}); pass --overwrite to start "
                         "the run again.") from None
    before, now = _checkpoint_settings(old, info), _checkpoint_settings(config, info)
    changed = [k for k in _RESUME_KEYS if before[k] != now[k]]
    if changed:
        diff = "; ".join(f"{_RESUME_KEYS[k]}: {before[k]!r} in the run, {now[k]!r} now"
                         for k in changed)
        raise ValueError(f"--resume needs the settings {paths.root} was trained with ({diff}); "
                         "give the same ones, --overwrite to start again, or another --output.")


def resolve_input(config: TrainConfig, info: dict) -> tuple[int, tuple[int, int], str]:
    """The clip length, frame size and normalization a run uses (flags over dataset.json)."""
    from kvid.models.registry import get_model_info

    model_info = get_model_info(config.model)
    stored = info.get("clip_frames")
    if info.get("layout") == "video":
        _check_video_records(config, info)
    elif config.clip_frames and stored and config.sampling == "dense" and \
            clip_span(config.clip_frames, config.frame_step) > int(stored):
        # Clips are stored as fixed windows of `stored` frames and sampled inside them; a
        # longer clip would repeat frames (the sampler loops), not see more of the video.
        span = clip_span(config.clip_frames, config.frame_step)
        raise ValueError(f"a clip of clip_frames (--clip-frames) {config.clip_frames}, "
                         f"frame_step {config.frame_step} spans {span} frames, more than the "
                         f"stored clips of {stored} frames (dataset.json): ingest longer clips "
                         "(or --layout video) or sample fewer frames. "
                         f"Received: clip_frames={config.clip_frames}")
    if not (config.clip_frames or stored):
        raise ValueError("dataset.json gives no clip_frames: give --clip-frames.")
    clip_frames = int(config.clip_frames or stored)
    if config.image_size:
        size = (int(config.image_size), int(config.image_size))
    elif info.get("image_size"):
        size = tuple(int(v) for v in info["image_size"])
    else:
        raise ValueError("The dataset was ingested with --short-side (no fixed frame size): "
                         "give --image-size.")
    return clip_frames, size, model_info.normalization


def _check_video_records(config: TrainConfig, info: dict) -> None:
    """Whole-video records have no clip length of their own; and a clip must fit in the
    frames that consecutive chunks of a long video share, or its start could not lie in
    the chunk that owns it."""
    if not config.clip_frames:
        raise ValueError("video-level records (kvid ingest --layout video) store no clip "
                         "length: give --clip-frames.")
    overlap = int(info.get("params", {}).get("chunk_overlap", 0))
    chunked = any(int(s.get("num_clips", 0)) > int(s.get("num_videos", 0))
                  for s in info.get("splits", {}).values())
    span = clip_span(config.clip_frames, config.frame_step)
    if chunked and config.sampling == "dense" and span > overlap + 1:
        raise ValueError(f"a clip of {config.clip_frames} frames {config.frame_step} apart "
                         f"spans {span} frames, more than the {overlap} frames the chunks of "
                         "long videos share + 1 (dataset.json params.chunk_overlap): ingest "
                         f"again with --chunk-overlap {span - 1} or more, or a larger "
                         "--max-frames")


def multigrid_cycles(epochs: int) -> int:
    """Long cycles of a multigrid run: one per step of its learning-rate schedule (Wu et al.
    align them), up to the paper's 3, each at least an epoch per clip shape."""
    return max(1, min(3, epochs // 4))


def multigrid_plan(config: TrainConfig, cfg, num_train: int):
    """-> (MultigridSchedule, the steps of each stage, the average steps per epoch) of a
    ``--schedule multigrid`` run at the run's base shape."""
    from kvid.models.multigrid import MultigridSchedule

    if len(cfg.streams) > 1 or cfg.image_size[0] != cfg.image_size[1]:
        raise ValueError("schedule 'multigrid' resizes square clips of one stream. "
                         f"Received: modality={cfg.modality!r}, image_size={cfg.image_size}")
    schedule = MultigridSchedule(config.batch_size, cfg.clip_frames, cfg.image_size[0],
                                 config.epochs, num_long_cycles=multigrid_cycles(config.epochs))
    steps = []
    for stage in schedule.stages():
        shapes = (schedule.short_cycle_shapes(stage.shape) if stage.short_cycle
                  else [stage.shape])
        steps.append((stage.end_epoch - stage.start_epoch) *
                     schedule.steps_per_epoch(shapes, num_train))
    return schedule, steps, max(1, round(sum(steps) / config.epochs))


def _schedule(config: TrainConfig, steps_per_epoch: int):
    total = max(1, config.epochs * steps_per_epoch)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    lr = config.learning_rate
    if config.schedule == "constant":
        return lr
    if config.schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                lr / 10, decay_steps=max(1, total - warmup), warmup_target=lr,
                warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    if config.schedule == "step":  # x0.1 at each of lr_steps (fractions of training)
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [max(1, int(total * f)) for f in config.lr_steps],
            [lr * 0.1 ** i for i in range(len(config.lr_steps) + 1)])
    from kvid.models.multigrid import multigrid_lr_schedule  # noqa: PLC0415

    return multigrid_lr_schedule(lr, total_steps=total, warmup_steps=min(warmup, total - 1),
                                 num_stages=multigrid_cycles(config.epochs))


def make_optimizer(config: TrainConfig, steps_per_epoch: int,
                   head_variables: Sequence[str] = ()) -> keras.optimizers.Optimizer:
    """The configured optimizer; with ``backbone_lr_scale`` != 1 the variables outside
    ``head_variables`` (paths) train at that fraction of the rate."""
    from kvid.train.optim import BACKBONE_LR

    lr = _schedule(config, steps_per_epoch)
    wd = config.weight_decay or None
    kwargs = {"sgd": dict(momentum=0.9, nesterov=True, weight_decay=wd),
              "adamw": dict(weight_decay=config.weight_decay or 1e-4),
              "adam": dict(weight_decay=wd)}[config.optimizer]
    if config.backbone_lr_scale != 1.0:
        return BACKBONE_LR[config.optimizer](lr, backbone_lr_scale=config.backbone_lr_scale,
                                             head_variables=head_variables, **kwargs)
    stock = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
             "adamw": keras.optimizers.AdamW}[config.optimizer]
    return stock(lr, **kwargs)


def compile_model(model: keras.Model, config: TrainConfig, num_classes: int,
                  steps_per_epoch: int) -> None:
    one_hot = config.label_smoothing > 0
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                   keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5")]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                   keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes),
                                                               name="top5")]
    head_variables = ()
    if config.backbone_lr_scale != 1.0:
        from kvid.pretrained import head_layers
        from kvid.train.optim import head_variable_paths

        head_variables = head_variable_paths(model, head_layers(config.model))
    model.compile(optimizer=make_optimizer(config, steps_per_epoch, head_variables),
                  loss=loss, metrics=metrics, jit_compile=XLA[config.xla])


def _strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def input_config(config: TrainConfig, info: dict):
    """The run's resolved :class:`kvid.data.InputConfig` (kept in ``RUN/input.json``)."""
    from kvid.data import AugmentConfig, InputConfig

    clip_frames, image_size, normalization = resolve_input(config, info)
    return InputConfig(
        clip_frames=clip_frames, image_size=image_size, sampling=config.sampling,
        frame_step=config.frame_step, num_segments=config.num_segments,
        modality=resolve_modality(config, info),
        normalize=normalization, augment=AugmentConfig(crop=config.crop, flip=config.flip),
        label_mode="one_hot" if config.label_smoothing > 0 else "sparse",
        labels=tuple(info["labels"]), flow_frames=config.flow_frames,
        flow_direction=config.flow_direction)


def resolve_modality(config: TrainConfig, info: dict) -> str:
    """The stream a run trains on: ``--modality`` or the model's; flow needs stored flow."""
    from kvid.models.registry import builder_keywords, get_model_info

    own = get_model_info(config.model).modality
    modality = config.modality or own
    rgb_like = modality == "rgbdiff" and own == "rgb"  # 3 channels: every RGB model takes it
    if modality != own and not rgb_like and \
            "modality" not in (builder_keywords(config.model) or ()):
        raise ValueError(f"{config.model!r} takes {own} only (its builder has no modality "
                         f"argument). Received: modality={modality!r}")
    if (modality == "rgb+flow") != (own == "rgb+flow"):
        raise ValueError(f"{config.model!r} takes {own}; rgb+flow is for the two-stream models "
                         f"(their input is both streams). Received: modality={modality!r}")
    if config.flow_frames is not None and modality != "rgb+flow":
        raise ValueError(f"flow_frames (--flow-frames) is for rgb+flow models; {config.model!r}"
                         f" trains on {modality}. Received: flow_frames={config.flow_frames}")
    if "flow" in modality and info.get("flow", "none") == "none":
        raise ValueError(f"modality {modality!r} needs optical flow in the records: ingest "
                         "with --flow farneback (or dis, tvl1)")
    if config.flow_direction == "bidirectional" and not info.get("flow_backward"):
        raise ValueError("flow_direction bidirectional (--flow-direction) needs the backward "
                         "flow in the records: ingest with --flow METHOD --flow-backward")
    return modality


def model_input_shape(cfg):
    """A model's ``input_shape`` for :class:`kvid.data.InputConfig` ``cfg``: (T, H, W, C) of
    its one stream, or ``{"rgb": ..., "flow": ...}`` for a two-stream model."""
    from kvid.data.pipeline import CHANNELS

    shapes = {s: (cfg.frames_of(s), *cfg.image_size, CHANNELS[s]) for s in cfg.streams}
    return shapes if len(shapes) > 1 else shapes[cfg.streams[0]]


def flow_settings(info: dict) -> dict | None:
    """How the records' flow was made (method, frame size, JPEG quality, quantization), so
    a client computes the same flow (``kvid predict``); None when the data has none."""
    from kvid.schema import FLOW_SCALE

    params = info.get("params", {})
    if info.get("flow", "none") == "none":
        return None
    return {"method": info["flow"], "size": info.get("image_size"),
            "short_side": info.get("short_side"),
            "jpeg_quality": int(params.get("jpeg_quality", 90)), "scale": FLOW_SCALE}


def save_run_input(paths: RunPaths, cfg, fps: float | None, sample: bytes | None,
                   flow: dict | None = None) -> None:
    """Writes what evaluate/export need of the data into the run, so they never read the
    data folder's current dataset.json: the input settings, the frame rate, how its flow
    was made, and one training record (the export's warm-up request)."""
    _write_atomic(paths.input, json.dumps({"input": cfg.to_json(), "fps": fps, "flow": flow},
                                          indent=2))
    if sample is not None:
        _write_atomic(paths.sample, sample, records=True)


def load_run_input(paths: RunPaths):
    """-> (InputConfig, {"fps", "flow"}, one training record or None) of a run train()
    wrote."""
    from kvid.data import InputConfig

    with open(paths.input) as f:
        saved = json.load(f)
    sample = None
    if os.path.exists(paths.sample):
        sample = next(iter(tf.data.TFRecordDataset(paths.sample).take(1))).numpy()
    return (InputConfig.from_json(saved["input"]),
            {"fps": saved.get("fps"), "flow": saved.get("flow")}, sample)


def _write_atomic(path: str, data, records: bool = False) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    if records:
        with tf.io.TFRecordWriter(tmp) as w:
            w.write(data)
    else:
        with open(tmp, "w") as f:
            f.write(data)
    os.replace(tmp, path)


def first_record(data_dir: str, split: str) -> bytes | None:
    """The first serialized record of a split (None if the split is empty)."""
    from kvid.data import resolve_files

    files, compression = resolve_files(data_dir, split)
    for record in tf.data.TFRecordDataset(files[:1], compression_type=compression).take(1):
        return record.numpy()
    return None


def _datasets(config, info, cfg):
    from kvid.data import make_dataset

    common = dict(batch_size=config.batch_size, seed=config.seed)
    train_ds = make_dataset(config.data_dir, config.train_split, cfg, training=True, **common)
    val_ds = None
    if config.val_split and config.val_split in info.get("splits", {}) and \
            info["splits"][config.val_split].get("num_clips", 1) > 0:
        val_ds = make_dataset(config.data_dir, config.val_split, cfg, training=False, **common)
    return train_ds, val_ds


def _labels_per_step(ds, steps: int):
    """Repeats each clip's label over the model's time steps ([B] -> [B, T], one-hot too)."""
    if ds is None:
        return None

    def repeat(x, y):
        return x, tf.repeat(tf.expand_dims(y, 1), steps, axis=1)

    return ds.map(repeat, num_parallel_calls=tf.data.AUTOTUNE)


def train(config: TrainConfig, *, extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          info: dict | None = None) -> TrainResult:
    """Trains per ``config``; a killed run started again with ``resume=True`` continues.

    Every check (the output folder, resume compatibility, input sizes, the model's
    arguments) runs before the folder is touched, so a refused run leaves it as it was.
    """
    from kvid.data import load_dataset_info
    from kvid.models.registry import build_model, builder_keywords, get_model_info
    from kvid.train import multiworker

    place = multiworker.cluster()  # TF_CONFIG with several tasks: this task's place
    distributed = multiworker.strategy() if place else None  # before TensorFlow runs an op
    shared, resume_asked = RunPaths(config.output_dir), config.resume
    if place and config.schedule == "multigrid":
        raise ValueError("schedule 'multigrid' trains on one host; unset TF_CONFIG or use "
                         "the default schedule")
    if place and not place.chief:  # the chief alone writes the run folder
        config = dataclasses.replace(config, output_dir=multiworker.private_dir(place),
                                     overwrite=True, resume=False)
    paths = RunPaths(config.output_dir)
    resuming = check_output(config, paths)
    info = info or load_dataset_info(config.data_dir)
    labels = list(info["labels"])
    if config.resume:
        check_resumable(config, paths, info)
    cfg = input_config(config, info)
    clip_frames, image_size, normalization = cfg.clip_frames, cfg.image_size, cfg.normalize
    input_shape = model_input_shape(cfg)
    num_train = info.get("splits", {}).get(config.train_split, {}).get("num_clips")
    multigrid = None
    if config.schedule == "multigrid":  # a model of variable T, H, W; batches of each shape
        multigrid = multigrid_plan(config, cfg, int(num_train or config.batch_size))
        input_shape = (None, None, None, input_shape[-1])
    # a builder with a modality argument (LRCN, fusion, TSN, I3D) builds the flow network
    own = get_model_info(config.model).modality
    keywords = builder_keywords(config.model) or ()
    stream = {"modality": cfg.modality} if cfg.modality != own and "modality" in keywords else {}
    if cfg.sampling == "segments" and "num_segments" in keywords and \
            "num_segments" not in config.model_kwargs:  # TSN's stacks: the data's K
        stream["num_segments"] = cfg.num_segments
    steps = config.steps_per_epoch or (math.ceil(num_train / config.batch_size)
                                       if num_train else 100)
    if multigrid:
        steps = multigrid[2]  # the schedule's steps over the whole run, per epoch

    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        # float16 on GPU; TF has no float16 MaxPool3D kernel on CPU, bfloat16 works there.
        gpu = bool(tf.config.list_physical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    # built before any data is read: bad builder arguments fail now
    with (distributed or _strategy()).scope():
        if config.pretrained and not resuming:
            from kvid.pretrained import pretrained_model

            model = pretrained_model(config.pretrained, config.model,
                                     input_shape=input_shape,
                                     num_classes=len(labels), freeze=config.freeze_backbone,
                                     **config.builder_kwargs(), **stream)
        else:  # resuming restores every weight from backup/ anyway
            try:
                model = build_model(config.model, input_shape=input_shape,
                                    num_classes=len(labels), preset=config.preset,
                                    **config.model_kwargs, **stream)
            except ValueError as e:
                if not multigrid:
                    raise
                raise ValueError(f"schedule 'multigrid' trains on clips of changing frames and "
                                 f"size, which {config.model!r} cannot take ({e})") from None
            if config.pretrained:
                from kvid.pretrained import freeze_backbone

                freeze_backbone(model, config.model, config.freeze_backbone)
        compile_model(model, config, len(labels), steps)

    if config.overwrite or (config.resume and not resuming):  # nothing old may mix in
        paths.clear()
    os.makedirs(config.output_dir, exist_ok=True)
    with open(paths.config, "w") as f:
        json.dump(config.to_json(), f, indent=2)
    flow = flow_settings(info)
    save_run_input(paths, cfg, info.get("fps"), first_record(config.data_dir, config.train_split),
                   flow)

    train_ds, val_ds = _datasets(config, info, cfg)
    if config.steps_per_epoch:
        train_ds = train_ds.repeat()
    if len(model.outputs[0].shape) == 3:  # per-step logits (LRCN): the loss at every step
        train_ds, val_ds = (_labels_per_step(ds, model.outputs[0].shape[1])
                            for ds in (train_ds, val_ds))

    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    callbacks = [
        keras.callbacks.BackupAndRestore(paths.backup, save_freq="epoch",
                                         delete_checkpoint=True),
        keras.callbacks.ModelCheckpoint(paths.best, monitor=monitor, mode="max",
                                        save_best_only=True),
        # a multigrid run calls fit once per clip shape: each appends its epochs
        keras.callbacks.CSVLogger(paths.csv_log, append=resuming or bool(multigrid)),
        keras.callbacks.TensorBoard(paths.tensorboard),
        *extra_callbacks,
    ]
    if multigrid:
        from kvid.models.multigrid import fit_multigrid

        stages = fit_multigrid(model, train_ds.unbatch(), multigrid[0],
                               num_examples=int(num_train or config.batch_size),
                               validation_data=val_ds, callbacks=callbacks,
                               verbose=config.verbose, shuffle=False)
        history = keras.callbacks.History()
        history.epoch = [e for h in stages for e in h.epoch]
        history.history = {k: [v for h in stages for v in h.history.get(k, [])]
                           for k in stages[0].history}
    elif place:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = multiworker.shard_policy(
            len(info.get("shards", {}).get(config.train_split, [])), place.num_workers)
        train_ds = train_ds.with_options(options)
        if not config.steps_per_epoch:
            train_ds = train_ds.repeat()
        logged, first = multiworker.fit(
            model, train_ds, val_ds, strategy=distributed, place=place, epochs=config.epochs,
            steps_per_epoch=steps, backup=paths.backup, shared_backup=shared.backup,
            resume=resume_asked, csv_log=paths.csv_log, tensorboard=paths.tensorboard,
            best=paths.best, monitor=monitor, callbacks=extra_callbacks,
            verbose=config.verbose, jit_compile=config.xla == "on")
        history = keras.callbacks.History()
        history.history, history.epoch = logged, list(range(first, config.epochs))
    else:
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs,
                            steps_per_epoch=config.steps_per_epoch, callbacks=callbacks,
                            verbose=config.verbose, shuffle=False)  # tf.data shuffles
    if place and not place.chief:  # nothing of a worker's stays behind
        shutil.rmtree(paths.root, ignore_errors=True)
    else:
        model.save(paths.last)
        if os.path.exists(paths.csv_log):
            from kvid.train.plots import plot_training_curves

            plot_training_curves(paths.csv_log, paths.curves)
    return TrainResult(model=model, history=dict(history.history), output_dir=shared.root,
                       labels=labels, clip_frames=clip_frames, image_size=image_size,
                       normalization=normalization, fps=info.get("fps"), input=cfg,
                       flow=flow,
                       initial_epoch=int(history.epoch[0]) if history.epoch else config.epochs)


def load_run_config(output_dir: str) -> TrainConfig:
    with open(RunPaths(output_dir).config) as f:
        return TrainConfig(**json.load(f))


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Builds a config from a plain dict (TFX custom_config, JSON), ignoring unknown keys."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in values.items() if k in names})
