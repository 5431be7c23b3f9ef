"""Helpers shared by the serving tests (a uniquely named module, imported by rootdir path)."""

from __future__ import annotations

import http.client
import os
import shutil

MODEL = "kvid"
STREAM_LABELS = ["clap", "jump", "wave"]  # of the stream_base fixture


def push(toy_versions, base_path: str, version: int, as_version: int | None = None) -> str:
    """Copies a toy version into ``base_path`` the way a Pusher does: whole, then renamed."""
    as_version = as_version or version
    tmp = os.path.join(base_path, f".push-{as_version}")
    shutil.copytree(toy_versions[version], tmp)
    final = os.path.join(base_path, str(as_version))
    os.replace(tmp, final)
    return final


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None):
    """(status, headers, body) of one raw HTTP request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def start_stream_server(base, toy_versions, **kwargs):
    """``kvid serve`` of the stream_base fixture's model ``stream`` and a clip model
    ``clip`` (toy version 1, no stream signatures)."""
    from kvid.serving.server import ModelSource, start_server

    os.makedirs(base / "clip", exist_ok=True)
    if not os.path.exists(base / "clip" / "1"):
        push(toy_versions, str(base / "clip"), 1)
    sources = [ModelSource("stream", str(base / "stream")),
               ModelSource("clip", str(base / "clip"))]
    return start_server(sources=sources, poll_seconds=0, **kwargs)
