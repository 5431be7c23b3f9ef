"""The clip record: the one place that knows kvid's tf.train.Example features.

One ``tf.train.Example`` per clip (not a SequenceExample) so that every TFX component reads
it without special cases. Ingest writes it with :func:`serialize_clip`; tf.data, the
SavedModel's ``serving_examples`` signature and the tests read it with :func:`parse_clips`
or :func:`feature_spec`. Changing the record means changing this file and nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FRAMES = "frames"  # bytes_list: T JPEG-encoded RGB frames, in time order
FLOW = "flow"  # bytes_list: T-1 JPEG images, flow x in R, y in G, B = 128 (optional)
# bytes_list: T-1 images as FLOW, image i the motion from frame i+1 back to frame i (ingest
# --flow-backward; Simonyan & Zisserman's bi-directional stacks read it)
FLOW_BACKWARD = "flow_backward"
LABEL = "label"  # int64: index into the label map (dataset.json "labels")
LABEL_NAME = "label_name"  # bytes
VIDEO_ID = "video_id"  # bytes: unique per source video
GROUP = "group"  # bytes: the unit that must not straddle splits (actor, UCF101 gNN)
CLIP_INDEX = "clip_index"  # int64: clip (or chunk) number within its video
CLIP_START_FRAME = "clip_start_frame"  # int64: index of the first frame at the sampled fps
# Video-level records (ingest layout "video"): the whole video is one record, or chunks of it
# that overlap; a reader samples over the whole video with these two (0 in clip windows).
VIDEO_FRAMES = "video_frames"  # int64: frames of the whole video at the sampled fps
CHUNK_STRIDE = "chunk_stride"  # int64: frames between chunk starts; 0 = not chunked
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
    flow_backward: Sequence[bytes] = ()
    video_frames: int = 0
    chunk_stride: int = 0


@functools.cache
def _example_class():
    """``tf.train.Example`` rebuilt from its .proto in a private descriptor pool.

    Same wire format as TensorFlow's class, without importing TensorFlow: a Beam ingest
    worker that only writes records starts ~25 s sooner (each worker is a new process).
    """
    fd = descriptor_pb2.FileDescriptorProto(name="kvid/tf_example.proto", package="tensorflow",
                                            syntax="proto3")
    label = descriptor_pb2.FieldDescriptorProto
    for name, kind in (("BytesList", label.TYPE_BYTES), ("FloatList", label.TYPE_FLOAT),
                       ("Int64List", label.TYPE_INT64)):
        value = fd.message_type.add(name=name).field.add(name="value", number=1, type=kind,
                                                         label=label.LABEL_REPEATED)
        if kind != label.TYPE_BYTES:
            value.options.packed = True
    feature = fd.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), 1):
        feature.field.add(name=name, number=number, type=label.TYPE_MESSAGE, oneof_index=0,
                          label=label.LABEL_OPTIONAL,
                          type_name=".tensorflow." + name.title().replace("_", ""))
    features = fd.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=label.TYPE_STRING, label=label.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=label.TYPE_MESSAGE, label=label.LABEL_OPTIONAL,
                    type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, type=label.TYPE_MESSAGE, label=label.LABEL_REPEATED,
                       type_name=".tensorflow.Features.FeatureEntry")
    fd.message_type.add(name="Example").field.add(
        name="features", number=1, type=label.TYPE_MESSAGE, label=label.LABEL_OPTIONAL,
        type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def to_example(clip: Clip):
    """The clip as an Example message (wire-compatible with ``tf.train.Example``)."""
    example = _example_class()()
    feature = example.features.feature
    ints = {LABEL: clip.label, CLIP_INDEX: clip.clip_index, CLIP_START_FRAME: clip.clip_start_frame,
            NUM_FRAMES: len(clip.frames), HEIGHT: clip.height, WIDTH: clip.width}
    if clip.video_frames:  # clip-window records stay as they were
        ints.update({VIDEO_FRAMES: clip.video_frames, CHUNK_STRIDE: clip.chunk_stride})
    strings = {LABEL_NAME: clip.label_name, VIDEO_ID: clip.video_id, GROUP: clip.group}
    feature[FRAMES].bytes_list.value.extend(clip.frames)
    for name, value in ints.items():
        feature[name].int64_list.value.append(int(value))
    for name, value in strings.items():
        feature[name].bytes_list.value.append(value.encode())
    feature[FPS].float_list.value.append(float(clip.fps))
    if clip.flow:
        feature[FLOW].bytes_list.value.extend(clip.flow)
    if clip.flow_backward:
        feature[FLOW_BACKWARD].bytes_list.value.extend(clip.flow_backward)
    return example


def serialize_clip(clip: Clip) -> bytes:
    return to_example(clip).SerializeToString()


def from_example(serialized: bytes) -> Clip:
    """Parses one record back into a :class:`Clip` (eager, for tests and tools)."""
    f = _example_class().FromString(serialized).features.feature

    def one(name, kind):
        values = getattr(f[name], kind).value
        return values[0] if values else None

    return Clip(
        frames=list(f[FRAMES].bytes_list.value),
        flow=list(f[FLOW].bytes_list.value) if FLOW in f else (),
        flow_backward=list(f[FLOW_BACKWARD].bytes_list.value) if FLOW_BACKWARD in f else (),
        label=int(one(LABEL, "int64_list")),
        label_name=one(LABEL_NAME, "bytes_list").decode(),
        video_id=one(VIDEO_ID, "bytes_list").decode(),
        group=one(GROUP, "bytes_list").decode(),
        clip_index=int(one(CLIP_INDEX, "int64_list")),
        clip_start_frame=int(one(CLIP_START_FRAME, "int64_list")),
        fps=float(one(FPS, "float_list")),
        height=int(one(HEIGHT, "int64_list")),
        width=int(one(WIDTH, "int64_list")),
        video_frames=int(one(VIDEO_FRAMES, "int64_list") or 0) if VIDEO_FRAMES in f else 0,
        chunk_stride=int(one(CHUNK_STRIDE, "int64_list") or 0) if CHUNK_STRIDE in f else 0,
    )


def feature_spec(with_flow: bool = False, with_backward: bool = False) -> dict:
    """The ``tf.io.parse_example`` spec of the record (frames as a variable-length list);
    ``with_flow``/``with_backward``: also the forward/backward flow images."""
    import tensorflow as tf

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
        VIDEO_FRAMES: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        CHUNK_STRIDE: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }
    if with_flow:
        spec[FLOW] = tf.io.RaggedFeature(tf.string)
    if with_backward:
        spec[FLOW_BACKWARD] = tf.io.RaggedFeature(tf.string)
    return spec


def parse_clip(serialized, with_flow: bool = False, with_backward: bool = False) -> dict:
    """Parses one serialized record (scalar string tensor) into a dict of tensors."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, feature_spec(with_flow, with_backward))


def parse_clips(serialized, with_flow: bool = False, with_backward: bool = False) -> dict:
    """Parses a batch of serialized records (string vector); frames come back ragged."""
    import tensorflow as tf

    return tf.io.parse_example(serialized, feature_spec(with_flow, with_backward))
