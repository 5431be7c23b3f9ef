"""--monitoring_config_file: TF Serving's Prometheus metrics on the REST port, counted
over REST and gRPC with TF Serving's names, labels and text format."""

from __future__ import annotations

import argparse
import os
import re
import socket
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_fixtures import MODEL, http_request, push
from tensorflow_serving.apis import (classification_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from kvid.serving import configs, metrics
from kvid.serving.server import configure_serve_parser, server_from_args, start_server

SINGLE = b'{"signature_name": "single", "instances": [[1, 2, 3]]}'
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
LOADS = ":tensorflow:cc:saved_model:load_attempt_count"
LOAD_LATENCY = ":tensorflow:cc:saved_model:load_latency"
# Exponential(10, 1.8, 33) as absl::StrCat writes the limits, then DBL_MAX as +Inf.
FIRST_LIMITS = ["10", "18", "32.4", "58.32", "104.976", "188.957", "340.122", "612.22",
                "1102", "1983.59"]
_SAMPLE = re.compile(r'([^{ ]+)\{(.*)\} (\S+)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_page(text: str) -> tuple[dict[str, str], dict[tuple, str]]:
    """({name: type}, {(name, ((label, value), ...)): value}) of a Prometheus text page."""
    types, samples = {}, {}
    assert text.endswith("\n")
    for line in text[:-1].split("\n"):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        name, labels, value = _SAMPLE.fullmatch(line).groups()
        pairs = tuple(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        samples[(name, pairs)] = value
    return types, samples


def latency(samples, model_name, api, entrypoint):
    """(count, sum, [(le, cumulative)]) of one request_latency label set."""
    labels = (("model_name", model_name), ("API", api), ("entrypoint", entrypoint))
    buckets = [(dict(k[1])["le"], int(v)) for k, v in samples.items()
               if k[0] == LATENCY + "_bucket" and k[1][:3] == labels]
    return (int(samples[(LATENCY + "_count", labels)]),
            float(samples[(LATENCY + "_sum", labels)]), buckets)


def test_page_format_is_tf_servings_exporter():
    m = metrics.Metrics()
    m.record_request("kvid", "predict", "REST", "OK", 10)  # 10 lands in [10, 18): le="18"
    m.record_request("kvid", "predict", "REST", "OK", 1_234_567)
    m.record_request('a"b\\c', "", "REST", "NOT_FOUND", 5)  # failures: no latency
    m.record_load("/models/kvid/1", True, 2500)
    lines = m.page().split("\n")
    assert lines[:6] == [
        f"# TYPE {LOADS} counter",
        f'{LOADS}{{model_path="/models/kvid/1",status="success"}} 1',
        f"# TYPE {LOAD_LATENCY} counter",
        f'{LOAD_LATENCY}{{model_path="/models/kvid/1"}} 2500',
        f"# TYPE {COUNT} counter",
        f'{COUNT}{{model_name="a\\"b\\\\c",status="NOT_FOUND"}} 1',
    ]
    assert lines[6:9] == [f'{COUNT}{{model_name="kvid",status="OK"}} 2',
                          f"# TYPE {LATENCY} histogram",
                          f'{LATENCY}_bucket{{model_name="kvid",API="predict",'
                          f'entrypoint="REST",le="10"}} 0']
    buckets = lines[8:8 + 34]
    assert [re.search(r'le="([^"]+)"', b).group(1) for b in buckets[:10]] == FIRST_LIMITS
    # 1234567 lands in the bucket of limit 10 * 1.8**20 (the 21st).
    assert [int(b.rsplit(" ", 1)[1]) for b in buckets] == [0] + [1] * 19 + [2] * 14
    assert buckets[-1].endswith('le="+Inf"} 2')
    assert lines[42:] == [
        f'{LATENCY}_sum{{model_name="kvid",API="predict",entrypoint="REST"}} 1.23458e+06',
        f'{LATENCY}_count{{model_name="kvid",API="predict",entrypoint="REST"}} 2',
        ""]


def test_metrics_path_follows_the_config():
    config = configs.MonitoringConfig()
    assert metrics.metrics_path(None) is None
    assert metrics.metrics_path(config) is None
    config.prometheus_config.enable = True
    assert metrics.metrics_path(config) == "/monitoring/prometheus/metrics"
    config.prometheus_config.path = "/my/metrics"
    assert metrics.metrics_path(config) == "/my/metrics"


def test_requests_over_rest_and_grpc_are_counted_on_the_configured_path(
        toy_versions, tmp_path):
    base = tmp_path / MODEL
    base.mkdir()
    push(toy_versions, str(base), 1)
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/custom/prom" }\n')
    args = configure_serve_parser(argparse.ArgumentParser()).parse_args([
        "--port=0", f"--rest_api_port={_free_port()}", f"--model_name={MODEL}",
        f"--model_base_path={base}", "--file_system_poll_wait_seconds=0",
        "--enable_model_warmup=false", f"--monitoring_config_file={monitoring}"])
    with server_from_args(args) as srv:
        assert srv.metrics_url == f"{srv.rest_url}/custom/prom"
        port = srv.rest_port
        channel = grpc.insecure_channel(srv.grpc_target)
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        good = predict_pb2.PredictRequest()
        good.model_spec.name = MODEL
        good.model_spec.signature_name = "single"
        good.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones([1, 3], np.float32)))
        bad = predict_pb2.PredictRequest()
        bad.CopyFrom(good)
        bad.inputs["z"].CopyFrom(bad.inputs.pop("x"))
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name = MODEL

        start = time.monotonic()
        for _ in range(3):
            assert http_request(port, "POST", f"/v1/models/{MODEL}:predict", SINGLE)[0] == 200
        assert http_request(port, "POST", f"/v1/models/{MODEL}/versions/1:PREDICT",
                            SINGLE)[0] == 200
        assert http_request(port, "GET", f"/v1/models/{MODEL}")[0] == 200
        assert http_request(port, "POST", "/v1/models/nope:predict", SINGLE)[0] == 404
        assert http_request(port, "POST", f"/v1/models/{MODEL}:predict", b"{")[0] == 400
        assert http_request(port, "POST", f"/v1/models/{MODEL}:bogus", SINGLE)[0] == 400
        assert http_request(port, "GET", "/elsewhere")[0] == 404  # outside /v1/: not counted
        for _ in range(2):
            predictions.Predict(good, timeout=30)
        for request, method in ((bad, predictions.Predict), (classify, predictions.Classify)):
            with pytest.raises(grpc.RpcError):
                method(request, timeout=30)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = MODEL
        models.GetModelStatus(status_request, timeout=30)  # not counted in TF Serving
        elapsed_usec = (time.monotonic() - start) * 1e6
        channel.close()

        status, headers, body = http_request(port, "GET", "/custom/prom")
        assert status == 200 and headers["Content-Type"] == "text/plain"
        default = http_request(port, "GET", "/monitoring/prometheus/metrics")
        unknown = http_request(port, "GET", "/no/such/route")
        assert default[0] == unknown[0] == 404 and default[2] == unknown[2] == b""
        snapshot = srv.metrics.request_latency.snapshot(MODEL, "predict", "REST")

    types, samples = parse_page(body.decode())
    assert types == {LOADS: "counter", LOAD_LATENCY: "counter", COUNT: "counter",
                     LATENCY: "histogram"}
    counts = {dict(k[1])["model_name"] + "/" + dict(k[1])["status"]: int(v)
              for k, v in samples.items() if k[0] == COUNT}
    assert counts == {
        f"{MODEL}/OK": 3 + 1 + 1 + 2,  # REST predict, PREDICT, status; gRPC Predict
        "nope/NOT_FOUND": 1,
        f"{MODEL}/INVALID_ARGUMENT": 1 + 1,  # REST bad JSON, gRPC bad input name
        "/INVALID_ARGUMENT": 1,  # a URL that does not parse has no model name
        f"{MODEL}/UNIMPLEMENTED": 1,  # gRPC Classify
    }
    cells = {(m, a, e): latency(samples, m, a, e) for m, a, e in
             [(MODEL, "predict", "REST"), (MODEL, "PREDICT", "REST"), (MODEL, "", "REST"),
              (MODEL, "Predict", "GRPC")]}
    assert {k: c[0] for k, c in cells.items()} == {
        (MODEL, "predict", "REST"): 3, (MODEL, "PREDICT", "REST"): 1, (MODEL, "", "REST"): 1,
        (MODEL, "Predict", "GRPC"): 2}
    assert sum(1 for k in samples if k[0] == LATENCY + "_count") == 4  # OK requests only
    for count, total, buckets in cells.values():
        assert len(buckets) == 34 and buckets[-1] == ("+Inf", count)
        assert [le for le, _ in buckets[:10]] == FIRST_LIMITS
        cumulative = [n for _, n in buckets]
        assert cumulative == sorted(cumulative)
        assert 0 < total
    assert sum(c[1] for c in cells.values()) <= elapsed_usec * (1 + 1e-5)
    count, total, per_bucket = snapshot  # what the page was written from
    assert count == sum(per_bucket) == 3
    assert float("%g" % total) == cells[(MODEL, "predict", "REST")][1]
    path = os.path.join(str(base), "1")
    assert samples[(LOADS, (("model_path", path), ("status", "success")))] == "1"
    assert int(samples[(LOAD_LATENCY, (("model_path", path),))]) > 0


def test_metrics_path_without_monitoring_is_an_unknown_route(server):
    metrics_page = http_request(server.rest_port, "GET", "/monitoring/prometheus/metrics")
    unknown = http_request(server.rest_port, "GET", "/no/such/route")
    assert metrics_page[0] == unknown[0] == 404
    assert metrics_page[2] == unknown[2] == b""
    assert server.metrics_url is None


def test_metrics_without_a_rest_port_are_not_served(toy_versions, tmp_path):
    base = tmp_path / MODEL
    base.mkdir()
    push(toy_versions, str(base), 1)
    config = configs.MonitoringConfig()
    config.prometheus_config.enable = True
    with start_server(str(base), MODEL, poll_seconds=0, rest_port=None,
                      enable_model_warmup=False, monitoring_config=config) as srv:
        assert srv.metrics_url is None and srv.grpc_target
