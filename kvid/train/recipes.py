"""The papers' training recipes: what ``kvid train --preset paper`` sets besides the
architecture (whose builder defaults already are the paper's).

A recipe holds :class:`~kvid.train.trainer.TrainConfig` fields: clip length, frame step,
sampling, crop size, optimizer, learning rate, schedule and its steps, warm-up, weight
decay, epochs and batch size, as each paper states them (or, where it does not, the
authors' released configuration, which ``source`` then names); a flag given on the
command line wins. Where a
paper's schedule is not one of kvid's (``--schedule``) or counts iterations, the recipe
holds the nearest kvid form, and ``note`` says what was translated. A learning rate for a
paper's cluster-sized batch is scaled linearly to the recipe's batch (Goyal et al. 2017,
which those papers follow); scale it again with ``--lr`` for another ``--batch-size``.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

UCF101_TRAIN = 9537  # videos in UCF101 split 1's training list: iterations -> epochs


@dataclasses.dataclass(frozen=True)
class Recipe:
    source: str  # the paper and where in it
    settings: Mapping  # TrainConfig fields
    by_modality: Mapping = dataclasses.field(default_factory=dict)  # per-stream overrides
    note: str = ""  # what was translated into kvid's terms
    ingest: str = ""  # the kvid ingest flags for the paper's input

    def for_modality(self, modality: str) -> dict:
        return {**self.settings, **self.by_modality.get(modality, {})}


def _epochs(iterations: int, batch: int, videos: int = UCF101_TRAIN) -> int:
    return -(-iterations * batch // videos)


_C3D = Recipe(
    "Tran et al., Learning Spatiotemporal Features with 3D Convolutional Networks, ICCV "
    "2015, Sec. 3.1 (UCF101); weight decay from its released solver (C3D-v1.0 "
    "examples/c3d_train_ucf101)",
    {"clip_frames": 16, "image_size": 112, "crop": "random", "optimizer": "sgd",
     "learning_rate": 0.003, "batch_size": 30, "epochs": 16, "schedule": "step",
     "lr_steps": (0.25, 0.5, 0.75), "weight_decay": 0.005},
    note="the rate divided by 10 every 4 of 16 epochs",
    ingest="--short-side 128 (the paper's 128x171 frames, cropped to 112)")

_I3D = Recipe(
    "Carreira & Zisserman, Quo Vadis, Action Recognition?, CVPR 2017, Sec. 2.5",
    {"clip_frames": 64, "image_size": 224, "crop": "random", "optimizer": "sgd",
     "learning_rate": 0.1, "schedule": "step"},
    note="the paper tunes the rate on the validation set without stating it (0.1 is "
         "piergiaj/pytorch-i3d's) and divides it by 10 when the validation loss saturates: "
         "kvid's step schedule at 50% and 75% of training. Batch and steps depend on its 64 "
         "GPUs: kvid's defaults stand",
    ingest="--fps 25 --short-side 256")

_R2PLUS1D = Recipe(
    "Tran et al., A Closer Look at Spatiotemporal Convolutions for Action Recognition, CVPR "
    "2018, Sec. 4.1",
    {"clip_frames": 8, "image_size": 112, "crop": "random", "optimizer": "sgd",
     "learning_rate": 0.01, "batch_size": 32, "epochs": 45, "schedule": "step",
     "lr_steps": (10 / 45, 20 / 45, 30 / 45, 40 / 45), "weight_decay": 1e-4},
    note="the rate divided by 10 every 10 of 45 epochs; 32 clips per GPU; weight decay from "
         "VMZ's train_r2plus1d_kinetics.sh. The paper's epoch is VMZ's epoch_size of 1M "
         "clips, kvid's one pass over the data",
    ingest="--short-side 128 (128x171 frames, cropped to 112)")

# SlowFast's recipe: lr 1.6 for 1024 clips (8 per GPU x 128), half-period cosine, 8k of 60k
# iterations warm-up, 256 epochs (T <= 4 slow frames), momentum 0.9, weight decay 1e-4.
_SLOWFAST = Recipe(
    "Feichtenhofer et al., SlowFast Networks for Video Recognition, ICCV 2019, Sec. 5.1 and "
    "Appendix A.3",
    {"clip_frames": 32, "frame_step": 2, "image_size": 224, "optimizer": "sgd",
     "learning_rate": 1.6 * 8 / 1024, "batch_size": 8, "weight_decay": 1e-4,
     "schedule": "cosine", "epochs": 256, "warmup_epochs": 34},
    note="lr 1.6 for 1024 clips, scaled to 8; warm-up 8k of 60k iterations = 34 epochs",
    ingest="--fps 30 --short-side 320 (random short side 256-320 in the paper)")


def _x3d(frames: int, step: int, size: int, epochs: int = 300) -> Recipe:
    return Recipe(
        "Feichtenhofer, X3D: Expanding Architectures for Efficient Video Recognition, CVPR "
        "2020, Sec. 4; the numbers of PySlowFast's configs/Kinetics/X3D_*.yaml",
        {"clip_frames": frames, "frame_step": step, "image_size": size, "optimizer": "sgd",
         "learning_rate": 0.1 * 8 / 128, "batch_size": 8, "weight_decay": 5e-5,
         "schedule": "cosine", "epochs": epochs, "warmup_epochs": 35},
        note="lr 0.1 for 128 clips, scaled to 8; the configs' training scale jitter is not "
             "an ingest option (kvid's random resized crop stands)",
        ingest="--fps 30")


_TSN = Recipe(
    "Wang et al., Temporal Segment Networks, ECCV 2016, Sec. 4.1 (UCF101)",
    {"sampling": "segments", "num_segments": 3, "clip_frames": 3, "image_size": 224,
     "crop": "multiscale", "optimizer": "sgd", "batch_size": 256, "schedule": "step",
     "learning_rate": 0.001, "epochs": _epochs(4500, 256),
     "lr_steps": (2000 / 4500, 4000 / 4500)},
    by_modality={"flow": {"learning_rate": 0.005, "epochs": _epochs(20000, 256),
                          "clip_frames": 15, "lr_steps": (0.6, 0.9)},
                 "rgbdiff": {"clip_frames": 15}},
    note="RGB: lr 0.001, /10 every 2,000 of 4,500 iterations; flow: lr 0.005, /10 at 12,000 "
         "and 18,000 of 20,000 iterations, 5 stacked flow fields (RGB differences) per "
         "snippet; iterations as epochs of UCF101 split 1. Dropout (0.8 RGB, 0.7 flow) is "
         "the builder's --model-args dropout",
    ingest="--short-side 256 (and --flow for the flow stream)")

_TWO_STREAM = Recipe(
    "Simonyan & Zisserman, Two-Stream Convolutional Networks for Action Recognition in "
    "Videos, NeurIPS 2014, Sec. 5 (from scratch)",
    {"clip_frames": 1, "flow_frames": 10, "image_size": 224, "optimizer": "sgd",
     "learning_rate": 0.01, "batch_size": 256, "schedule": "step",
     "epochs": _epochs(80000, 256), "lr_steps": (50 / 80, 70 / 80)},
    note="lr 1e-2, 1e-3 after 50K and 1e-4 after 70K of 80K iterations; iterations as "
         "epochs of UCF101 split 1",
    ingest="--flow tvl1 --short-side 256 (the paper's flow is Brox et al.'s, OpenCV's "
           "GPU-only implementation; TV-L1 is the CPU method of the papers after it), "
           "--flow-backward for its bi-directional stacks")

RECIPES: dict[str, Recipe] = {
    "c3d": _C3D,
    "i3d": _I3D, "i3d_rgb": _I3D, "i3d_flow": _I3D, "i3d_rgb600": _I3D,
    "r2plus1d": _R2PLUS1D, "r2plus1d_18": _R2PLUS1D, "r3d_18": _R2PLUS1D, "mc3_18": _R2PLUS1D,
    "slowfast": _SLOWFAST,
    "x3d": _x3d(16, 5, 224), "x3d_m": _x3d(16, 5, 224), "x3d_xs": _x3d(4, 12, 160),
    "x3d_s": _x3d(13, 6, 160), "x3d_l": _x3d(16, 5, 312, epochs=256),
    "tsn": _TSN,
    "two_stream": _TWO_STREAM,
}


def paper_settings(model: str, modality: str | None = None) -> dict:
    """The TrainConfig fields of ``model``'s paper recipe for ``modality`` (None: the
    model's own); an empty dict for a model without one (its builder's paper defaults)."""
    from kvid.models.registry import get_model_info

    recipe = RECIPES.get(model)
    if recipe is None:
        return {}
    return recipe.for_modality(modality or get_model_info(model).modality)
