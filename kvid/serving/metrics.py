"""TF Serving's Prometheus metrics, for what ``kvid serve`` can measure truthfully.

``--monitoring_config_file`` with ``prometheus_config { enable: true }`` makes the REST port
answer its ``path`` with this page. The metrics are TF Serving's own (names, labels, label
values, buckets), recorded where TF Serving records them, so one dashboard or alert works
against both servers:

==========================================================  =============================
``:tensorflow:serving:request_count`` counter               ``model_name``, ``status``
``:tensorflow:serving:request_latency`` histogram (µs)      ``model_name``, ``API``,
                                                            ``entrypoint``
``:tensorflow:cc:saved_model:load_attempt_count`` counter   ``model_path``, ``status``
``:tensorflow:cc:saved_model:load_latency`` counter (µs)    ``model_path``
==========================================================  =============================

Sources (tensorflow/serving @9d981c5c; tensorflow ``cc/saved_model/loader.cc``):

* ``servables/tensorflow/util.cc``: ``request_count`` counts every request by
  ``status`` = the canonical code name (``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND``, ...);
  ``request_latency`` samples only successful ones, buckets ``Exponential(10, 1.8, 33)``.
* ``model_servers/http_server.cc``: every request under ``/v1/`` is counted, with
  ``entrypoint="REST"`` and ``API`` = the URL's verb as written (``predict``, ...; empty
  for GET status and metadata); ``model_name`` is empty when the URL did not parse.
* ``model_servers/prediction_service_impl.cc``: gRPC ``Predict``/``Classify``/``Regress``
  with ``entrypoint="GRPC"``; GetModelMetadata, GetModelStatus and MultiInference are not
  counted.
* ``loader.cc``: one ``load_attempt_count`` (``success``/``fail``) and the load time per
  SavedModel load, ``model_path`` being the version folder.
* ``util/prometheus_exporter.cc``: the text format. Metric names are TF's with every
  character outside ``[a-zA-Z0-9_]`` turned into ``:`` (hence the leading colon), metrics
  sorted by TF name, label sets sorted by value, a ``# TYPE`` line and no ``# HELP``,
  cumulative ``_bucket`` lines with the last limit (``DBL_MAX``) written ``+Inf``, and
  doubles (bucket limits, ``_sum``) written as ``absl::StrCat`` does (six significant
  digits, ``%g``).

As in TF's ``Histogram``, a value lands in the first bucket whose limit is *greater*
than it (``std::upper_bound``), so 10 µs counts in ``le="18"``.
"""

from __future__ import annotations

import bisect
import re
import sys
import threading

CONTENT_TYPE = "text/plain"  # what TF Serving's http_server.cc sends
DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


def exponential_buckets(scale: float, growth_factor: float, bucket_count: int) -> list[float]:
    """``monitoring::Buckets::Exponential`` plus the ``DBL_MAX`` that ExplicitBuckets adds."""
    limits, bound = [], scale
    for _ in range(bucket_count):
        limits.append(bound)
        bound *= growth_factor
    return limits + [sys.float_info.max]


LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # "~20 minutes", in microseconds


def _double(value: float) -> str:
    """``absl::StrCat(double)``: six significant digits, like ``%g``."""
    return "%g" % value


def prometheus_name(tf_name: str) -> str:
    """``GetPrometheusMetricName``: ``/tensorflow/serving/x`` -> ``:tensorflow:serving:x``."""
    name = re.sub(r"[^a-zA-Z0-9_]", ":", tf_name)
    return "_" + name if name[:1].isdigit() else name


def _label_name(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class _Metric:
    kind = ""

    def __init__(self, tf_name: str, description: str, *labels: str):
        self.tf_name = tf_name
        self.name = prometheus_name(tf_name)
        self.description = description
        self.labels = labels
        self._cells: dict[tuple[str, ...], object] = {}
        self._lock = threading.Lock()

    def _key(self, values) -> tuple[str, ...]:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.tf_name} takes labels {self.labels}; got {values}")
        return tuple(str(v) for v in values)

    def _label_text(self, values) -> str:
        return ",".join(f'{_label_name(n)}="{_label_value(v)}"'
                        for n, v in zip(self.labels, values))


class Counter(_Metric):
    """``monitoring::Counter<N>``: an int64 per label set."""

    kind = "counter"

    def increment(self, *values: str, by: int = 1) -> None:
        key = self._key(values)
        with self._lock:
            self._cells[key] = self._cells.get(key, 0) + int(by)

    def value(self, *values: str) -> int:
        return self._cells.get(self._key(values), 0)

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted(self._cells.items())
        return [f"# TYPE {self.name} counter"] + [
            f"{self.name}{{{self._label_text(k)}}} {v}" for k, v in cells]


class _Histogram:
    __slots__ = ("buckets", "sum", "count")

    def __init__(self, n: int):
        self.buckets = [0] * n
        self.sum = 0.0
        self.count = 0


class Sampler(_Metric):
    """``monitoring::Sampler<N>``: a histogram per label set."""

    kind = "histogram"

    def __init__(self, tf_name: str, description: str, *labels: str,
                 buckets: list[float] = LATENCY_BUCKETS):
        super().__init__(tf_name, description, *labels)
        self.limits = list(buckets)

    def add(self, *values: str, sample: float) -> None:
        key = self._key(values)
        index = min(bisect.bisect_right(self.limits, sample), len(self.limits) - 1)
        with self._lock:
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = _Histogram(len(self.limits))
            cell.buckets[index] += 1
            cell.sum += sample
            cell.count += 1

    def snapshot(self, *values: str) -> tuple[int, float, list[int]]:
        """(count, sum, per-bucket counts) of one label set."""
        with self._lock:
            cell = self._cells.get(self._key(values))
            if cell is None:
                return 0, 0.0, [0] * len(self.limits)
            return cell.count, cell.sum, list(cell.buckets)

    def lines(self) -> list[str]:
        with self._lock:
            cells = sorted((k, (list(c.buckets), c.sum)) for k, c in self._cells.items())
        out = [f"# TYPE {self.name} histogram"]
        last = len(self.limits) - 1
        for key, (buckets, total) in cells:
            labels = self._label_text(key)
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            cumulative = 0
            for i, n in enumerate(buckets):
                cumulative += n
                le = "+Inf" if i == last else _double(self.limits[i])
                out.append(f'{prefix}le="{le}"}} {cumulative}')
            out.append(f"{self.name}_sum{{{labels}}} {_double(total)}")
            out.append(f"{self.name}_count{{{labels}}} {cumulative}")
        return out


class Metrics:
    """The metrics one ``kvid serve`` records; ``page()`` is the Prometheus text."""

    def __init__(self):
        self.request_count = Counter(
            "/tensorflow/serving/request_count", "The total number of requests.",
            "model_name", "status")
        self.request_latency = Sampler(
            "/tensorflow/serving/request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            "model_name", "API", "entrypoint")
        self.load_attempt_count = Counter(
            "/tensorflow/cc/saved_model/load_attempt_count",
            "The number of times a SavedModel was successfully loaded.",
            "model_path", "status")
        self.load_latency = Counter(
            "/tensorflow/cc/saved_model/load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            "model_path")
        self._all = sorted((self.request_count, self.request_latency,
                            self.load_attempt_count, self.load_latency),
                           key=lambda m: m.tf_name)  # CollectionRegistry's std::map

    def record_request(self, model_name: str, api: str, entrypoint: str, status: str,
                       latency_usec: int) -> None:
        """``RecordRequestLatency`` (successful requests only) + ``RecordModelRequestCount``.

        ``status`` is the canonical code's name (``grpc.StatusCode.X.name``).
        """
        if status == "OK":
            self.request_latency.add(model_name, api, entrypoint, sample=latency_usec)
        self.request_count.increment(model_name, status)

    def record_load(self, model_path: str, ok: bool, latency_usec: int) -> None:
        """``LoadSavedModel``'s two counters."""
        self.load_attempt_count.increment(model_path, "success" if ok else "fail")
        self.load_latency.increment(model_path, by=latency_usec)

    def page(self) -> str:
        """``PrometheusExporter::GeneratePage``."""
        lines = [line for metric in self._all for line in metric.lines()]
        return "\n".join(lines) + "\n"


def metrics_path(monitoring_config) -> str | None:
    """The path a MonitoringConfig serves metrics at, or None when Prometheus is off."""
    if monitoring_config is None or not monitoring_config.prometheus_config.enable:
        return None
    return monitoring_config.prometheus_config.path or DEFAULT_PATH
