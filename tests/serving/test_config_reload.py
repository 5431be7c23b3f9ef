"""--model_config_file_poll_wait_seconds: a config file edited while serving is applied
(models added and removed, labels changed) and a broken edit keeps the models serving."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time

import pytest
from serving_fixtures import MODEL, http_request, push

from kvid.serving.server import configure_serve_parser, server_from_args

POLL = 0.1  # seconds between reads of the config file
SINGLE = b'{"signature_name": "single", "instances": [[1, 2, 3]]}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(*models: tuple[str, dict[str, int]]) -> str:
    """A model_config_list of (name, labels): all versions of /models/<name>."""
    entries = []
    for name, labels in models:
        label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}'
                             for k, v in labels.items())
        entries.append(f'config {{ name: "{name}" base_path: "/models/{name}" '
                       f'model_platform: "tensorflow" '
                       f'model_version_policy {{ all {{}} }}{label_text} }}')
    return "model_config_list {\n  " + "\n  ".join(entries) + "\n}\n"


def write(path, text: str) -> None:
    """Replaces the file whole, as an editor or a ConfigMap update does."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def predict(srv, path: str):
    """(HTTP status, first prediction's y or the error text) of the toy ``single``."""
    status, _, body = http_request(srv.rest_port, "POST", path, SINGLE)
    doc = json.loads(body)
    return status, doc["predictions"][0] if status == 200 else doc["error"]


def y(version: int) -> list[float]:
    return [2.0 + version, 4.0 + version, 6.0 + version]


def wait_until(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(POLL / 2)
    return value


@pytest.fixture
def served(toy_versions, tmp_path):
    """Models ``kvid`` (versions 1, 2) and ``other`` (version 2) on disk under
    tmp_path/models; the config file serves ``kvid`` only, re-read every POLL seconds."""
    for name, versions in ((MODEL, (1, 2)), ("other", (2,))):
        os.makedirs(tmp_path / "models" / name)
        for v in versions:
            push(toy_versions, str(tmp_path / "models" / name), v)
    config = tmp_path / "models.config"
    write(config, config_text((MODEL, {"stable": 1})))
    args = configure_serve_parser(argparse.ArgumentParser()).parse_args([
        f"--model_config_file={config}", f"--model_config_file_poll_wait_seconds={POLL}",
        f"--model_config_root={tmp_path}", "--file_system_poll_wait_seconds=0", "--port=0",
        f"--rest_api_port={_free_port()}", "--enable_model_warmup=false",
        "--rest_api_num_threads=4"])
    with server_from_args(args) as srv:
        yield srv, config


def test_edited_config_adds_then_removes_a_model_and_moves_a_label(served):
    srv, config = served
    assert predict(srv, f"/v1/models/{MODEL}/labels/stable:predict") == (200, y(1))
    assert predict(srv, "/v1/models/other:predict") == \
        (404, "Servable not found for request: Latest(other)")

    write(config, config_text((MODEL, {"stable": 2}), ("other", {})))
    wait_until(lambda: predict(srv, "/v1/models/other:predict")[0] == 200, "other served")
    assert predict(srv, "/v1/models/other:predict") == (200, y(2))
    assert predict(srv, f"/v1/models/{MODEL}/labels/stable:predict") == (200, y(2))
    assert predict(srv, f"/v1/models/{MODEL}:predict") == (200, y(2))
    assert [s.name for s in srv.manager.sources] == [MODEL, "other"]

    write(config, config_text((MODEL, {"stable": 1})))
    wait_until(lambda: predict(srv, "/v1/models/other:predict")[0] == 404, "other removed")
    assert predict(srv, "/v1/models/other:predict") == \
        (404, "Servable not found for request: Latest(other)")
    assert predict(srv, f"/v1/models/{MODEL}/labels/stable:predict") == (200, y(1))
    # A removed model's versions report END, as TF Serving's state monitor keeps them.
    status, _, body = http_request(srv.rest_port, "GET", "/v1/models/other")
    assert status == 200
    assert [(s["version"], s["state"]) for s in json.loads(body)["model_version_status"]] \
        == [("2", "END")]
    # Counted loads: kvid 1 and 2 once each, other's version 2 once.
    loads = srv.metrics.load_attempt_count
    root = os.path.dirname(str(config))
    assert [loads.value(os.path.join(root, "models", n, str(v)), "success")
            for n, v in ((MODEL, 1), (MODEL, 2), ("other", 2))] == [1, 1, 1]


def test_broken_config_edit_keeps_the_last_good_config(served, caplog):
    srv, config = served
    caplog.set_level(logging.ERROR, logger="kvid.serving.servables")
    write(config, config_text((MODEL, {})).replace("base_path", "base_pth"))
    wait_until(lambda: any("Failed to read ModelServerConfig file" in r.getMessage()
                           for r in caplog.records), "the parse error logged")
    assert "base_pth" in caplog.text
    assert predict(srv, f"/v1/models/{MODEL}/labels/stable:predict") == (200, y(1))
    assert predict(srv, f"/v1/models/{MODEL}:predict") == (200, y(2))
    assert [(s.name, s.labels) for s in srv.manager.sources] == [(MODEL, {"stable": 1})]

    caplog.clear()  # a duplicate model parses but is refused: logged, nothing changes
    write(config, config_text((MODEL, {}), (MODEL, {})))
    wait_until(lambda: any("multiple times" in r.getMessage() for r in caplog.records),
               "the invalid config logged")
    assert predict(srv, f"/v1/models/{MODEL}/labels/stable:predict") == (200, y(1))

    write(config, config_text((MODEL, {"stable": 2})))  # fixed: applied again
    wait_until(lambda: predict(srv, f"/v1/models/{MODEL}/labels/stable:predict")
               == (200, y(2)), "the fixed config applied")
    assert predict(srv, f"/v1/models/{MODEL}/versions/1:predict") == (200, y(1))
