"""Versions: hot swap under load, model_config_file with labels and policy, batching, CLI."""

from __future__ import annotations

import argparse
import os
import threading
import time

import numpy as np
import pytest
from serving_fixtures import MODEL, http_request, push

from kvid.serving import configs
from kvid.serving.client import Client
from kvid.serving.server import configure_serve_parser, server_from_args, start_server

X = [[1.0, 2.0, 3.0]]


def y_of(version: int) -> list[float]:
    """What the toy ``single`` signature answers for X: x * 2 + version."""
    return [[v * 2 + version for v in X[0]]]


def test_pushed_version_is_served_without_restart_or_dropped_requests(toy_versions, tmp_path):
    base = str(tmp_path / MODEL)
    os.makedirs(base)
    push(toy_versions, base, 1)
    with start_server(base, MODEL, poll_seconds=0.1, grpc_port=None) as srv:
        seen, errors, stop = [], [], threading.Event()

        def hammer():
            with Client(rest_url=srv.rest_url, model=MODEL) as client:
                while not stop.is_set():
                    try:
                        seen.append(client.predict({"x": X}, "single")["y"].tolist())
                    except Exception as e:  # any failure is a dropped request
                        errors.append(e)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        while len(seen) < 5:
            time.sleep(0.01)
        push(toy_versions, base, 2)
        srv.manager.wait_for(MODEL, 2, timeout=60)
        n_at_swap = len(seen)
        while len(seen) < n_at_swap + 5:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        status = Client(rest_url=srv.rest_url, model=MODEL).status()
    assert errors == []
    assert seen[0] == y_of(1) and seen[-1] == y_of(2)
    assert {tuple(map(tuple, s)) for s in seen} <= {tuple(map(tuple, y_of(v))) for v in (1, 2)}
    # Version 1 switched off only after 2 was available: 2 AVAILABLE, 1 END (newest first).
    assert [(s["version"], s["state"]) for s in status["model_version_status"]] == \
        [("2", "AVAILABLE"), ("1", "END")]


MODELS_CONFIG = """
model_config_list {
  config {
    name: "kvid"
    base_path: "/models/kvid"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
"""


def test_model_config_file_with_labels_and_policy_from_a_tf_serving_command_line(
        toy_versions, tmp_path):
    base = tmp_path / "models" / MODEL
    base.mkdir(parents=True)
    for v in (1, 2):
        push(toy_versions, str(base), v)
    push(toy_versions, str(base), 1, as_version=3)  # not in the policy: never served
    config = tmp_path / "models.config"
    config.write_text(MODELS_CONFIG)
    parser = configure_serve_parser(argparse.ArgumentParser())
    args = parser.parse_args([
        "--port=0", "--rest_api_port", "0", f"--model_config_file={config}",
        f"--model_config_root={tmp_path}", "--file_system_poll_wait_seconds=0",
        "--enable_model_warmup=false", "--rest_api_num_threads=2"])
    assert args.enable_model_warmup is False and args.rest_api_port == 0
    args.rest_api_port = _free_port()  # 0 switches REST off, as in TF Serving
    with server_from_args(args) as srv:
        client = Client(rest_url=srv.rest_url, model=MODEL)
        assert client.predict({"x": X}, "single")["y"].tolist() == y_of(2)
        assert client.predict({"x": X}, "single", version=1)["y"].tolist() == y_of(1)
        for label, version in (("stable", 1), ("canary", 2)):
            status, _, body = http_request(
                srv.rest_port, "POST", f"/v1/models/{MODEL}/labels/{label}:predict",
                b'{"signature_name": "single", "instances": [[1, 2, 3]]}')
            assert status == 200 and f"{2 + version}.0" in body.decode()
        status, _, body = http_request(srv.rest_port, "POST",
                                       f"/v1/models/{MODEL}/versions/3:predict", b"{}")
        assert status == 404
        assert [s["version"] for s in client.status()["model_version_status"]] == ["2", "1"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batching_merges_concurrent_requests_and_keeps_answers(toy_versions, tmp_path):
    base = str(tmp_path / MODEL)
    os.makedirs(base)
    push(toy_versions, base, 1)
    params = configs.BatchingParameters()
    params.max_batch_size.value = 8
    params.batch_timeout_micros.value = 200_000
    params.num_batch_threads.value = 1
    params.allowed_batch_sizes.extend([4, 8])
    with start_server(base, MODEL, poll_seconds=0, grpc_port=None,
                      batching_parameters=params, enable_model_warmup=False) as srv:
        results = [None] * 6

        def call(i):
            with Client(rest_url=srv.rest_url, model=MODEL) as client:
                results[i] = client.predict({"x": [[float(i), 0, 0]]}, "single")["y"]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batcher = srv.batcher
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, [[2.0 * i + 1, 1.0, 1.0]])
    assert batcher.requests_run == 6 and batcher.batches_run < 6


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="--model_base_path"):
        start_server(None)
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(Exception, match="nme"):
        start_server(model_config_file=str(bad))
