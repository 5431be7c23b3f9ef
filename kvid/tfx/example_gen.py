"""VideoExampleGen: a file-based TFX ExampleGen whose executor runs kvid's ingest PTransform.

``input_base`` is a folder ``root/<label>/<video>`` or a CSV manifest; the executor decodes
the videos with :class:`kvid.ingest.VideosToClips` (the same transform as ``kvid ingest``)
and TFX writes the standard Examples artifact (gzip TFRecords, ``Split-<name>/``).

Splits: TFX's own hash partitioning on the ``group`` feature (output_config
``partition_feature_name="group"``), so a group never straddles splits. Dead letters go to
``<artifact>/DeadLetters/`` and their count is the artifact's ``dead_letters`` custom
property; ``<artifact>/dataset.json`` carries the label map so the Trainer and tf.data read
the artifact like ``kvid ingest`` output, and the same accounting (``num_inputs`` = videos
with clips + dead letters + skipped, the skipped list), checked the same way.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from google.protobuf import any_pb2, struct_pb2
from google.protobuf import json_format
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from kvid import dataset as dataset_file
from kvid import schema
from kvid.data.sources import TFX_SPLIT_PREFIX
from kvid.ingest import IngestConfig
from kvid.ingest.manifests import Manifest
from kvid.ingest.runner import as_manifest, input_counts
from kvid.ingest.transforms import CLIPS, DEAD_LETTERS, ManifestToClips, WriteDeadLetters

DEAD_LETTERS_DIR = "DeadLetters"
_DEAD_LETTER_KEY = "_kvid_dead_letter_prefix"


def ingest_custom_config(config: IngestConfig) -> example_gen_pb2.CustomConfig:
    """Packs the ingest parameters into ExampleGen's ``custom_config`` (a Struct in an Any)."""
    struct = struct_pb2.Struct()
    struct.update({k: v for k, v in config.to_json().items() if v is not None})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def _ingest_config(exec_properties: dict[str, Any]) -> IngestConfig:
    custom = example_gen_pb2.CustomConfig()
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if raw:
        proto_utils.json_to_proto(raw, custom)
    values: dict[str, Any] = {}
    if custom.HasField("custom_config"):
        struct = struct_pb2.Struct()
        custom.custom_config.Unpack(struct)
        values = json_format.MessageToDict(struct)
    for key in ("clip_frames", "jpeg_quality", "workers", "num_shards", "segments", "snippet",
                "decode_threads", "seed", "short_side", "stride", "max_clips", "max_frames",
                "chunk_overlap"):
        if values.get(key) is not None:
            values[key] = int(values[key])
    if values.get("size"):
        values["size"] = tuple(int(v) for v in values["size"])
    values.pop("split_ratios", None)  # TFX partitions the splits itself
    return IngestConfig(**values)


def _manifest(exec_properties: dict[str, Any]):
    return as_manifest(exec_properties[standard_component_specs.INPUT_BASE_KEY])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def VideosToExamples(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                     split_pattern: str, manifest: Manifest | None = None
                     ) -> beam.pvalue.PCollection:
    """All videos of ``input_base`` (or of ``manifest``, read once by the executor) ->
    tf.train.Example clip records, which ExampleGen partitions into splits and writes;
    ``split_pattern`` is "*" (one input split)."""
    manifest = manifest if manifest is not None else _manifest(exec_properties)
    out = pipeline | "ManifestToClips" >> ManifestToClips(manifest,
                                                          _ingest_config(exec_properties))
    path = exec_properties.get(_DEAD_LETTER_KEY)
    if path:
        _ = out[DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(path)
    return (out[CLIPS]
            | "Records" >> beam.Values()
            | "ToExample" >> beam.Map(tf.train.Example.FromString))


def split_counts(uri: str, split: str, labels) -> dict:
    """Videos and clips per label in ``<uri>/Split-<split>/``, as ``kvid ingest`` records them.

    Counted from the records TFX wrote (it assigns the splits by hash after ingest), so the
    Trainer knows the epoch length exactly.
    """
    files = tf.io.gfile.glob(os.path.join(uri, f"{TFX_SPLIT_PREFIX}{split}", "*"))
    spec = {k: v for k, v in schema.feature_spec().items() if k in (schema.LABEL, schema.VIDEO_ID)}
    clips = [0] * len(labels)
    videos: list[set] = [set() for _ in labels]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(1024)
    for batch in records.map(lambda r: tf.io.parse_example(r, spec)):
        for label, video in zip(batch[schema.LABEL].numpy(), batch[schema.VIDEO_ID].numpy()):
            clips[label] += 1
            videos[label].add(video)
    per_video = {name: len(v) for name, v in zip(labels, videos)}
    per_clip = dict(zip(labels, clips))
    return {"videos": per_video, "clips": per_clip, "num_videos": sum(per_video.values()),
            "num_clips": sum(clips)}


class VideoExampleGenExecutor(base_example_gen_executor.BaseExampleGenExecutor):
    """ExampleGen executor over raw videos; adds dead letters, the label map and the input
    accounting. The manifest is read once per run, so what is counted is what was ingested."""

    _manifest: Manifest | None = None

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        if self._manifest is None:
            return VideosToExamples
        return functools.partial(VideosToExamples, manifest=self._manifest)

    def Do(self, input_dict, output_dict, exec_properties):
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        dead_dir = os.path.join(examples.uri, DEAD_LETTERS_DIR)
        tf.io.gfile.makedirs(dead_dir)
        props = {**exec_properties,
                 _DEAD_LETTER_KEY: os.path.join(dead_dir, "dead_letters.jsonl")}
        manifest = self._manifest = _manifest(exec_properties)
        super().Do(input_dict, output_dict, props)

        reasons: dict[str, int] = {}
        dead_labels: dict[str, int] = {}
        for path in tf.io.gfile.glob(os.path.join(dead_dir, "*.jsonl")):
            with tf.io.gfile.GFile(path) as f:
                for line in f:
                    if line.strip():
                        d = json.loads(line)
                        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
                        if d.get("label") is not None:
                            dead_labels[d["label"]] = dead_labels.get(d["label"], 0) + 1
        dead = sum(reasons.values())
        examples.set_int_custom_property("dead_letters", dead)
        config = _ingest_config(exec_properties)
        splits = artifact_utils.decode_split_names(examples.split_names)
        counts = {s: split_counts(examples.uri, s, manifest.labels) for s in splits}
        accounting = input_counts(manifest, sum(c["num_videos"] for c in counts.values()),
                                  reasons, dead_labels)
        info = dataset_file.describe(
            labels=manifest.labels, config=config, splits=counts,
            shards={s: [f"{TFX_SPLIT_PREFIX}{s}/*"] for s in splits}, accounting=accounting,
            compression="GZIP",
            params={"source": exec_properties[standard_component_specs.INPUT_BASE_KEY]})
        dataset_file.save(info, examples.uri)
        examples.set_string_custom_property("labels", json.dumps(info["labels"]))


def VideoExampleGen(input_base: str, ingest: IngestConfig, *,
                    split_buckets: dict[str, int] | None = None) -> FileBasedExampleGen:
    """The ExampleGen component over a folder of raw videos ``input_base/<label>/...``.

    ``split_buckets``: output splits by hash of ``group`` (default train 3 : eval 1).
    """
    buckets = split_buckets or {"train": 3, "eval": 1}
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="all", pattern="*")])
    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
        splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b)
                for n, b in buckets.items()],
        partition_feature_name=schema.GROUP))
    return FileBasedExampleGen(
        input_base=input_base, input_config=input_config, output_config=output_config,
        custom_config=ingest_custom_config(ingest),
        custom_executor_spec=executor_spec.BeamExecutorSpec(VideoExampleGenExecutor),
    ).with_id("VideoExampleGen")
