"""The pipeline's one config: a frozen dataclass read from JSON and ``KVID_*`` variables.

``tfx pipeline create`` and ``tfx run create`` run ``pipeline/kvid.py`` without arguments,
so everything a user changes (data, model, epochs, thresholds) comes from a JSON file named
by ``KVID_PIPELINE_CONFIG`` and/or single ``KVID_<FIELD>`` environment variables
(``KVID_DATA_ROOT=/videos KVID_EPOCHS=20 tfx run create ...``), never from editing the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from kvid.synth import MOTION  # with no data of its own: the synthetic motion recipe

ENV_PREFIX = "KVID_"
CONFIG_ENV = "KVID_PIPELINE_CONFIG"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    pipeline_name: str = "kvid"
    home: str = "kvid_output"  # pipeline root, metadata and default data live below it
    data_root: str = ""  # folder of videos root/<label>/...; empty = the synthetic dataset
    # classes in data_root; 0 = count its <label>/ folders when the pipeline is created
    # (a Kubeflow compile reads nothing, so there it must be given)
    num_classes: int = 0
    serving_dir: str = ""  # Pusher target (TF Serving layout); default: HOME/serving/models
    model_name: str = "kvid"  # served model name: SERVING_DIR/<model_name>/<version>/
    # ingest (VideoExampleGen), as kvid ingest: "clips" stores windows of clip_frames,
    # "video" whole videos (chunks of max_frames sharing chunk_overlap) sampled at read time
    layout: str = "clips"
    max_frames: int = 300
    chunk_overlap: int = 64
    fps: float = MOTION.fps
    clip_frames: int = MOTION.clip_frames  # stored windows, and the Trainer's clip length
    flow: str = "none"  # optical flow in the records: none | farneback | dis | tvl1
    flow_backward: bool = False  # also the backward flow (kvid ingest --flow-backward)
    # the Trainer's stream(s): rgb | flow | rgb+flow | rgbdiff; "" = the model's
    modality: str = ""
    flow_frames: int = 0  # rgb+flow: flow images per clip (kvid train --flow-frames); 0 = T
    flow_direction: str = "forward"  # or bidirectional (kvid train --flow-direction)
    image_size: int = MOTION.image_size
    train_buckets: int = 3
    eval_buckets: int = 1
    # training (Trainer, via kvid.train)
    model: str = MOTION.model
    # the demo model's kwargs; another model starts from {} (or its preset) unless given
    model_kwargs: dict = dataclasses.field(default_factory=lambda: dict(MOTION.model_kwargs))
    preset: str = ""  # "paper" or "tiny" builder kwargs from the registry; "" = none
    # a published checkpoint of `model` to fine-tune from, as `kvid train --pretrained`
    # (e.g. KVID_PRETRAINED=torchvision:/ckpt/r2plus1d_18-91a641e6.pth); "" = from scratch
    pretrained: str = ""
    freeze_backbone: bool = False  # with pretrained: train only the new head
    backbone_lr_scale: float = 1.0  # with pretrained: the backbone's rate = learning_rate x this
    sampling: str = "dense"  # as kvid train --sampling / --frame-step / --num-segments
    frame_step: int = 1
    num_segments: int = 3
    clip_aggregation: str = "mean"  # per-step models (LRCN): clip logits, mean or last step
    epochs: int = MOTION.epochs
    seed: int = 0  # the Trainer's seed (order, augmentation, initial weights), as kvid train --seed
    batch_size: int = MOTION.batch_size
    learning_rate: float = MOTION.learning_rate
    optimizer: str = "adam"
    # as kvid train --schedule: constant | cosine | step | multigrid (Wu et al.'s clip shapes
    # and batch sizes with its step learning rate; a model taking variable T, H, W)
    schedule: str = "cosine"
    lr_steps: tuple = (0.5, 0.75)  # schedule step: /10 at these fractions (KVID_LR_STEPS="0.4 0.8")
    mixed_precision: bool = False
    xla: str = "auto"  # as kvid train --xla: auto | on | off
    flip: bool = True  # random horizontal flips; never on the synthetic data (mirror = other class)
    crop: str = "random_resized"  # training crop, as `kvid train --crop`
    # evaluation (Evaluator)
    accuracy_threshold: float = 0.5  # absolute: accuracy must be >= this to bless
    change_threshold: float = -0.05  # vs the latest blessed model: accuracy may drop at most this
    # components and Beam
    statistics: bool = True  # StatisticsGen, SchemaGen, ExampleValidator
    beam_args: tuple = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    synth_videos_per_class: int = MOTION.videos_per_class
    synth_classes: int = MOTION.num_classes

    def __post_init__(self):
        from kvid.data.augment import AugmentConfig

        from kvid import validate

        AugmentConfig(crop=self.crop)  # an unknown crop: the same clear error, now
        from kvid.train.trainer import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}. "
                             f"Received: schedule={self.schedule!r}")
        object.__setattr__(self, "lr_steps", tuple(float(f) for f in self.lr_steps))
        self.ingest_config()  # and bad ingest values
        if self.modality:  # the Trainer's stream: what kvid train --modality accepts
            from kvid.train.trainer import TrainConfig, resolve_modality

            resolve_modality(TrainConfig(data_dir="", output_dir="", model=self.model,
                                         modality=self.modality,
                                         flow_frames=self.flow_frames or None,
                                         flow_direction=self.flow_direction),
                             {"flow": self.flow, "flow_backward": self.flow_backward})
        elif self.flow_frames:
            raise ValueError("flow_frames (KVID_FLOW_FRAMES) is for modality rgb+flow "
                             "(KVID_MODALITY=rgb+flow)")
        validate.positive("backbone_lr_scale", self.backbone_lr_scale)
        validate.non_negative("num_classes", self.num_classes, integer=True)
        validate.non_negative("flow_frames", self.flow_frames, integer=True)
        validate.number("seed", self.seed, integer=True)

    def check_cluster(self) -> None:
        """What a cluster run (Kubeflow) needs given, since its compile reads nothing here:
        checked before TFX is imported, so a refusal costs no import."""
        if not self.data_root or not self.num_classes:
            raise ValueError("a Kubeflow pipeline reads videos where the cluster can: give "
                             "KVID_DATA_ROOT (e.g. gs://bucket/videos) and KVID_NUM_CLASSES. "
                             f"Received: data_root={self.data_root!r}, "
                             f"num_classes={self.num_classes}")

    def ingest_config(self):
        from kvid.ingest import IngestConfig

        return IngestConfig(layout=self.layout, max_frames=self.max_frames,
                            chunk_overlap=self.chunk_overlap, fps=self.fps, flow=self.flow,
                            flow_backward=self.flow_backward,
                            clip_frames=self.clip_frames,
                            size=(self.image_size, self.image_size))

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.home, "pipelines", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.home, "metadata", self.pipeline_name, "metadata.db")

    @property
    def videos(self) -> str:
        return self.data_root or os.path.join(self.home, "synth-videos")

    @property
    def push_dir(self) -> str:
        return self.serving_dir or os.path.join(self.home, "serving", "models")

    @classmethod
    def load(cls, path: str | None = None, environ: dict | None = None) -> "PipelineConfig":
        """Defaults, then the JSON file (``path`` or $KVID_PIPELINE_CONFIG), then KVID_* vars."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = path or environ.get(CONFIG_ENV)
        if path:
            with open(path) as f:
                values.update(json.load(f))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(values) - set(fields)
        if unknown:
            raise ValueError(f"Unknown pipeline config keys {sorted(unknown)} in {path}. "
                             f"Valid keys: {sorted(fields)}")
        for name, field in fields.items():
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse(raw, field, name)
        if values.get("preset") == "paper":  # the paper's recipe fills what is not given
            from kvid.train.recipes import paper_settings

            recipe = paper_settings(values.get("model", cls.model), values.get("modality"))
            values = {**{k: v for k, v in recipe.items() if k in fields}, **values}
        if values.get("model", cls.model) != cls.model and "model_kwargs" not in values:
            values["model_kwargs"] = {}  # the demo model's kwargs would not fit another model
        if "beam_args" in values and isinstance(values["beam_args"], (list, str)):
            args = values["beam_args"]
            values["beam_args"] = tuple(args.split() if isinstance(args, str) else args)
        return cls(**values)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["beam_args"] = list(self.beam_args)
        return d


def _parse(raw: str, field: dataclasses.Field, name: str):
    default = field.default if field.default is not dataclasses.MISSING \
        else field.default_factory()
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, (dict, list)):
            return json.loads(raw)
        if isinstance(default, tuple):
            return tuple(raw.split())
        return raw
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid "
                         f"{type(default).__name__}") from None


def ensure_videos(config: PipelineConfig) -> str:
    """The video folder to ingest; writes the synthetic dataset there if none was given."""
    if config.data_root:
        if not os.path.isdir(config.data_root):
            raise FileNotFoundError(f"data_root {config.data_root} is not a folder")
        return config.data_root
    if not os.path.isdir(config.videos) or not os.listdir(config.videos):
        from kvid.synth import SynthConfig, generate

        generate(config.videos, SynthConfig(
            num_classes=config.synth_classes, videos_per_class=config.synth_videos_per_class,
            frames=MOTION.video_frames, size=MOTION.video_size))
    return config.videos
