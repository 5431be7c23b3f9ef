"""Helpers shared by the serving tests (a uniquely named module, imported by rootdir path)."""

from __future__ import annotations

import http.client
import os
import shutil

MODEL = "kvid"


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
