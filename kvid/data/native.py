"""kvid's one native kernel: the training crop (crop, resize, flip, normalize) in one pass.

TF's bilinear resize is a scalar loop over a float copy of the window, and it was the
largest cost of the training pipeline after JPEG decoding. ``crop_resize.cc`` does the same
arithmetic straight from the uint8 pixels with SIMD (bench_input.py, default random resized
crop: 0.69-0.75x the read+decode limit with TF's ops, 0.84-0.87x with the kernel). It is
compiled at first use with the flags TF gives for custom ops (``tf.sysconfig``), cached per
source, TF version and compiler, and loaded with ``tf.load_op_library``. Without a C++
compiler, when the build fails, or with ``KVID_NATIVE=0``, the pipeline uses the pure-TF
ops, which give the same values within float rounding. Only tf.data uses it: exported
SavedModels hold standard ops only, so TF Serving needs nothing extra.

``kvid native`` builds it ahead of time (scripts/install.sh does) and says where it is or
why it is not used.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

SOURCE = Path(__file__).with_name("crop_resize.cc")
_log = logging.getLogger(__name__)


def enabled() -> bool:
    """False when ``KVID_NATIVE=0`` (read at each call, so tests and users can switch)."""
    return os.environ.get("KVID_NATIVE", "1") != "0"


def cache_dir() -> Path:
    """``$KVID_CACHE_DIR``, else ``$XDG_CACHE_HOME/kvid``, else ``~/.cache/kvid``."""
    if os.environ.get("KVID_CACHE_DIR"):
        return Path(os.environ["KVID_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvid"


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise OSError("no C++ compiler: install g++ or set CXX")
    return cxx


def build(directory: Path | None = None) -> Path:
    """Compiles ``crop_resize.cc`` unless a build of this source for this TF exists.

    The library is written to a temporary name and renamed, so a concurrent or interrupted
    build never leaves a half-written library under the final name.
    """
    cxx = _compiler()
    flags = [*tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
    command = [cxx, "-shared", "-fPIC", "-O3", "-w", *flags]
    key = hashlib.sha256("\0".join([SOURCE.read_text(), tf.__version__, *command]).encode())
    directory = Path(directory or cache_dir())
    library = directory / f"kvid_crop_resize-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    directory.mkdir(parents=True, exist_ok=True)
    print(f"kvid: building the native training crop into {directory} (once, ~20 s)",
          file=sys.stderr, flush=True)
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=directory)
    os.close(fd)
    try:
        done = subprocess.run([*command[:1], str(SOURCE), "-o", tmp, *command[1:]],
                              capture_output=True, text=True)
        if done.returncode != 0:
            detail = done.stderr.strip()[-2000:] or "no message"
            raise OSError(f"{cxx} failed with exit code {done.returncode}: {detail}")
        os.replace(tmp, library)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return library


@functools.cache
def _load():
    """The loaded op, or the reason it is unavailable."""
    try:
        return tf.load_op_library(str(build())).kvid_crop_resize
    except (OSError, tf.errors.OpError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


@functools.cache
def _warn(reason: str) -> None:
    _log.warning("kvid: native training crop unavailable (%s); using TF ops, which are "
                 "slower (see kvid/data/native.py)", reason)


def problem() -> str | None:
    """Why the kernel cannot be used (building it now if needed), or None."""
    op = _load()
    return op if isinstance(op, str) else None


def crop_resize_op():
    """The ``KvidCropResize`` op, or None (disabled, or it could not be built: logged once)."""
    if not enabled():
        return None
    op = _load()
    if isinstance(op, str):
        _warn(op)
        return None
    return op


def crop_resize(frames: tf.Tensor, window: tf.Tensor, flip, scale, offset,
                size: tuple[int, int], *, isa: str = "best") -> tf.Tensor:
    """uint8 [T, H, W, C] -> float32 [T, h, w, C]: ``window`` resized to ``size``, mirrored
    if ``flip``, times ``scale`` plus ``offset`` ([C] each). Needs :func:`crop_resize_op`.

    ``isa``: ``"best"`` (AVX-512 where the CPU has it, else AVX2, else scalar), or ``"avx2"``
    / ``"scalar"`` to pin a narrower path (tests check each against TF).
    """
    op = crop_resize_op()
    if op is None:
        raise RuntimeError("the native crop kernel is unavailable; see kvid.data.native")
    out = op(frames, tf.cast(window, tf.int32), tf.cast(flip, tf.bool),
             tf.cast(scale, tf.float32), tf.cast(offset, tf.float32),
             height=int(size[0]), width=int(size[1]), isa=isa)
    return tf.ensure_shape(out, [frames.shape[0], int(size[0]), int(size[1]), frames.shape[-1]])
