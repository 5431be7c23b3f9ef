"""Local or object-store paths (``gs://``, ``s3://``, ...), one home for the ingest's file work.

Listing the input, reading manifests and videos, writing shards and ``dataset.json`` all go
through here, so a cluster's storage is a path, not a code change. Remote paths go through
Beam's FileSystems (the filesystems a Beam worker has, configured by the pipeline options:
``--s3_endpoint_url``, ``--project``...); call :func:`configure` with those options before
touching a remote path outside a pipeline. Local paths keep the os calls, whose errors
(permissions, symlinks, folders) the manifests tell apart.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
from typing import IO, Iterator


def _fs():
    """Beam's FileSystems, imported on first use: decoding a local video needs no Beam."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_remote(path: str) -> bool:
    return "://" in path


def configure(options) -> None:
    """Gives this process the filesystems ``options`` (Beam PipelineOptions) configure."""
    _fs().set_options(options)


def join(*parts: str) -> str:
    return _fs().join(*parts) if is_remote(parts[0]) else os.path.join(*parts)


def parent(path: str) -> str:
    """The folder holding ``path`` (absolute when local)."""
    if is_remote(path):
        return posixpath.dirname(path.rstrip("/"))
    return os.path.dirname(os.path.abspath(path))


def exists(path: str) -> bool:
    return _fs().exists(path)


def size(path: str) -> int | None:
    """Bytes of the file or object at ``path``; None when there is none."""
    if not is_remote(path):
        return os.path.getsize(path) if os.path.isfile(path) else None
    found = _fs().match([path])[0].metadata_list
    exact = [m for m in found if m.path == path]
    return exact[0].size_in_bytes if exact else None


def objects(prefix: str) -> list[tuple[str, int]]:
    """(path, bytes) of every object under the remote folder ``prefix``, sorted."""
    prefix = prefix.rstrip("/") + "/"
    found = _fs().match([prefix + "**"])[0].metadata_list
    return sorted((m.path, m.size_in_bytes) for m in found)


def isdir(path: str) -> bool:
    """A local folder, or a remote prefix holding at least one object."""
    if not is_remote(path):
        return os.path.isdir(path)
    return bool(_fs().match([path.rstrip("/") + "/**"], limits=[1])[0].metadata_list)


def listdir(path: str) -> list[str]:
    """Names directly under ``path`` (empty when it does not exist)."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    prefix = path.rstrip("/") + "/"
    return sorted({p[len(prefix):].split("/")[0] for p, _ in objects(path)})


def makedirs(path: str) -> None:
    if not is_remote(path):  # object stores have no folders
        os.makedirs(path, exist_ok=True)


def open_binary(path: str) -> IO[bytes]:
    """A seekable binary reader (PyAV decodes from it), never decompressed by extension."""
    from apache_beam.io.filesystem import CompressionTypes

    return _fs().open(path, compression_type=CompressionTypes.UNCOMPRESSED)


@contextlib.contextmanager
def open_text(path: str, newline: str | None = None) -> Iterator[IO[str]]:
    """UTF-8 text; a missing remote object is a FileNotFoundError (Beam's open raises it),
    as a local file is."""
    if not is_remote(path):
        with open(path, encoding="utf-8", newline=newline) as f:
            yield f
        return
    with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8",
                                                    newline=newline) as f:
        yield f


def create(path: str, mime_type: str = "application/octet-stream") -> IO[bytes]:
    """A new file or object at ``path`` (its local folder made), written as given."""
    from apache_beam.io.filesystem import CompressionTypes

    if not is_remote(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return _fs().create(path, mime_type=mime_type,
                        compression_type=CompressionTypes.UNCOMPRESSED)


def write_text(path: str, text: str, mime_type: str = "text/plain") -> None:
    with create(path, mime_type) as f:
        f.write(text.encode("utf-8"))


def read_text(path: str) -> str:
    with open_binary(path) as f:
        return f.read().decode("utf-8")


def remove(paths: list[str]) -> None:
    """Deletes each file, folder (with what it holds) or remote prefix that exists."""
    doomed = []
    for path in paths:
        if not is_remote(path):
            doomed += [path] if os.path.lexists(path) else []
        elif size(path) is not None:
            doomed.append(path)
        else:  # a "folder": the objects under the prefix
            doomed += [p for p, _ in objects(path)]
    if doomed:
        _fs().delete(doomed)


def move(src: str, dst: str) -> None:
    if not is_remote(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
    _fs().rename([src], [dst])


def walk(root: str) -> list[tuple[str, int]]:
    """(path relative to ``root`` with "/" separators, bytes) of every file under it, sorted."""
    if is_remote(root):
        prefix = root.rstrip("/") + "/"
        return [(p[len(prefix):], n) for p, n in objects(root)
                if p.startswith(prefix) and not p.endswith("/")]
    found = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            path = os.path.join(folder, name)
            found.append((os.path.relpath(path, root).replace(os.sep, "/"),
                          os.path.getsize(path)))
    return sorted(found)


_CHUNK = 16 << 20


def copy_file(src: str, dst: str, progress=None) -> None:
    """Streams ``src`` to ``dst`` in chunks (never whole in memory), across schemes."""
    with open_binary(src) as reader, create(dst) as writer:
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            if progress is not None:
                progress(len(chunk))


def copy_tree(src: str, dst: str, *, overwrite: bool = False, last: str | None = None,
              progress: bool = True) -> tuple[int, int]:
    """Copies every file under ``src`` to ``dst`` (local or remote, either way); returns
    (files, bytes).

    A local ``dst`` is filled in a temporary sibling, then renamed into place; an object
    store has no folder rename, so the file named ``last`` (a dataset's ``dataset.json``, its
    "done" mark) is written after all the others. A non-empty ``dst`` needs ``overwrite``.
    """
    import uuid

    from tqdm import tqdm

    entries = walk(src)
    if not entries:
        raise FileNotFoundError(f"nothing to copy: no files under {src}")
    if listdir(dst) and not overwrite:
        raise FileExistsError(f"{dst} is not empty; pass --overwrite to replace it")
    entries.sort(key=lambda e: (e[0] == last, e[0]))
    total = sum(n for _, n in entries)
    remote = is_remote(dst)
    target = dst if remote else \
        f"{os.path.abspath(dst).rstrip(os.sep)}.partial-{uuid.uuid4().hex[:8]}"
    try:
        if remote:
            remove([dst])
        with tqdm(total=total, unit="B", unit_scale=True, desc="copy",
                  disable=not progress) as bar:
            for rel, _ in entries:
                copy_file(join(src, *rel.split("/")), join(target, *rel.split("/")),
                          bar.update)
        if not remote:
            if os.path.lexists(dst):
                remove([dst])
            os.rename(target, dst)
    finally:
        if not remote and os.path.lexists(target):
            remove([target])
    return len(entries), total
