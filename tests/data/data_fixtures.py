"""Clip shards with known content, written at test time.

Frame i of every clip: red is a left-to-right ramp (0 -> 255), blue a top-to-bottom ramp,
green the constant 16 * i. So the green mean tells which stored frame was sampled, and the
red/blue ramps tell where a crop came from and whether it was flipped, even after JPEG.
Flow image i: x (red) is 128 + 4 * (i + 1), y (green) 96, so a flip shows as a sign change.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from kvid import schema
from kvid.video import encode_jpeg


def known_frame(i: int, height: int, width: int) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    g = np.full((height, width), 16.0 * i)
    return np.stack([x, g, y], -1).round().astype(np.uint8)


def known_flow(i: int, height: int, width: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 128 + 4 * (i + 1), 96, 128
    return img


def make_clip(label: int, video_id: str, *, frames: int = 12, height: int = 24,
              width: int = 32, flow: bool = False, clip_index: int = 0) -> schema.Clip:
    return schema.Clip(
        frames=[encode_jpeg(known_frame(i, height, width), quality=98) for i in range(frames)],
        flow=[encode_jpeg(known_flow(i, height, width), quality=98)
              for i in range(frames - 1)] if flow else (),
        label=label, label_name=f"class{label}", video_id=video_id, group="g",
        clip_index=clip_index, clip_start_frame=0, fps=25.0, height=height, width=width)


def write_shards(root, split: str, clips, *, shards: int = 2, gzip: bool = False,
                 labels=("class0", "class1", "class2")) -> list[str]:
    """kvid ingest's layout: <root>/<split>/clips-0000i-of-0000N.tfrecord[.gz] + dataset.json."""
    os.makedirs(os.path.join(root, split), exist_ok=True)
    ext = ".tfrecord.gz" if gzip else ".tfrecord"
    paths = [os.path.join(split, f"clips-{i:05d}-of-{shards:05d}{ext}") for i in range(shards)]
    opts = tf.io.TFRecordOptions(compression_type="GZIP" if gzip else "")
    writers = [tf.io.TFRecordWriter(os.path.join(root, p), opts) for p in paths]
    clips = list(clips)
    for k, clip in enumerate(clips):
        writers[k % shards].write(schema.serialize_clip(clip))
    for w in writers:
        w.close()
    info_path = os.path.join(root, "dataset.json")
    info = json.load(open(info_path)) if os.path.exists(info_path) else {
        "labels": list(labels), "splits": {}, "clip_frames": 12, "fps": 25.0,
        "image_size": [24, 32], "compression": "gzip" if gzip else "none", "shards": {}}
    info["splits"][split] = {"num_clips": len(clips),
                             "num_videos": len({c.video_id for c in clips})}
    info["shards"][split] = paths
    with open(info_path, "w") as f:
        json.dump(info, f)
    return [os.path.join(root, p) for p in paths]


def frame_ids(clip: np.ndarray) -> list[int]:
    """Stored frame index of each frame of a [T, H, W, 3] clip in [0, 1] (from green)."""
    return [int(round(g)) for g in clip[..., 1].mean(axis=(1, 2)) * 255.0 / 16.0]
