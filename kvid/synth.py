"""``kvid synth``: a synthetic action dataset that only motion can tell apart.

Each video shows a textured background, a few jittering distractors and one main object
that moves left/right/up/down, rotates clockwise/counter-clockwise, or grows/shrinks. The
trajectory is centred on a random point, so the object's position, angle and size in any
single frame have the same distribution for opposite classes: a single-frame model stays
near chance while a temporal model learns the task. Videos are real mp4 files (H.264 via
PyAV) in ``root/<label>/<video>.mp4``; the "actor" (a lighting gradient shared by its
videos) is the video's group, so splits by group keep an actor's videos together.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator

import cv2
import numpy as np

from kvid.video.encode import write_video

CLASSES = ("move_left", "move_right", "move_up", "move_down",
           "rotate_cw", "rotate_ccw", "grow", "shrink")


@dataclasses.dataclass(frozen=True)
class MotionRecipe:
    """A dataset of these videos and a training recipe that learns it on 2 CPU cores in
    minutes: the defaults of ``kvid demo`` and of the TFX pipeline without data of its own."""

    num_classes: int = 4
    videos_per_class: int = 64  # ~350 train clips after the group split; 32 is too few
    video_frames: int = 32
    video_size: int = 96
    fps: float = 12.5  # ingest resamples the 25 fps videos to this rate
    clip_frames: int = 8
    image_size: int = 64  # not 48-50: CPU Conv3D training hits a ~300x slower path there
    epochs: int = 20
    batch_size: int = 8
    # Early fusion (Karpathy et al. 2014) at a quarter width: its first conv sees all T
    # frames, so it learns motion from ~350 clips in minutes on 2 CPU cores. (CNN+GRU with
    # pooled per-frame features cannot see translation at all.) No dropout: with 0.3, 2 of 5
    # seeds of the default TFX run stayed near chance for 20 epochs (README, Measured).
    model: str = "early_fusion"
    model_kwargs: tuple = (("width_multiplier", 0.25), ("fc_units", (128,)), ("dropout", 0.0))
    learning_rate: float = 1e-3


MOTION = MotionRecipe()


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    num_classes: int = 8
    videos_per_class: int = 12
    frames: int = 32
    fps: float = 25.0
    size: int = 96  # frames are size x size
    actors: int = 6
    seed: int = 0
    codec: str = "libx264"

    def __post_init__(self):
        if not 2 <= self.num_classes <= len(CLASSES):
            raise ValueError(f"num_classes must be in 2..{len(CLASSES)}. "
                             f"Received: num_classes={self.num_classes}")
        for name in ("videos_per_class", "frames", "actors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.size < 32 or self.size % 2:
            raise ValueError(f"size must be even and >= 32. Received: size={self.size}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive. Received: fps={self.fps}")

    @property
    def labels(self) -> tuple[str, ...]:
        return CLASSES[: self.num_classes]


def _background(rng: np.random.Generator, actor_rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 200, size=3)
    noise = rng.normal(0, 1, size=(size // 8 + 1, size // 8 + 1, 3))
    texture = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * 8.0
    ramp = np.linspace(-20, 20, size)[None, :, None] * actor_rng.uniform(-1, 1, size=3)
    return np.clip(base + texture + ramp, 0, 255).astype(np.float32)


def _shape_points(kind: int, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """An oriented polygon (an arrow-like shape), so rotation shows in its outline."""
    if kind == 0:  # isosceles triangle
        pts = [(1.0, 0.0), (-0.6, 0.7), (-0.6, -0.7)]
    elif kind == 1:  # "L" shape
        pts = [(-0.8, -0.8), (0.9, -0.8), (0.9, -0.3), (-0.3, -0.3), (-0.3, 0.9), (-0.8, 0.9)]
    else:  # arrow
        pts = [(1.0, 0.0), (0.2, 0.7), (0.2, 0.3), (-0.9, 0.3), (-0.9, -0.3), (0.2, -0.3),
               (0.2, -0.7)]
    c, s = math.cos(angle), math.sin(angle)
    return np.array([(cx + radius * (x * c - y * s), cy + radius * (x * s + y * c))
                     for x, y in pts], dtype=np.float32)


def render_video(label: str, cfg: SynthConfig, rng: np.random.Generator,
                 actor_rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Yields ``cfg.frames`` RGB uint8 frames of one video of class ``label``."""
    n, size = cfg.frames, cfg.size
    bg = _background(rng, actor_rng, size)
    # The object contrasts with the actor's background; its colour varies per video, so
    # colour says nothing about the class.
    color = np.clip(255 - bg.mean(axis=(0, 1)) + rng.normal(0, 40, 3), 0, 255)
    kind = int(rng.integers(3))
    radius = size * rng.uniform(0.16, 0.22)
    speed = size * rng.uniform(0.010, 0.016)  # pixels per frame
    spin = rng.uniform(0.06, 0.12)  # radians per frame
    growth = rng.uniform(0.010, 0.018)  # fraction of radius per frame
    travel = speed * (n - 1)
    margin = radius
    cx = rng.uniform(margin + travel / 2, size - margin - travel / 2) if travel < size - 2 * margin \
        else size / 2
    cy = rng.uniform(margin + travel / 2, size - margin - travel / 2) if travel < size - 2 * margin \
        else size / 2
    angle0 = rng.uniform(0, 2 * math.pi)
    distractors = [
        (rng.uniform(0, size, 2), rng.uniform(2, max(3.0, size * 0.04)), rng.uniform(0, 255, 3))
        for _ in range(int(rng.integers(0, 3)))
    ]
    for i in range(n):
        u = i / max(1, n - 1) - 0.5  # -0.5 .. 0.5 over the video: trajectories are centred
        x, y, r, a = cx, cy, radius, angle0
        if label == "move_left":
            x = cx - u * travel
        elif label == "move_right":
            x = cx + u * travel
        elif label == "move_up":
            y = cy - u * travel
        elif label == "move_down":
            y = cy + u * travel
        elif label == "rotate_cw":
            a = angle0 + u * spin * (n - 1)
        elif label == "rotate_ccw":
            a = angle0 - u * spin * (n - 1)
        elif label == "grow":
            r = radius * (1 + u * growth * (n - 1))
        elif label == "shrink":
            r = radius * (1 - u * growth * (n - 1))
        frame = bg.copy()
        for (pos, dr, dcol) in distractors:
            jitter = rng.normal(0, 1.0, 2)
            pos += jitter
            cv2.circle(frame, (int(pos[0]), int(pos[1])), int(dr), dcol.tolist(), -1)
        pts = _shape_points(kind, x, y, r, a)
        cv2.fillPoly(frame, [np.round(pts).astype(np.int32)], color.tolist(), lineType=cv2.LINE_AA)
        frame += rng.normal(0, 3.0, frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def generate(root: str, cfg: SynthConfig = SynthConfig(), *, progress: bool = False) -> list[str]:
    """Writes the dataset under ``root``; returns the video paths. Same seed, same videos."""
    from tqdm import tqdm

    os.makedirs(root, exist_ok=True)
    actor_seeds = np.random.SeedSequence([cfg.seed, 1]).spawn(cfg.actors)
    jobs = [(label, v) for label in cfg.labels for v in range(cfg.videos_per_class)]
    paths = []
    for label, v in tqdm(jobs, desc="synth videos", unit="video", disable=not progress):
        actor = v % cfg.actors
        rng = np.random.default_rng([cfg.seed, CLASSES.index(label), v])
        actor_rng = np.random.default_rng(actor_seeds[actor])
        path = os.path.join(root, label, f"{label}_actor{actor:02d}_v{v:03d}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, render_video(label, cfg, rng, actor_rng), fps=cfg.fps, codec=cfg.codec)
        paths.append(path)
    return paths


def group_of(path: str) -> str:
    """The actor of a synth video (its group), read from the file name."""
    stem = os.path.basename(path)
    i = stem.find("_actor")
    return stem[i + 1: i + 8] if i >= 0 else ""
