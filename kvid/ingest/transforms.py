"""Beam PTransforms of ingest: videos -> serialized clip records (+ dead letters, + counts).

:class:`VideosToClips` only decodes and builds records; it writes nothing, so ``kvid ingest``
(:mod:`kvid.ingest.runner`) and the TFX ExampleGen executor (which writes its own
``Split-<name>/`` files) share it unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import traceback
from typing import Sequence

import apache_beam as beam
from apache_beam import pvalue

from kvid.ingest.clips import TOO_SHORT, video_to_clips
from kvid.ingest.config import IngestConfig
from kvid.ingest.manifests import UNKNOWN_LABEL, Manifest, VideoItem, dead_letter
from kvid.schema import serialize_clip
from kvid.video.decode import VideoError
from kvid.video.flow import make_flow_fn
from kvid.video.sampling import TooShortError

NAMESPACE = "kvid.ingest"
CLIPS = "clips"  # (split, serialized clip record bytes)
DEAD_LETTERS = "dead_letters"  # {"path", "reason", "error", "label"}
VIDEOS = "videos"  # {"split", "label", "clips", "frames"}: one per video that gave clips
INTERNAL_ERROR = "internal_error"  # dead-letter reason for an unexpected exception
COUNTER_NAMES = ("videos_ok", "videos_rejected", "clips", "frames")
BUSY_MS_PREFIX = "busy_ms_pid"  # + worker pid: milliseconds spent processing videos

_log = logging.getLogger(__name__)


@beam.typehints.with_input_types(VideoItem)
class _VideoToClipsFn(beam.DoFn):
    """Decodes one video into its clips; any failure becomes one dead letter, never a crash."""

    def __init__(self, config: IngestConfig, labels: Sequence[str], log_every_s: float = 10.0):
        self._config = config
        self._label_index = {name: i for i, name in enumerate(labels)}
        self._log_every_s = log_every_s
        self._counters = {name: beam.metrics.Metrics.counter(NAMESPACE, name)
                          for name in COUNTER_NAMES}

    def setup(self):
        self._flow_fn = None if self._config.flow == "none" else make_flow_fn(self._config.flow)
        self._seen = {"videos": 0, "clips": 0, "frames": 0}
        # Time this worker process spends in process() (downstream writes included, they run
        # fused): the longest worker gives throughput without start-up, which dominates
        # small runs.
        self._busy_ms = beam.metrics.Metrics.counter(NAMESPACE, f"{BUSY_MS_PREFIX}{os.getpid()}")
        self._last_log = time.monotonic()

    def process(self, item: VideoItem):
        start = time.perf_counter()
        try:
            yield from self._process(item)
        finally:
            self._busy_ms.inc(int((time.perf_counter() - start) * 1000))

    def _process(self, item: VideoItem):
        try:
            if item.label not in self._label_index:
                raise KeyError(f"label {item.label!r} not in the label map")
            clips, frames = video_to_clips(item, self._label_index[item.label], self._config,
                                           self._flow_fn)
        except VideoError as e:
            yield self._reject(item, e.reason, e.message)
            return
        except TooShortError as e:
            yield self._reject(item, TOO_SHORT, str(e))
            return
        except KeyError as e:
            yield self._reject(item, UNKNOWN_LABEL, str(e.args[0]))
            return
        except Exception as e:  # noqa: BLE001 -- losing nothing: unexpected errors are counted too
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            yield self._reject(item, INTERNAL_ERROR, tb)
            return
        if not clips:  # cannot happen for a decoded video; kept so the count identity holds
            yield self._reject(item, TOO_SHORT, "no clip")
            return
        for clip in clips:
            yield (item.split, serialize_clip(clip))
        self._counters["videos_ok"].inc()
        self._counters["clips"].inc(len(clips))
        self._counters["frames"].inc(frames)
        yield pvalue.TaggedOutput(VIDEOS, {"split": item.split, "label": item.label,
                                           "clips": len(clips), "frames": frames})
        self._progress(len(clips), frames)

    def _reject(self, item: VideoItem, reason: str, error: str):
        self._counters["videos_rejected"].inc()
        return pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(item.path, reason, error,
                                                             item.label))

    def _progress(self, clips: int, frames: int) -> None:
        self._seen["videos"] += 1
        self._seen["clips"] += clips
        self._seen["frames"] += frames
        now = time.monotonic()
        if now - self._last_log >= self._log_every_s:
            self._last_log = now
            _log.info("ingest worker: %(videos)d videos, %(clips)d clips, %(frames)d frames",
                      self._seen)


@beam.typehints.with_input_types(VideoItem)
class VideosToClips(beam.PTransform):
    """PCollection[VideoItem] -> tagged outputs ``clips``, ``dead_letters``, ``videos``.

    ``clips``: ``(split, serialized tf.Example)`` per clip (kvid.schema record);
    ``dead_letters``: ``{"path", "reason", "error", "label"}`` per video that gave no clip;
    ``videos``: ``{"split", "label", "clips", "frames"}`` per video that did.
    Every input ends in exactly one of ``videos`` or ``dead_letters``.

    Example::

        out = items | VideosToClips(IngestConfig(fps=5, size=(112, 112)), labels)
        out.clips | beam.Values() | beam.io.WriteToTFRecord(...)
    """

    def __init__(self, config: IngestConfig, labels: Sequence[str], *, reshuffle: bool = True):
        super().__init__()
        if not labels:
            raise ValueError("labels must be a non-empty list of label names.")
        self._config = config
        self._labels = tuple(labels)
        self._reshuffle = reshuffle

    def expand(self, items):
        if self._reshuffle:  # spread videos over workers: one Create bundle would stay on one
            items = items | "SpreadVideos" >> beam.Reshuffle()
        return items | "DecodeToClips" >> beam.ParDo(
            _VideoToClipsFn(self._config, self._labels)).with_outputs(
                DEAD_LETTERS, VIDEOS, main=CLIPS)


class ManifestToClips(beam.PTransform):
    """Pipeline root: a :class:`Manifest` -> ``{"clips", "dead_letters", "videos"}``.

    :class:`VideosToClips` over the manifest's items, with the inputs the manifest already
    rejected (missing file, unknown label, unreadable folder) added to ``dead_letters``, so
    inputs = videos + dead letters + the manifest's skipped entries (which never enter the
    pipeline) holds for the whole run. Used by ``kvid ingest`` and the TFX ExampleGen.
    """

    def __init__(self, manifest: Manifest, config: IngestConfig, items_path: str | None = None):
        """``items_path``: a JSON-lines file of the items (:func:`write_items`), read by the
        workers instead of embedding every item in the pipeline graph (a 300k-video manifest
        would exceed a Dataflow job's graph size limit)."""
        super().__init__()
        self._manifest = manifest
        self._config = config
        self._items_path = items_path

    def expand(self, pbegin):
        if self._items_path:
            videos = (pbegin
                      | "ReadItems" >> beam.io.ReadFromText(self._items_path)
                      | "Videos" >> beam.Map(lambda line: VideoItem(**json.loads(line))))
        else:
            videos = pbegin | "Videos" >> beam.Create(list(self._manifest.items))
        out = videos | "VideosToClips" >> VideosToClips(self._config, self._manifest.labels)
        rejected = pbegin | "ManifestDeadLetters" >> beam.Create(list(self._manifest.dead_letters))
        dead = (out.dead_letters, rejected) | "AllDeadLetters" >> beam.Flatten()
        return {CLIPS: out.clips, DEAD_LETTERS: dead, VIDEOS: out.videos}


def write_items(items: Sequence[VideoItem], path: str) -> str:
    """The items as JSON lines at ``path`` (local or remote), for ``ManifestToClips``."""
    from kvid import files

    files.write_text(path, "".join(json.dumps(dataclasses.asdict(it)) + "\n" for it in items))
    return path


@beam.typehints.with_input_types(dict)
class WriteDeadLetters(beam.PTransform):
    """Dead-letter dicts -> one JSON-lines file named exactly ``path`` (empty if none, or
    none at all with ``skip_if_empty``: Beam's S3 writer cannot write an empty object)."""

    def __init__(self, path: str, skip_if_empty: bool = False):
        super().__init__()
        self._path = path
        self._skip_if_empty = skip_if_empty

    def expand(self, dead_letters):
        return (dead_letters
                | "ToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
                | "WriteJsonl" >> beam.io.WriteToText(self._path, shard_name_template="",
                                                      num_shards=1,
                                                      skip_if_empty=self._skip_if_empty))
