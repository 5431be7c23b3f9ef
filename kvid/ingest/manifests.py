"""Manifests: what videos to ingest, with their label, group and (official) split.

Every reader returns a :class:`Manifest`: the items, the label map, and dead letters for the
rows that cannot be ingested (missing file, unknown label, bad row) -- a bad row never stops
a run, it is counted. Splits come from the dataset's official split files when it has them,
otherwise :func:`assign_splits` puts whole groups into train/val/test by a seeded hash, so a
group (actor, UCF101 ``gNN``) never straddles two splits.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import re
from typing import Iterable, Mapping, Sequence

from kvid.video.decode import MISSING_FILE

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif",
                    ".flv", ".wmv", ".3gp", ".ts")

# Default group patterns, tried in order on the file name: UCF101 "_g08_", then "actor03".
DEFAULT_GROUP_PATTERNS = (r"_g(\d+)_", r"(actor\d+)")

# Dead-letter reasons produced here (decode reasons live in kvid.video.decode).
UNKNOWN_LABEL = "unknown_label"
BAD_ROW = "bad_row"

DEFAULT_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class VideoItem:
    """One source video (or a time range of one) to cut into clips."""

    path: str
    label: str
    group: str
    split: str | None = None
    start_sec: float | None = None
    end_sec: float | None = None
    video_id: str = ""

    def __post_init__(self):
        if not self.video_id:
            object.__setattr__(self, "video_id", _default_video_id(self))
        if (self.start_sec is not None and self.end_sec is not None
                and self.end_sec <= self.start_sec):
            raise ValueError(f"end_sec must be greater than start_sec. Received: "
                             f"start_sec={self.start_sec}, end_sec={self.end_sec} for {self.path}")


def _default_video_id(item: VideoItem) -> str:
    stem = os.path.splitext(os.path.basename(item.path))[0]
    if item.start_sec is None and item.end_sec is None:
        return stem
    return f"{stem}@{item.start_sec or 0:g}-{'' if item.end_sec is None else f'{item.end_sec:g}'}"


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Items to ingest, the label map (index = label int) and rows already rejected."""

    items: tuple[VideoItem, ...]
    labels: tuple[str, ...]
    dead_letters: tuple[dict, ...] = ()

    def with_splits(self, ratios: Mapping[str, float] | None = None, seed: int = 0) -> "Manifest":
        return dataclasses.replace(self, items=tuple(assign_splits(self.items, ratios, seed)))


def dead_letter(path: str, reason: str, error: str) -> dict:
    """The one dead-letter shape: what was rejected, a stable reason, and the detail."""
    return {"path": str(path), "reason": reason, "error": str(error)}


# ----------------------------------------------------------------------------- groups, splits


def group_from_name(path: str, patterns: Sequence[str] | str | None = None) -> str:
    """The group of a video read from its file name; the video itself when nothing matches.

    Each regex is tried in order; its first capture group (or the whole match) is the group.
    """
    if isinstance(patterns, str):
        patterns = (patterns,)
    name = os.path.basename(path)
    for pattern in patterns or DEFAULT_GROUP_PATTERNS:
        m = re.search(pattern, name)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return os.path.splitext(name)[0]


def _hash(text: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big")


def _quotas(n: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts of ``n`` groups, giving each positive-ratio split at least one
    group while there are groups to give, in ratio order (6 actors -> 4/1/1, not 5/1/0;
    2 groups -> train 1, val 1)."""
    total = sum(ratios.values())
    exact = {s: n * r / total for s, r in ratios.items()}
    counts = {s: math.floor(x) for s, x in exact.items()}
    by_remainder = sorted(ratios, key=lambda s: (-(exact[s] - counts[s]), list(ratios).index(s)))
    for s in by_remainder[: n - sum(counts.values())]:
        counts[s] += 1
    for s in [s for s, r in ratios.items() if r > 0][:n]:
        if counts[s] == 0:
            donor = max(counts, key=lambda k: counts[k])
            counts[donor] -= 1
            counts[s] += 1
    return counts


def assign_splits(
    items: Iterable[VideoItem],
    ratios: Mapping[str, float] | None = None,
    seed: int = 0,
) -> list[VideoItem]:
    """Gives every item without a split one, by group, so no group lands in two splits.

    Groups are ordered by a seeded hash and cut by the ratios (largest remainder), which is
    deterministic for a given set of groups and fills every split with a positive ratio when
    there are at least as many groups as splits. Items that already have a split (official
    split files) keep it.
    """
    ratios = dict(ratios or {"train": 0.7, "val": 0.15, "test": 0.15})
    if not ratios or any(r < 0 for r in ratios.values()) or sum(ratios.values()) <= 0:
        raise ValueError(f"split ratios must be >= 0 with a positive sum. Received: {ratios}")
    items = list(items)
    groups = sorted({it.group for it in items if it.split is None},
                    key=lambda g: (_hash(g, seed), g))
    split_of: dict[str, str] = {}
    i = 0
    for split, count in _quotas(len(groups), ratios).items():
        for g in groups[i: i + count]:
            split_of[g] = split
        i += count
    return [it if it.split is not None else dataclasses.replace(it, split=split_of[it.group])
            for it in items]


# ----------------------------------------------------------------------------- label maps


def _check_labels(items: list[VideoItem], labels: Sequence[str] | None,
                  dead: list[dict]) -> tuple[list[VideoItem], tuple[str, ...]]:
    """Fixes the label map (given, or the sorted labels seen) and dead-letters unknown labels."""
    if labels is None:
        return items, tuple(sorted({it.label for it in items}))
    known = set(labels)
    if len(known) != len(labels):
        raise ValueError(f"labels must be unique. Received: {list(labels)}")
    kept = []
    for it in items:
        if it.label in known:
            kept.append(it)
        else:
            dead.append(dead_letter(it.path, UNKNOWN_LABEL, f"label {it.label!r} not in the label map"))
    return kept, tuple(labels)


def _exists(path: str, dead: list[dict]) -> bool:
    if os.path.isfile(path):
        return True
    dead.append(dead_letter(path, MISSING_FILE, "no such file"))
    return False


def read_labels_file(path: str) -> tuple[str, ...]:
    """A label map file: one name per line, or ``index name`` lines (UCF101 classInd.txt)."""
    names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if parts:
                names.append(parts[-1] if len(parts) > 1 and parts[0].isdigit() else line.strip())
    return tuple(names)


# ----------------------------------------------------------------------------- readers


def read_folder(
    root: str,
    *,
    labels: Sequence[str] | None = None,
    group_pattern: Sequence[str] | str | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> Manifest:
    """``root/<label>/.../<video>``: the label is the first folder, any depth below it.

    Groups come from ``group_pattern`` (regex on the file name; default UCF-style ``_gNN_``,
    then ``actorNN``, else each video is its own group). Label folders not in ``labels``
    become ``unknown_label`` dead letters.
    """
    if not os.path.isdir(root):
        raise ValueError(f"root must be a directory. Received: root={root!r}")
    exts = tuple(e.lower() for e in extensions)
    items = []
    for label in sorted(os.listdir(root)):
        label_dir = os.path.join(root, label)
        if not os.path.isdir(label_dir) or label.startswith("."):
            continue
        for dirpath, dirnames, filenames in os.walk(label_dir):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(exts) and not name.startswith("."):
                    path = os.path.join(dirpath, name)
                    rel = os.path.relpath(path, root)
                    items.append(VideoItem(path=path, label=label,
                                           group=group_from_name(name, group_pattern),
                                           video_id=os.path.splitext(rel)[0].replace(os.sep, "/")))
    items.sort(key=lambda it: (it.label, it.video_id))
    dead: list[dict] = []
    items, label_map = _check_labels(items, labels, dead)
    return Manifest(tuple(items), label_map, tuple(dead))


def _float_or_none(value: str | None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


def read_csv(
    path: str,
    *,
    root: str | None = None,
    labels: Sequence[str] | None = None,
    group_pattern: Sequence[str] | str | None = None,
) -> Manifest:
    """A CSV manifest ``path,label[,group][,split][,start_sec,end_sec]`` with a header row.

    Relative paths are taken from ``root`` (default: the CSV's folder). An empty group is read
    from the file name like :func:`read_folder`; an empty split is assigned later by hash.
    """
    root = root if root is not None else os.path.dirname(os.path.abspath(path))
    items, dead = [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"CSV manifest {path} needs columns path,label; missing {sorted(missing)}. "
                             f"Received header: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            video = os.path.join(root, (row.get("path") or "").strip())
            try:
                label = (row.get("label") or "").strip()
                if not label or not (row.get("path") or "").strip():
                    raise ValueError("empty path or label")
                item = VideoItem(
                    path=video, label=label,
                    group=(row.get("group") or "").strip() or group_from_name(video, group_pattern),
                    split=(row.get("split") or "").strip() or None,
                    start_sec=_float_or_none(row.get("start_sec")),
                    end_sec=_float_or_none(row.get("end_sec")),
                    video_id=(row.get("video_id") or "").strip())
            except ValueError as e:
                dead.append(dead_letter(video, BAD_ROW, f"{path}:{n}: {e}"))
                continue
            if _exists(video, dead):
                items.append(item)
    items, label_map = _check_labels(items, labels, dead)
    return Manifest(tuple(items), label_map, tuple(dead))


def _index_videos(root: str, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> dict[str, str]:
    """File stem -> path of every video under ``root`` (first one wins on duplicates)."""
    found: dict[str, str] = {}
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(exts):
                found.setdefault(os.path.splitext(name)[0], os.path.join(dirpath, name))
    return found


def read_ucf101(root: str, splits_dir: str, *, split: int = 1) -> Manifest:
    """UCF101: ``classInd.txt``, ``trainlist0N.txt`` / ``testlist0N.txt`` of official split N.

    Paths in the lists are relative to ``root``; group = the ``gNN`` in the file name (the
    actor group the official splits keep apart). The label comes from the list's folder,
    matched to classInd case-insensitively (the HandStandPushups folder/name mismatch).
    """
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3. Received: split={split}")
    labels = read_labels_file(os.path.join(splits_dir, "classInd.txt"))
    by_lower = {name.lower(): name for name in labels}
    items, dead = [], []
    for split_name, list_name in (("train", f"trainlist0{split}.txt"),
                                  ("test", f"testlist0{split}.txt")):
        with open(os.path.join(splits_dir, list_name), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                rel = parts[0].replace("\\", "/")
                path = os.path.join(root, *rel.split("/"))
                folder = rel.split("/")[0] if "/" in rel else ""
                label = by_lower.get(folder.lower(), folder)
                if _exists(path, dead):
                    items.append(VideoItem(path=path, label=label, split=split_name,
                                           group=group_from_name(rel, r"_(g\d+)_"),
                                           video_id=os.path.splitext(os.path.basename(rel))[0]))
    items, label_map = _check_labels(items, labels, dead)
    return Manifest(tuple(items), label_map, tuple(dead))


def read_hmdb51(root: str, splits_dir: str, *, split: int = 1) -> Manifest:
    """HMDB51: ``<class>_test_split<N>.txt`` lines ``<video> <mark>``, 1 = train, 2 = test,
    0 = not used by split N (left out, not a dead letter). Videos are ``root/<class>/<video>``.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3. Received: split={split}")
    suffix = f"_test_split{split}.txt"
    files = sorted(n for n in os.listdir(splits_dir) if n.endswith(suffix))
    if not files:
        raise ValueError(f"no *{suffix} files in {splits_dir}")
    labels = tuple(n[: -len(suffix)] for n in files)
    items, dead = [], []
    for label, name in zip(labels, files):
        with open(os.path.join(splits_dir, name), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    if parts:
                        dead.append(dead_letter(os.path.join(root, label, parts[0]), BAD_ROW,
                                                f"{name}: expected '<video> <0|1|2>', got {line.strip()!r}"))
                    continue
                if parts[1] == "0":
                    continue
                path = os.path.join(root, label, parts[0])
                if _exists(path, dead):
                    items.append(VideoItem(path=path, label=label,
                                           split="train" if parts[1] == "1" else "test",
                                           group=os.path.splitext(parts[0])[0]))
    return Manifest(tuple(items), labels, tuple(dead))


_KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val",
                    "test": "test"}


def read_kinetics(csv_path: str, videos_root: str, *,
                  labels: Sequence[str] | None = None) -> Manifest:
    """Kinetics CSV ``label,youtube_id,time_start,time_end,split``.

    A row maps to ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (an already trimmed clip)
    anywhere under ``videos_root``, else to ``<youtube_id>.<ext>`` with the time range
    applied at decode. Group = youtube_id; "validate" is stored as split "val".
    """
    index = _index_videos(videos_root)
    items, dead = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"Kinetics CSV {csv_path} needs columns {sorted(need)}. "
                             f"Received header: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            yid = (row.get("youtube_id") or "").strip()
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                label = (row.get("label") or "").strip()
                if not yid or not label:
                    raise ValueError("empty youtube_id or label")
            except (TypeError, ValueError) as e:
                dead.append(dead_letter(yid or f"{csv_path}:{n}", BAD_ROW, f"{csv_path}:{n}: {e}"))
                continue
            split = _KINETICS_SPLITS.get((row.get("split") or "").strip().lower())
            trimmed = index.get(f"{yid}_{start:06d}_{end:06d}")
            whole = index.get(yid)
            if trimmed is None and whole is None:
                dead.append(dead_letter(os.path.join(videos_root, f"{yid}_{start:06d}_{end:06d}"),
                                        MISSING_FILE, "no video file for this row"))
                continue
            items.append(VideoItem(
                path=trimmed or whole, label=label, group=yid, split=split,
                start_sec=None if trimmed else float(start),
                end_sec=None if trimmed else float(end),
                video_id=f"{yid}_{start:06d}_{end:06d}"))
    items, label_map = _check_labels(items, labels, dead)
    return Manifest(tuple(items), label_map, tuple(dead))


NTU_PATTERN = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
# Official training subjects of the cross-subject protocol (NTU RGB+D 60 and 120).
NTU_XSUB_TRAIN = frozenset((
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49,
    50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93,
    94, 95, 97, 98, 100, 103))
NTU_PROTOCOLS = ("xsub", "xview", "xset")


def ntu_split(name: str, protocol: str = "xsub") -> str | None:
    """train/test of an NTU file name under a protocol: cross-subject (training subjects),
    cross-view (cameras 2 and 3 train, camera 1 test), cross-setup (even setups train)."""
    if protocol not in NTU_PROTOCOLS:
        raise ValueError(f"protocol must be one of {NTU_PROTOCOLS}. Received: {protocol!r}")
    m = NTU_PATTERN.search(name)
    if not m:
        return None
    setup, camera, subject = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if protocol == "xsub":
        train = subject in NTU_XSUB_TRAIN
    elif protocol == "xview":
        train = camera in (2, 3)
    else:
        train = setup % 2 == 0
    return "train" if train else "test"


def read_ntu(root: str, *, protocol: str = "xsub", labels: Sequence[str] | None = None) -> Manifest:
    """NTU RGB+D videos ``SsssCcccPpppRrrrAaaa_rgb.avi`` anywhere under ``root``.

    Label = the action ``Aaaa`` (e.g. "A013"; pass ``labels`` to fix the map and order),
    group = the performer ``Pppp``, split by the official protocol. Names that do not
    match the pattern are ``bad_row`` dead letters.
    """
    if protocol not in NTU_PROTOCOLS:
        raise ValueError(f"protocol must be one of {NTU_PROTOCOLS}. Received: {protocol!r}")
    items, dead = [], []
    for stem, path in sorted(_index_videos(root).items()):
        m = NTU_PATTERN.search(stem)
        if not m:
            dead.append(dead_letter(path, BAD_ROW, "file name does not match SsssCcccPpppRrrrAaaa"))
            continue
        items.append(VideoItem(path=path, label=f"A{m.group(5)}", group=f"P{m.group(3)}",
                               split=ntu_split(stem, protocol), video_id=m.group(0)))
    items, label_map = _check_labels(items, labels, dead)
    return Manifest(tuple(items), label_map, tuple(dead))


def carve_split(manifest: Manifest, ratio: float, *, source: str = "train", target: str = "val",
                seed: int = 0) -> Manifest:
    """Moves about ``ratio`` of the groups of split ``source`` to ``target`` (by group hash):
    a validation set for datasets whose official splits are only train/test."""
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must be in (0, 1). Received: ratio={ratio}")
    pool = [dataclasses.replace(it, split=None) for it in manifest.items if it.split == source]
    moved = {(it.path, it.video_id): it.split
             for it in assign_splits(pool, {source: 1 - ratio, target: ratio}, seed)}
    items = tuple(dataclasses.replace(it, split=moved[(it.path, it.video_id)])
                  if it.split == source else it for it in manifest.items)
    return dataclasses.replace(manifest, items=items)
