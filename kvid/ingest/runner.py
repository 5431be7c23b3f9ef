"""``run_ingest``: a manifest -> ``<out>/<split>/clips-*.tfrecord``, dataset.json, dead letters.

Atomic by construction: the pipeline writes into ``<out>/.incomplete-<id>/``; only after it
has succeeded are the shards moved into place and ``dataset.json`` written, last. An
interrupted run leaves no shard in ``<out>/<split>/`` and no dataset.json. A killed run does
leave its staging folder; the next run into ``<out>`` deletes it, but only once it can prove
no ingest still writes there: each run holds an exclusive ``flock`` on the lock file in its
staging folder, which the kernel releases when the process dies. Staging folders it cannot
prove abandoned (no lock file, no lock support, object stores) are kept and named in a
warning. Every path goes through :mod:`kvid.files` (Beam's FileSystems for ``gs://``,
``s3://``...), so inputs and outputs on a cluster's storage work with a remote runner.

Every input is accounted for: ``num_inputs = num_videos_with_clips + dead_letters +
num_skipped`` in dataset.json, checked before anything is published.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import platform
import posixpath
import re
import shutil
import socket
import time
import uuid
from typing import Iterable, Sequence

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordSink
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from kvid import dataset as dataset_file
from kvid import files
from kvid.ingest.config import IngestConfig
from kvid.ingest.manifests import Manifest, VideoItem, read_csv, read_folder
from kvid.ingest.transforms import (BUSY_MS_PREFIX, CLIPS, COUNTER_NAMES, DEAD_LETTERS, NAMESPACE,
                                   VIDEOS, ManifestToClips, WriteDeadLetters, write_items)
from kvid.video.flow import check_method

DEAD_LETTERS_JSONL = "dead_letters.jsonl"
SHARD_PREFIX = "clips"
SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
_STAGING_PREFIX = ".incomplete-"
STAGING_LOCK = "kvid-ingest.lock"  # in each staging folder, flock-ed while its run lives

_log = logging.getLogger(__name__)


class NothingToIngest(ValueError):
    """The source holds no video and no dead letter (maybe only skipped entries)."""


# ----------------------------------------------------------------------------- inputs


def as_manifest(source, labels: Sequence[str] | None = None) -> Manifest:
    """A Manifest from a Manifest, VideoItems, a folder ``root/<label>/...`` or a CSV file."""
    if isinstance(source, Manifest):
        return source
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if files.isdir(source):
            return read_folder(source, labels=labels)
        if source.lower().endswith(".csv") and files.size(source) is not None:
            return read_csv(source, labels=labels)
        raise ValueError(f"source must be a folder, a .csv manifest, a Manifest or VideoItems. "
                         f"Received: {source!r}")
    items = tuple(source)
    if not all(isinstance(it, VideoItem) for it in items):
        raise ValueError("source items must all be VideoItem instances.")
    label_map = tuple(labels) if labels is not None else tuple(sorted({it.label for it in items}))
    return Manifest(items, label_map)


def pipeline_options(pipeline_args: Sequence[str] | None, workers: int = 1) -> PipelineOptions:
    """Beam options from pass-through args; DirectRunner with ``workers`` processes by default.

    Options the user gave (``--runner``, ``--direct_num_workers``, ...) win over ours.
    """
    args = list(pipeline_args or [])
    given = {a.split("=")[0] for a in args if a.startswith("--")}
    options = PipelineOptions(args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # DirectRunner's engine, without DirectRunner's first try of Prism (a binary it
        # downloads, then falls back from when offline).
        standard.runner = "FnApiRunner"
    if standard.runner in ("FnApiRunner", "DirectRunner", "SwitchingDirectRunner"):
        direct = options.view_as(DirectOptions)
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = workers
        if "--direct_running_mode" not in given:
            multi = direct.direct_num_workers != 1
            direct.direct_running_mode = "multi_processing" if multi else "in_memory"
    return options


_SECRET = re.compile(r"secret|key_id|token|password|credential", re.IGNORECASE)


def redacted(pipeline_args: Sequence[str]) -> list[str]:
    """The options with credentials (``--s3_secret_access_key``...) masked: dataset.json is
    shared with everyone who reads the data."""
    out, hide_next = [], False
    for arg in pipeline_args:
        name, eq, _ = arg.partition("=")
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg.startswith("--") and _SECRET.search(name):
            out.append(f"{name}=***" if eq else name)
            hide_next = not eq
        else:
            out.append(arg)
    return out


# ----------------------------------------------------------------------------- files


def _check_output(out_dir: str, overwrite: bool) -> list[str]:
    """What an earlier run left in ``out_dir``; refuses a non-empty one without overwrite."""
    existing = [n for n in files.listdir(out_dir) if not n.startswith(_STAGING_PREFIX)]
    if existing and not overwrite:
        raise FileExistsError(f"output {out_dir} is not empty ({', '.join(sorted(existing)[:5])}"
                              f"{', ...' if len(existing) > 5 else ''}); pass overwrite=True "
                              "(--overwrite) to replace the dataset in it.")
    return existing


def _remove_previous(out_dir: str, splits: Iterable[str]) -> None:
    """Removes the pieces of an earlier dataset in ``out_dir``, nothing else (staging folders
    are :func:`clean_stale_staging`'s, which knows which ones are still in use)."""
    old_splits = set(splits)
    path = files.join(out_dir, dataset_file.FILE)
    if files.exists(path):
        try:
            old_splits |= set(json.loads(files.read_text(path)).get("shards", {}))
        except (ValueError, OSError):
            pass
    names = [dataset_file.FILE, DEAD_LETTERS_JSONL, *sorted(old_splits)]
    files.remove([files.join(out_dir, n) for n in names])


# ----------------------------------------------------------------------------- staging


def _lock_stage(stage: str) -> int | None:
    """Takes this run's lock in its new staging folder; returns the descriptor to keep open
    for the whole run (None for object stores, which have no locks).

    The lock is taken on a private name, then renamed into place, so no other run can ever
    find the lock file unlocked while this one is alive.
    """
    if files.is_remote(stage):
        return None
    tmp = os.path.join(stage, f".{STAGING_LOCK}.{os.getpid()}")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:  # a filesystem without locks: the file still says who wrote here
        _log.warning("ingest: cannot lock %s (%s); a later run will not delete this staging "
                     "folder if this run is killed", stage, e)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": started}).encode())
    os.rename(tmp, os.path.join(stage, STAGING_LOCK))
    return fd


def clean_stale_staging(out_dir: str) -> list[str]:
    """Deletes the staging folders of killed runs in ``out_dir``; returns those it kept
    because it cannot prove them abandoned (also logged as a warning, with their paths).

    A folder is deleted only when its lock file can be locked, i.e. the run that created
    it is dead; a live run's lock makes it skip the folder silently. No lock file (a run of
    an older kvid, or one that has just created the folder), no lock support or an object
    store: kept and named, for the user to delete.
    """
    kept = []
    for name in sorted(n for n in files.listdir(out_dir) if n.startswith(_STAGING_PREFIX)):
        path = files.join(out_dir, name)
        if files.is_remote(path):
            kept.append(path)
            continue
        try:
            fd = os.open(os.path.join(path, STAGING_LOCK), os.O_RDONLY)
        except FileNotFoundError:
            if os.path.isdir(path):  # else deleted meanwhile by another run's cleanup
                kept.append(path)
            continue
        except OSError:
            kept.append(path)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running ingest writes here
            except OSError:
                kept.append(path)
                continue
            shutil.rmtree(path, ignore_errors=True)
            _log.info("ingest: deleted %s, left by a killed run", path)
        finally:
            os.close(fd)
    if kept:
        _log.warning("ingest: kept %d staging folder(s) that may belong to a running ingest: "
                     "%s; delete them once no ingest writes to %s", len(kept),
                     ", ".join(kept), out_dir)
    return kept


# ----------------------------------------------------------------------------- pipeline


def _split_order(items: Sequence[VideoItem], config: IngestConfig) -> list[str]:
    present = {it.split for it in items}
    ordered = [s for s in config.ratios if s in present]
    return ordered + sorted(present - set(ordered))


class _CappedTFRecordSink(_TFRecordSink):
    """Beam's TFRecord sink, starting a new file once one holds ``max_bytes``.

    ``WriteToTFRecord`` does not pass FileBasedSink's ``max_bytes_per_shard`` through.
    """

    def __init__(self, prefix: str, suffix: str, compression: CompressionTypes, max_bytes: int,
                 skip_if_empty: bool = False):
        super().__init__(prefix, BytesCoder(), suffix, 0, SHARD_TEMPLATE, compression)
        self.max_bytes_per_shard = max_bytes
        self.skip_if_empty = skip_if_empty


def write_shards(prefix: str, config: IngestConfig,
                 skip_if_empty: bool = False) -> beam.PTransform:
    """Serialized records -> ``<prefix>-SSSSS-of-NNNNN.tfrecord[.gz]`` files.

    ``num_shards=0``: each worker writes the records it decoded into its own files (a new one
    every ``shard_mb``), so the records never travel between processes (measured faster
    with 2 workers); the file count then follows the runner's bundles. ``num_shards=N``:
    exactly N files, which costs a shuffle of every record to N writers. ``skip_if_empty``:
    no file for a split without records (object stores: Beam's S3 writer fails on empty ones).
    """
    gzip = config.compression == "GZIP"
    suffix = ".tfrecord.gz" if gzip else ".tfrecord"
    compression = CompressionTypes.GZIP if gzip else CompressionTypes.UNCOMPRESSED
    if config.num_shards:
        return beam.io.WriteToTFRecord(prefix, file_name_suffix=suffix,
                                       num_shards=config.num_shards,
                                       shard_name_template=SHARD_TEMPLATE,
                                       compression_type=compression)
    return beam.io.Write(_CappedTFRecordSink(prefix, suffix, compression,
                                             int(config.shard_mb * 2 ** 20), skip_if_empty))


def _count_keys(video: dict):
    yield ("videos", video["split"], video["label"]), 1
    yield ("clips", video["split"], video["label"]), video["clips"]
    yield ("frames", video["split"], video["label"]), video["frames"]


def _dead_letter_keys(dead: dict):
    yield ("dead_letters", dead["reason"]), 1
    if dead.get("label") is not None:
        yield ("dead_letter_labels", dead["label"]), 1


def build_pipeline(pipeline: beam.Pipeline, manifest: Manifest, stage: str,
                   config: IngestConfig, splits: Sequence[str]) -> None:
    """Wires the ingest graph: VideosToClips, then per-split shards, dead letters, counts."""
    index = {s: i for i, s in enumerate(splits)}
    remote = files.is_remote(stage)  # no empty files there: Beam's S3 writer fails on them
    items = write_items(manifest.items, files.join(stage, "items.jsonl")) \
        if manifest.items else None  # an empty text file is no object on S3 (see above)
    out = pipeline | "ManifestToClips" >> ManifestToClips(manifest, config, items)
    by_split = out[CLIPS] | "BySplit" >> beam.Partition(lambda kv, n: index[kv[0]], len(splits))
    for split in splits:
        _ = (by_split[index[split]]
             | f"Records[{split}]" >> beam.Values()
             | f"WriteShards[{split}]" >> write_shards(files.join(stage, split, SHARD_PREFIX),
                                                       config, skip_if_empty=remote))

    dead = out[DEAD_LETTERS]
    _ = dead | "WriteDeadLetters" >> WriteDeadLetters(files.join(stage, DEAD_LETTERS_JSONL),
                                                      skip_if_empty=remote)

    video_counts = out[VIDEOS] | "VideoCounts" >> beam.FlatMap(_count_keys)
    dead_counts = dead | "DeadLetterCounts" >> beam.FlatMap(_dead_letter_keys)
    _ = ((video_counts, dead_counts)
         | "AllCounts" >> beam.Flatten()
         | "SumCounts" >> beam.CombinePerKey(sum)
         | "CountsToList" >> beam.combiners.ToList()
         | "CountsJson" >> beam.Map(lambda kv: json.dumps(sorted([list(k), n] for k, n in kv)))
         | "WriteCounts" >> beam.io.WriteToText(files.join(stage, "counts.json"),
                                                shard_name_template="", num_shards=1))


def _metric_value(result):
    try:
        value = result.committed
    except Exception:  # noqa: BLE001 -- some runners only report attempted values
        value = None
    return value if value is not None else result.attempted


def _metrics(result) -> tuple[dict[str, int], float]:
    """The ingest counters summed over steps, and the longest time one worker spent
    processing videos in seconds (0 if the runner reports no metrics)."""
    totals = {name: 0 for name in COUNTER_NAMES}
    busy_ms: dict[str, int] = {}
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    except (NotImplementedError, AttributeError):
        return totals, 0.0
    for c in found:
        name, value = c.key.metric.name, int(_metric_value(c) or 0)
        target = busy_ms if name.startswith(BUSY_MS_PREFIX) else totals
        target[name] = target.get(name, 0) + value
    return totals, max(busy_ms.values(), default=0) / 1000


def library_versions() -> dict[str, str]:
    import av
    import cv2
    import importlib.metadata

    import numpy

    import kvid

    return {"kvid": kvid.__version__, "python": platform.python_version(),
            "apache_beam": beam.__version__, "tensorflow": importlib.metadata.version("tensorflow"), "av": av.__version__,
            "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
            "opencv": cv2.__version__, "numpy": numpy.__version__}


def _by_reason(entries: Iterable[dict]) -> dict[str, int]:
    found: dict[str, int] = {}
    for e in entries:
        found[e["reason"]] = found.get(e["reason"], 0) + 1
    return dict(sorted(found.items()))


def input_counts(manifest: Manifest, num_videos_with_clips: int, dead_letter_reasons: dict,
                 dead_letter_labels: dict) -> dict:
    """The accounting fields of dataset.json (kvid ingest and the TFX ExampleGen): every input
    is a video with clips, a dead letter or a skipped entry. Raises RuntimeError when the sum
    does not hold: something was lost, and publishing a short dataset would hide it."""
    dead = sum(dead_letter_reasons.values())
    skipped = [dict(s) for s in manifest.skipped]
    counts = {
        "num_inputs": manifest.num_inputs,
        "num_videos_with_clips": num_videos_with_clips,
        "dead_letters": dead,
        "dead_letter_reasons": dict(sorted(dead_letter_reasons.items())),
        "dead_letter_labels": dict(sorted(dead_letter_labels.items())),
        "num_skipped": len(skipped),
        "skipped_reasons": _by_reason(skipped),
        "skipped": skipped,
    }
    if num_videos_with_clips + dead + len(skipped) != manifest.num_inputs:
        raise RuntimeError(f"ingest lost inputs: {totals_line(counts)} does not add up")
    return counts


def totals_line(dataset: dict) -> str:
    """``inputs: N = V videos with clips + D dead letters + S skipped``, from dataset.json."""
    return (f"inputs: {dataset['num_inputs']} = {dataset['num_videos_with_clips']} videos with "
            f"clips + {dataset['dead_letters']} dead letters + {dataset['num_skipped']} skipped")


def _dataset_json(manifest: Manifest, config: IngestConfig, counts: list, shard_paths: dict,
                  counters: dict, source: str, pipeline_args: Sequence[str]) -> dict:
    splits = {}
    for split in shard_paths:
        per = {kind: {label: 0 for label in manifest.labels}
               for kind in ("videos", "clips", "frames")}
        for (kind, *key), n in counts:
            if kind in per and key[0] == split:
                per[kind][key[1]] = n
        splits[split] = {"videos": per["videos"], "clips": per["clips"],
                         "num_videos": sum(per["videos"].values()),
                         "num_clips": sum(per["clips"].values()),
                         "num_frames_decoded": sum(per["frames"].values())}
    reasons = {key[0]: n for (kind, *key), n in counts if kind == "dead_letters"}
    dead_labels = {key[0]: n for (kind, *key), n in counts if kind == "dead_letter_labels"}
    accounting = input_counts(manifest, sum(s["num_videos"] for s in splits.values()),
                              reasons, dead_labels)
    return dataset_file.describe(
        labels=manifest.labels, config=config, splits=splits, shards=shard_paths,
        accounting=accounting, compression=config.compression,
        params={"source": source, "pipeline_args": redacted(pipeline_args)}, counters=counters,
        versions=library_versions(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def run_ingest(
    items_or_source,
    out_dir: str,
    config: IngestConfig = IngestConfig(),
    pipeline_args: Sequence[str] | None = None,
    overwrite: bool = False,
    *,
    labels: Sequence[str] | None = None,
) -> dict:
    """Runs the ingest pipeline and returns the dataset.json content.

    ``items_or_source``: a :class:`Manifest`, VideoItems, a folder ``root/<label>/...`` or a
    CSV manifest. Items without a split get one by group hash (``config.split_ratios``).
    ``pipeline_args``: Beam options passed through (``--runner``, ``--direct_num_workers``).
    Staging folders of killed runs in ``out_dir`` are deleted first (:func:`clean_stale_staging`).
    Raises FileExistsError when ``out_dir`` holds files and ``overwrite`` is False, and
    NothingToIngest when the source has no video and no dead letter.
    """
    if not isinstance(config, IngestConfig):
        raise ValueError(f"config must be an IngestConfig. Received: {type(config).__name__}")
    if config.flow != "none":
        check_method(config.flow)
    source = os.fspath(items_or_source) if isinstance(items_or_source, (str, os.PathLike)) \
        else type(items_or_source).__name__
    options = pipeline_options(pipeline_args, config.workers)
    files.configure(options)  # this process lists, stages and publishes on remote paths too
    manifest = as_manifest(items_or_source, labels).with_splits(config.ratios, config.seed)
    if not manifest.items and not manifest.dead_letters:
        skipped = f" (skipped {len(manifest.skipped)}: {_by_reason(manifest.skipped)})" \
            if manifest.skipped else ""
        raise NothingToIngest(f"no videos found in {source}{skipped}")
    out_dir = os.fspath(out_dir)
    _check_output(out_dir, overwrite)
    clean_stale_staging(out_dir)
    splits = _split_order(manifest.items, config)
    stage = files.join(out_dir, _STAGING_PREFIX + uuid.uuid4().hex[:12])
    files.makedirs(stage)
    lock = None
    _log.info("ingest: %d videos (%d rejected by the manifest, %d skipped), splits %s -> %s",
              len(manifest.items), len(manifest.dead_letters), len(manifest.skipped), splits,
              out_dir)
    try:
        lock = _lock_stage(stage)
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, manifest, stage, config, splits)
        started = time.monotonic()
        result = pipeline.run()
        state = result.wait_until_finish()
        if state not in (None, beam.runners.runner.PipelineState.DONE):
            raise RuntimeError(f"ingest pipeline ended in state {state}")
        counters, busy_s = _metrics(result)
        timing = {"pipeline_s": round(time.monotonic() - started, 3), "busy_s": busy_s}
        counts = json.loads(files.read_text(files.join(stage, "counts.json")) or "[]")
        shard_paths = _staged_shards(stage, splits)
        # Built (and the input sum checked) before anything moves into out_dir.
        dataset = _dataset_json(manifest, config, counts, shard_paths, counters, source,
                                pipeline_args or [])
        _publish(stage, out_dir, shard_paths, overwrite)
        dataset["timing"] = timing
        files.move(dataset_file.save(dataset, stage), dataset_file.path(out_dir))  # last: "done"
    finally:
        files.remove([stage])
        if lock is not None:
            os.close(lock)  # after the folder is gone: no other run may take it for stale
    _log.info("ingest counters: %s", " ".join(f"{k}={v}" for k, v in counters.items()))
    print("ingest: " + " ".join(f"{k}={v}" for k, v in counters.items())
          + f" dead_letters={dataset['dead_letters']} -> {out_dir}")
    return dataset


def _staged_shards(stage: str, splits: Sequence[str]) -> dict[str, list[str]]:
    """``{split: ["<split>/clips-...", ...]}`` of the shards the pipeline wrote in staging."""
    shard_paths = {}
    for split in splits:
        found = FileSystems.match([files.join(stage, split, SHARD_PREFIX + "-*")])[0].metadata_list
        names = sorted(posixpath.basename(m.path.replace(os.sep, "/")) for m in found)
        shard_paths[split] = [f"{split}/{n}" for n in names]
    return shard_paths


def _publish(stage: str, out_dir: str, shard_paths: dict[str, list[str]],
             overwrite: bool) -> None:
    """Moves finished shards and dead letters from staging into ``out_dir``."""
    if overwrite:
        _remove_previous(out_dir, shard_paths)
    for split, paths in shard_paths.items():
        files.makedirs(files.join(out_dir, split))
        FileSystems.rename([files.join(stage, *p.split("/")) for p in paths],
                           [files.join(out_dir, *p.split("/")) for p in paths])
    dead_letters = files.join(stage, DEAD_LETTERS_JSONL)
    if files.size(dead_letters) is not None:  # on an object store, only when there are some
        files.move(dead_letters, files.join(out_dir, DEAD_LETTERS_JSONL))
