"""Manifests: what videos to ingest, with their label, group and (official) split.

Every reader returns a :class:`Manifest`: the items, the label map, dead letters for the
inputs that cannot be ingested (missing file, unknown label, bad row, a folder that cannot be
listed) and the entries it skipped, each with its reason (a README, a hidden file, a video
outside any label folder). Nothing is dropped without a word: ``inputs = videos with clips +
dead letters + skipped`` holds for every run and is recorded in dataset.json. Splits come
from the dataset's official split files when it has them, otherwise :func:`assign_splits`
puts whole groups into train/val/test by a seeded hash, so a group (actor, UCF101 ``gNN``)
never straddles two splits.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
import re
import stat
from typing import Iterable, Mapping, Sequence

from kvid import files, validate
from kvid.video.decode import MISSING_FILE, UNREADABLE

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".gif",
                    ".flv", ".wmv", ".3gp", ".ts")

# Default group patterns, tried in order on the file name: UCF101 "_g08_", then "actor03".
DEFAULT_GROUP_PATTERNS = (r"_g(\d+)_", r"(actor\d+)")

# Dead-letter reasons produced here: real inputs that failed (decode reasons live in
# kvid.video.decode, "too_short" in kvid.ingest.clips).
UNKNOWN_LABEL = "unknown_label"
BAD_ROW = "bad_row"
UNREADABLE_DIR = "unreadable_dir"  # a folder that cannot be listed: how many videos is unknown
DUPLICATE_VIDEO_ID = "duplicate_video_id"  # a second input with the id of an earlier one

# Skipped reasons: entries of an input folder (or list) that are not videos to ingest. They are
# listed with the reason in dataset.json ("skipped") and counted as inputs, never dropped.
HIDDEN = "hidden"  # .DS_Store, .git/, .hidden.mp4: not descended into, not ingested
NOT_VIDEO_EXTENSION = "not_video_extension"  # see read_folder: names are not sniffed
OUTSIDE_LABEL_FOLDER = "outside_label_folder"  # a file directly under a labelled root
DIRECTORY_NAMED_LIKE_VIDEO = "directory_named_like_video"  # x.mp4/ (its contents are walked)
EMPTY_FOLDER = "empty_folder"
NOT_REGULAR_FILE = "not_regular_file"  # a FIFO, socket or device (opening a FIFO would block)
SYMLINK_LOOP = "symlink_loop"  # a symlink to a folder above it
NOT_IN_SPLIT = "not_in_official_split"  # HMDB51 mark 0: the split does not use the video

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
        # Finite, non-negative times: a CSV's "inf"/"nan" is a bad row, not a decode that
        # seeks to infinity or a range that never ends.
        validate.non_negative("start_sec", self.start_sec, optional=True)
        validate.positive("end_sec", self.end_sec, optional=True)
        if not self.video_id:
            object.__setattr__(self, "video_id", _default_video_id(self))
        if (self.start_sec is not None and self.end_sec is not None
                and self.end_sec <= self.start_sec):
            raise ValueError(f"end_sec must be greater than start_sec. Received: "
                             f"start_sec={self.start_sec}, end_sec={self.end_sec} for {self.path}")


def _ranged_id(name: str, start_sec: float | None, end_sec: float | None) -> str:
    if start_sec is None and end_sec is None:
        return name
    return f"{name}@{start_sec or 0:g}-{'' if end_sec is None else f'{end_sec:g}'}"


def _default_video_id(item: VideoItem) -> str:
    """The file name with its extension (a.mp4 and a.mkv are two videos), plus the range."""
    return _ranged_id(os.path.basename(item.path), item.start_sec, item.end_sec)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Items to ingest, the label map (index = label int), inputs already rejected (dead
    letters) and entries skipped with their reason."""

    items: tuple[VideoItem, ...]
    labels: tuple[str, ...]
    dead_letters: tuple[dict, ...] = ()
    skipped: tuple[dict, ...] = ()

    @property
    def num_inputs(self) -> int:
        """Everything the reader saw: items (each ends with clips or as a dead letter), the
        inputs it rejected and the entries it skipped."""
        return len(self.items) + len(self.dead_letters) + len(self.skipped)

    def with_splits(self, ratios: Mapping[str, float] | None = None, seed: int = 0) -> "Manifest":
        return dataclasses.replace(self, items=tuple(assign_splits(self.items, ratios, seed)))


def dead_letter(path: str, reason: str, error: str, label: str | None = None) -> dict:
    """The one dead-letter shape: what was rejected, a stable reason, the detail, and the
    label it would have had (None when unknown), so a lost class shows up by name."""
    return {"path": str(path), "reason": reason, "error": str(error), "label": label}


def skipped_entry(path: str, reason: str) -> dict:
    """The one skipped shape: an entry that is not a video to ingest, and why."""
    return {"path": str(path), "reason": reason}


# ----------------------------------------------------------------------------- groups, splits


def _group_patterns(patterns: Sequence[str] | str | None) -> tuple[str, ...]:
    """The patterns to try, each checked once: a bad regex is a clear ValueError up front,
    not a traceback (or one bad row per CSV line) later."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    return tuple(validate.regex("group_pattern", p) for p in (patterns or DEFAULT_GROUP_PATTERNS))


def group_from_name(path: str, patterns: Sequence[str] | str | None = None) -> str:
    """The group of a video read from its file name; the video itself when nothing matches.

    Each regex is tried in order; its first capture group (or the whole match) is the group.
    """
    name = os.path.basename(path)
    for pattern in _group_patterns(patterns):
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
            dead.append(dead_letter(it.path, UNKNOWN_LABEL,
                                    f"label {it.label!r} not in the label map", it.label))
    return kept, tuple(labels)


def _unique_ids(items: list[VideoItem], dead: list[dict]) -> list[VideoItem]:
    """Keeps the first item of each video_id; a later one is a dead letter, so two inputs never
    merge into one video in video-level evaluation."""
    first: dict[str, VideoItem] = {}
    kept = []
    for it in items:
        if it.video_id in first:
            dead.append(dead_letter(it.path, DUPLICATE_VIDEO_ID,
                                    f"video_id {it.video_id!r} is already used by "
                                    f"{first[it.video_id].path}", it.label))
        else:
            first[it.video_id] = it
            kept.append(it)
    return kept


def _manifest(items: list[VideoItem], labels: Sequence[str] | None, dead: list[dict],
              skipped: Sequence[dict] = ()) -> Manifest:
    """What every reader ends with: labels outside a given map out, unique video ids, and
    the label map (given, or the labels left)."""
    if labels is not None:
        items, labels = _check_labels(items, labels, dead)
    items = _unique_ids(items, dead)
    label_map = tuple(labels) if labels is not None else tuple(sorted({it.label for it in items}))
    return Manifest(tuple(items), label_map, tuple(dead), tuple(skipped))


def _exists(path: str, dead: list[dict], label: str | None = None,
            listings: dict[str, set[str]] | None = None) -> bool:
    """True for a regular file; otherwise a dead letter saying why (missing, or present but
    unreadable, e.g. inside a folder without permission, which is not "no such file").
    ``listings``: a reader's cache of remote folder listings, so a list of 13k videos costs a
    listing per folder, not a request per video."""
    if files.is_remote(path):  # an object store has objects or nothing
        listings = {} if listings is None else listings
        folder = files.parent(path)
        if folder not in listings:
            listings[folder] = {p for p, _ in files.objects(folder)}
        if path not in listings[folder]:
            dead.append(dead_letter(path, MISSING_FILE, "no such object", label))
            return False
        return True
    try:
        st = os.stat(path)
    except FileNotFoundError:
        dead.append(dead_letter(path, MISSING_FILE, "no such file", label))
        return False
    except OSError as e:
        dead.append(dead_letter(path, UNREADABLE, f"{type(e).__name__}: {e}", label))
        return False
    if stat.S_ISREG(st.st_mode):
        return True
    kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    dead.append(dead_letter(path, UNREADABLE, f"{kind}: {path}", label))
    return False


def read_labels_file(path: str) -> tuple[str, ...]:
    """A label map file: one name per line, or ``index name`` lines (UCF101 classInd.txt)."""
    names = []
    with files.open_text(path) as f:
        for line in f:
            parts = line.split()
            if parts:
                names.append(parts[-1] if len(parts) > 1 and parts[0].isdigit() else line.strip())
    return tuple(names)


# ----------------------------------------------------------------------------- folders


@dataclasses.dataclass
class FolderScan:
    """What :func:`scan_folder` found: ``videos`` as (path, path relative to the root with
    "/"), the folders it could not list (dead letters) and every entry it skipped."""

    videos: list[tuple[str, str]]
    dead_letters: list[dict]
    skipped: list[dict]


def _entries(path: str) -> list[os.DirEntry]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: e.name)


def scan_folder(root: str, extensions: Sequence[str] = VIDEO_EXTENSIONS, *,
                labelled: bool = False) -> FolderScan:
    """Every entry under ``root``, once: a video, a dead letter or a skipped entry.

    ``os.walk`` ignores folders it cannot list, which silently dropped their videos (a whole
    class when a label folder was unreadable); here each one is an ``unreadable_dir`` dead
    letter carrying the label it would have held. ``labelled``: the first level are label
    folders, so a file directly under ``root`` is skipped (``outside_label_folder``).
    Symlinked folders are followed (a loop back to a folder above is skipped). An unreadable
    ``root`` itself is a ValueError: there is nothing to count.
    """
    exts = tuple(e.lower() for e in extensions)
    if files.is_remote(root):
        return _scan_objects(root, exts, labelled)
    scan = FolderScan([], [], [])
    try:
        top = _entries(root)
    except OSError as e:
        raise ValueError(f"cannot list the input folder {root}: "
                         f"{type(e).__name__}: {e.strerror or e}") from None

    def visit(entries, rel: str, above: frozenset):
        for entry in entries:
            path = entry.path
            child = f"{rel}/{entry.name}" if rel else entry.name
            label = child.split("/")[0] if labelled else None
            if entry.name.startswith("."):
                scan.skipped.append(skipped_entry(path, HIDDEN))
                continue
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError as e:  # a symlink whose target cannot be looked at
                scan.dead_letters.append(dead_letter(path, UNREADABLE,
                                                     f"{type(e).__name__}: {e}", label))
                continue
            if is_dir:
                real = os.path.realpath(path)
                if real in above:
                    scan.skipped.append(skipped_entry(path, SYMLINK_LOOP))
                    continue
                named_like_video = entry.name.lower().endswith(exts) and (rel or not labelled)
                if named_like_video:
                    scan.skipped.append(skipped_entry(path, DIRECTORY_NAMED_LIKE_VIDEO))
                try:
                    inner = _entries(path)
                except OSError as e:
                    scan.dead_letters.append(dead_letter(
                        path, UNREADABLE_DIR,
                        f"cannot list folder ({type(e).__name__}: {e.strerror or e}); its "
                        f"videos are not ingested", label))
                    continue
                if not inner and not named_like_video:
                    scan.skipped.append(skipped_entry(path, EMPTY_FOLDER))
                visit(inner, child, above | {real})
            elif labelled and not rel:
                scan.skipped.append(skipped_entry(path, OUTSIDE_LABEL_FOLDER))
            elif not entry.name.lower().endswith(exts):
                scan.skipped.append(skipped_entry(path, NOT_VIDEO_EXTENSION))
            elif is_file:
                scan.videos.append((path, child))
            elif entry.is_symlink():
                scan.dead_letters.append(dead_letter(path, MISSING_FILE,
                                                     "broken symbolic link", label))
            else:
                scan.skipped.append(skipped_entry(path, NOT_REGULAR_FILE))

    visit(top, "", frozenset({os.path.realpath(root)}))
    return scan


def _scan_objects(root: str, exts: tuple[str, ...], labelled: bool) -> FolderScan:
    """:func:`scan_folder` on an object store, which has only objects under a prefix: no
    unreadable folders, symlinks or special files; empty "folder marker" objects (``a/``)
    are not entries."""
    scan = FolderScan([], [], [])
    prefix = root.rstrip("/") + "/"
    for path, size in files.objects(root):
        rel = path[len(prefix):]
        if not rel or rel.endswith("/"):
            continue
        parts = rel.split("/")
        hidden = next((i for i, part in enumerate(parts) if part.startswith(".")), None)
        if hidden is not None:  # listed once, at the hidden folder or file
            entry = prefix + "/".join(parts[:hidden + 1])
            if not any(s["path"] == entry for s in scan.skipped[-1:]):
                scan.skipped.append(skipped_entry(entry, HIDDEN))
        elif labelled and len(parts) == 1:
            scan.skipped.append(skipped_entry(path, OUTSIDE_LABEL_FOLDER))
        elif not parts[-1].lower().endswith(exts):
            scan.skipped.append(skipped_entry(path, NOT_VIDEO_EXTENSION))
        else:
            scan.videos.append((path, rel))
    return scan


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
    become ``unknown_label`` dead letters. ``video_id`` is the path relative to ``root``
    with its extension (``walk/a.mp4``), unique even when ``a.mp4`` and ``a.mkv`` sit side
    by side.

    Files are taken by extension, not sniffed: PyAV opens JPEG, PNG and even some text
    formats as one-frame "videos", so probing every README, annotation or thumbnail would
    ingest garbage; a video with another extension is listed in ``skipped``
    (``not_video_extension``) for the user to rename. Everything else that is not ingested
    is listed there or in the dead letters too (see :func:`scan_folder`).
    """
    patterns = _group_patterns(group_pattern)
    if not files.isdir(root):
        raise ValueError(f"root must be a directory. Received: root={root!r}")
    scan = scan_folder(root, extensions, labelled=True)
    items = [VideoItem(path=path, label=rel.split("/")[0],
                       group=group_from_name(path, patterns), video_id=rel)
             for path, rel in scan.videos]
    items.sort(key=lambda it: (it.label, it.video_id))
    return _manifest(items, labels, scan.dead_letters, scan.skipped)


def _float_or_none(value: str | None) -> float | None:
    value = (value or "").strip()
    return float(value) if value else None


def _relative_id(path: str, root: str) -> str:
    """``path`` relative to ``root`` with "/" (the path itself when outside ``root``)."""
    if files.is_remote(path):
        prefix = root.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith(".." + os.sep):
        rel = os.path.abspath(path)
    return rel.replace(os.sep, "/")


def read_csv(
    path: str,
    *,
    root: str | None = None,
    labels: Sequence[str] | None = None,
    group_pattern: Sequence[str] | str | None = None,
) -> Manifest:
    """A CSV manifest ``path,label[,group][,split][,start_sec,end_sec][,video_id]`` with a
    header row.

    Relative paths are taken from ``root`` (default: the CSV's folder). An empty group is read
    from the file name like :func:`read_folder`; an empty split is assigned later by hash. An
    empty video_id is the path relative to ``root`` with its extension (and the time range).
    Rows with a bad value (empty label, a time that is not a finite number >= 0, end before
    start) are ``bad_row`` dead letters.
    """
    patterns = _group_patterns(group_pattern)
    root = root if root is not None else files.parent(path)
    items, dead, listings = [], [], {}
    with files.open_text(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"CSV manifest {path} needs columns path,label; missing {sorted(missing)}. "
                             f"Received header: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            given = (row.get("path") or "").strip()
            video = given if files.is_remote(given) else files.join(root, given)
            label = (row.get("label") or "").strip()
            try:
                if not label or not (row.get("path") or "").strip():
                    raise ValueError("empty path or label")
                start = _float_or_none(row.get("start_sec"))
                end = _float_or_none(row.get("end_sec"))
                item = VideoItem(
                    path=video, label=label,
                    group=(row.get("group") or "").strip() or group_from_name(video, patterns),
                    split=(row.get("split") or "").strip() or None,
                    start_sec=start, end_sec=end,
                    video_id=(row.get("video_id") or "").strip()
                    or _ranged_id(_relative_id(video, root), start, end))
            except ValueError as e:
                dead.append(dead_letter(video, BAD_ROW, f"{path}:{n}: {e}", label or None))
                continue
            if _exists(video, dead, label, listings):
                items.append(item)
    return _manifest(items, labels, dead)


def _index_videos(root: str, dead: list[dict],
                  extensions: Sequence[str] = VIDEO_EXTENSIONS) -> dict[str, str]:
    """File stem -> path of every video under ``root`` (first one wins on duplicates), for
    rows to look their file up in; folders that cannot be listed go to ``dead``."""
    scan = scan_folder(root, extensions)
    dead.extend(scan.dead_letters)
    found: dict[str, str] = {}
    for path, _ in scan.videos:
        found.setdefault(os.path.splitext(os.path.basename(path))[0], path)
    return found


def read_ucf101(root: str, splits_dir: str, *, split: int = 1) -> Manifest:
    """UCF101: ``classInd.txt``, ``trainlist0N.txt`` / ``testlist0N.txt`` of official split N.

    Paths in the lists are relative to ``root`` and are the video ids; group = the ``gNN``
    in the file name (the actor group the official splits keep apart). The label comes from
    the list's folder, matched to classInd case-insensitively (the HandStandPushups
    folder/name mismatch).
    """
    if split not in (1, 2, 3):
        raise ValueError(f"UCF101 split must be 1, 2 or 3. Received: split={split}")
    labels = read_labels_file(files.join(splits_dir, "classInd.txt"))
    by_lower = {name.lower(): name for name in labels}
    items, dead, listings = [], [], {}
    for split_name, list_name in (("train", f"trainlist0{split}.txt"),
                                  ("test", f"testlist0{split}.txt")):
        with files.open_text(files.join(splits_dir, list_name)) as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                rel = parts[0].replace("\\", "/")
                path = files.join(root, *rel.split("/"))
                folder = rel.split("/")[0] if "/" in rel else ""
                label = by_lower.get(folder.lower(), folder)
                if _exists(path, dead, label, listings):
                    items.append(VideoItem(path=path, label=label, split=split_name,
                                           group=group_from_name(rel, r"_(g\d+)_"),
                                           video_id=rel))
    return _manifest(items, labels, dead)


def read_hmdb51(root: str, splits_dir: str, *, split: int = 1) -> Manifest:
    """HMDB51: ``<class>_test_split<N>.txt`` lines ``<video> <mark>``, 1 = train, 2 = test,
    0 = not used by split N (listed as skipped, ``not_in_official_split``). Videos are
    ``root/<class>/<video>``; the video id is ``<class>/<video>``.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3. Received: split={split}")
    suffix = f"_test_split{split}.txt"
    lists = [n for n in files.listdir(splits_dir) if n.endswith(suffix)]
    if not lists:
        raise ValueError(f"no *{suffix} files in {splits_dir}")
    labels = tuple(n[: -len(suffix)] for n in lists)
    items, dead, skipped, listings = [], [], [], {}
    for label, name in zip(labels, lists):
        with files.open_text(files.join(splits_dir, name)) as f:
            for line in f:
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                    if parts:
                        dead.append(dead_letter(files.join(root, label, parts[0]), BAD_ROW,
                                                f"{name}: expected '<video> <0|1|2>', got "
                                                f"{line.strip()!r}", label))
                    continue
                path = files.join(root, label, parts[0])
                if parts[1] == "0":
                    skipped.append(skipped_entry(path, NOT_IN_SPLIT))
                    continue
                if _exists(path, dead, label, listings):
                    items.append(VideoItem(path=path, label=label,
                                           split="train" if parts[1] == "1" else "test",
                                           group=os.path.splitext(parts[0])[0],
                                           video_id=f"{label}/{parts[0]}"))
    return _manifest(items, labels, dead, skipped)


_KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val",
                    "test": "test"}


def read_kinetics(csv_path: str, videos_root: str, *,
                  labels: Sequence[str] | None = None) -> Manifest:
    """Kinetics CSV ``label,youtube_id,time_start,time_end,split``.

    A row maps to ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (an already trimmed clip)
    anywhere under ``videos_root``, else to ``<youtube_id>.<ext>`` with the time range
    applied at decode. Group = youtube_id; "validate" is stored as split "val". The rows are
    the inputs; a folder under ``videos_root`` that cannot be listed is a dead letter too
    (the rows whose file it hides say so).
    """
    items, dead = [], []
    index = _index_videos(videos_root, dead)
    hidden_by = f"; {len(dead)} folder(s) under {videos_root} cannot be listed" if dead else ""
    with files.open_text(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"label", "youtube_id", "time_start", "time_end"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"Kinetics CSV {csv_path} needs columns {sorted(need)}. "
                             f"Received header: {reader.fieldnames}")
        for n, row in enumerate(reader, start=2):
            yid = (row.get("youtube_id") or "").strip()
            label = (row.get("label") or "").strip()
            try:
                start = validate.non_negative("time_start", float(row["time_start"]))
                end = validate.positive("time_end", float(row["time_end"]))
                start, end = int(start), int(end)
                if not yid or not label:
                    raise ValueError("empty youtube_id or label")
            except (TypeError, ValueError) as e:
                dead.append(dead_letter(yid or f"{csv_path}:{n}", BAD_ROW, f"{csv_path}:{n}: {e}",
                                        label or None))
                continue
            split = _KINETICS_SPLITS.get((row.get("split") or "").strip().lower())
            trimmed = index.get(f"{yid}_{start:06d}_{end:06d}")
            whole = index.get(yid)
            if trimmed is None and whole is None:
                dead.append(dead_letter(files.join(videos_root, f"{yid}_{start:06d}_{end:06d}"),
                                        MISSING_FILE, f"no video file for this row{hidden_by}",
                                        label))
                continue
            try:
                items.append(VideoItem(
                    path=trimmed or whole, label=label, group=yid, split=split,
                    start_sec=None if trimmed else float(start),
                    end_sec=None if trimmed else float(end),
                    video_id=f"{yid}_{start:06d}_{end:06d}"))
            except ValueError as e:  # a whole video with time_end <= time_start
                dead.append(dead_letter(whole, BAD_ROW, f"{csv_path}:{n}: {e}", label))
    return _manifest(items, labels, dead)


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
    group = the performer ``Pppp``, split by the official protocol, video id =
    ``SsssCcccPpppRrrrAaaa`` (a second file of the same recording is a
    ``duplicate_video_id`` dead letter). Names that do not match the pattern are ``bad_row``
    dead letters; other entries under ``root`` are listed as skipped (:func:`scan_folder`).
    """
    if protocol not in NTU_PROTOCOLS:
        raise ValueError(f"protocol must be one of {NTU_PROTOCOLS}. Received: {protocol!r}")
    if not files.isdir(root):
        raise ValueError(f"root must be a directory. Received: root={root!r}")
    scan = scan_folder(root)
    items, dead = [], scan.dead_letters
    for path, rel in sorted(scan.videos, key=lambda v: (os.path.basename(v[0]), v[1])):
        stem = os.path.splitext(os.path.basename(path))[0]
        m = NTU_PATTERN.search(stem)
        if not m:
            dead.append(dead_letter(path, BAD_ROW, "file name does not match SsssCcccPpppRrrrAaaa"))
            continue
        items.append(VideoItem(path=path, label=f"A{m.group(5)}", group=f"P{m.group(3)}",
                               split=ntu_split(stem, protocol), video_id=m.group(0)))
    return _manifest(items, labels, dead, scan.skipped)


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
