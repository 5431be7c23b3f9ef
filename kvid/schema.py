"""The clip record: the one place that knows kvid's tf.train.Example features.

One ``tf.train.Example`` per clip (not a SequenceExample) so that every TFX component reads
it without special cases. Ingest writes it with :func:`serialize_clip`; tf.data, the
SavedModel's ``serving_examples`` signature and the tests read it with :func:`parse_clips`
or :func:`feature_spec`. Changing the record means changing this file and nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import tensorflow as tf

FRAMES = "frames"  # bytes_list: T JPEG-encoded RGB frames, in time order
FLOW = "flow"  # bytes_list: T-1 JPEG images, flow x in R, y in G, B = 128 (optional)
LABEL = "label"  # int64: index into the label map (dataset.json "labels")
LABEL_NAME = "label_name"  # bytes
VIDEO_ID = "video_id"  # bytes: unique per source video
GROUP = "group"  # bytes: the unit that must not straddle splits (actor, UCF101 gNN)
CLIP_INDEX = "clip_index"  # int64: clip number within its video
CLIP_START_FRAME = "clip_start_frame"  # int64: index of the first frame at the sampled fps
NUM_FRAMES = "num_frames"  # int64: T
FPS = "fps"  # float: frame rate of the stored frames
HEIGHT = "height"  # int64
WIDTH = "width"  # int64

# Flow is quantised into 8 bits around 128: value = clip(128 + flow * FLOW_SCALE, 0, 255).
FLOW_SCALE = 8.0  # so +-16 pixels per frame is the representable range


@dataclasses.dataclass(frozen=True)
class Clip:
    """A clip as Python values: what ingest builds and what tests compare against."""

    frames: Sequence[bytes]
    label: int
    label_name: str
    video_id: str
    group: str
    clip_index: int
    clip_start_frame: int
    fps: float
    height: int
    width: int
    flow: Sequence[bytes] = ()


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))


def to_example(clip: Clip) -> tf.train.Example:
    feature = {
        FRAMES: _bytes(clip.frames),
        LABEL: _int(clip.label),
        LABEL_NAME: _bytes([clip.label_name.encode()]),
        VIDEO_ID: _bytes([clip.video_id.encode()]),
        GROUP: _bytes([clip.group.encode()]),
        CLIP_INDEX: _int(clip.clip_index),
        CLIP_START_FRAME: _int(clip.clip_start_frame),
        NUM_FRAMES: _int(len(clip.frames)),
        FPS: _float(clip.fps),
        HEIGHT: _int(clip.height),
        WIDTH: _int(clip.width),
    }
    if clip.flow:
        feature[FLOW] = _bytes(clip.flow)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize_clip(clip: Clip) -> bytes:
    return to_example(clip).SerializeToString()


def from_example(serialized: bytes) -> Clip:
    """Parses one record back into a :class:`Clip` (eager, for tests and tools)."""
    f = tf.train.Example.FromString(serialized).features.feature

    def one(name, kind):
        values = getattr(f[name], kind).value
        return values[0] if values else None

    return Clip(
        frames=list(f[FRAMES].bytes_list.value),
        flow=list(f[FLOW].bytes_list.value) if FLOW in f else (),
        label=int(one(LABEL, "int64_list")),
        label_name=one(LABEL_NAME, "bytes_list").decode(),
        video_id=one(VIDEO_ID, "bytes_list").decode(),
        group=one(GROUP, "bytes_list").decode(),
        clip_index=int(one(CLIP_INDEX, "int64_list")),
        clip_start_frame=int(one(CLIP_START_FRAME, "int64_list")),
        fps=float(one(FPS, "float_list")),
        height=int(one(HEIGHT, "int64_list")),
        width=int(one(WIDTH, "int64_list")),
    )


def feature_spec(with_flow: bool = False) -> dict:
    """The ``tf.io.parse_example`` spec of the record (frames as a variable-length list)."""
    spec = {
        FRAMES: tf.io.RaggedFeature(tf.string),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        LABEL_NAME: tf.io.FixedLenFeature([], tf.string),
        VIDEO_ID: tf.io.FixedLenFeature([], tf.string),
        GROUP: tf.io.FixedLenFeature([], tf.string, default_value=""),
        CLIP_INDEX: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        CLIP_START_FRAME: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
        FPS: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
    }
    if with_flow:
        spec[FLOW] = tf.io.RaggedFeature(tf.string)
    return spec


def parse_clip(serialized: tf.Tensor, with_flow: bool = False) -> dict:
    """Parses one serialized record (scalar string tensor) into a dict of tensors."""
    return tf.io.parse_single_example(serialized, feature_spec(with_flow))


def parse_clips(serialized: tf.Tensor, with_flow: bool = False) -> dict:
    """Parses a batch of serialized records (string vector); frames come back ragged."""
    return tf.io.parse_example(serialized, feature_spec(with_flow))
