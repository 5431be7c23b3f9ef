"""Late fusion of trained runs: one model whose class scores are the runs' weighted mean of
softmax scores (Simonyan & Zisserman's two-stream averaging, TSN's RGB:flow 1:1.5, LRCN's
1/3:2/3; two-stream I3D is an RGB I3D run and a flow I3D run fused equally).

A fused folder is self-contained as a run is: ``fusion.json`` (members, weights, label
order) and ``members/<i>/``, a copy of each run's model and settings, so deleting or
retraining a source run never changes it. ``kvid evaluate`` reports it beside each member,
``kvid export`` writes one SavedModel taking each member's inputs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from typing import Sequence

FUSION_FILE = "fusion.json"
MEMBERS_DIR = "members"

# Named weights by member modality (score fusion in the papers).
PRESETS = {
    # Simonyan & Zisserman 2014 (averaging); Carreira & Zisserman 2017 (two-stream I3D:
    # "averaging predictions equally").
    "average": {"rgb": 1.0, "flow": 1.0, "rgbdiff": 1.0},
    "tsn": {"rgb": 1.0, "flow": 1.5},  # Wang et al. 2016: spatial 1, temporal 1.5
    "lrcn": {"rgb": 1 / 3, "flow": 2 / 3},  # Donahue et al. 2015: flow weighted 2/3
}


def is_fusion(path: str) -> bool:
    return os.path.isfile(os.path.join(path, FUSION_FILE))


def _member_files(run_dir: str, checkpoint: str) -> dict[str, str]:
    """The files of a run a fused folder keeps: {name in the copy: source path}."""
    from kvid.train.trainer import RunPaths

    paths = RunPaths(run_dir)
    if not os.path.isfile(paths.config):
        raise FileNotFoundError(f"{run_dir} is not a kvid run folder (no config.json)")
    if not os.path.isfile(paths.input):
        raise FileNotFoundError(f"{run_dir} has no input.json (a run from before kvid kept its "
                                "input settings); train it again to fuse it")
    files = {"config.json": paths.config, "input.json": paths.input,
             "best.keras": paths.model_file(checkpoint)}
    if os.path.isfile(paths.sample):
        files["sample.tfrecord"] = paths.sample
    return files


def resolve_weights(modalities: Sequence[str], weights: Sequence[float] | None,
                    preset: str | None) -> tuple[list[float], str | None]:
    """The members' weights: given, or a preset's by each member's modality (default
    ``average``). Each must be finite and > 0."""
    if weights is not None and preset is not None:
        raise ValueError("give --weights or --preset, not both")
    if weights is None:
        preset = preset or "average"
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}. Received: {preset!r}")
        missing = sorted(set(modalities) - set(PRESETS[preset]))
        if missing:
            raise ValueError(f"preset {preset!r} has no weight for {', '.join(missing)} "
                             f"(it weighs {', '.join(PRESETS[preset])}): give --weights")
        weights = [PRESETS[preset][m] for m in modalities]
    weights = [float(w) for w in weights]
    if len(weights) != len(modalities):
        raise ValueError(f"--weights needs one weight per run ({len(modalities)}). "
                         f"Received: {len(weights)} weights")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"weights must be finite and > 0. Received: {weights}")
    return weights, preset


def fuse_runs(run_dirs: Sequence[str], output: str, *, weights: Sequence[float] | None = None,
              preset: str | None = None, checkpoint: str = "best",
              overwrite: bool = False) -> dict:
    """Writes the fused folder ``output`` (atomically: a hidden temp folder, then a rename)
    and returns its ``fusion.json``. The runs must have the same classes (in any order)."""
    from kvid.train.export import staged

    if len(run_dirs) < 2:
        raise ValueError(f"fusion needs at least two runs. Received: {len(run_dirs)}")
    if os.path.abspath(output) in {os.path.abspath(r) for r in run_dirs}:
        raise ValueError(f"the fused folder {output} must not be one of its runs")
    if os.path.lexists(output) and not (os.path.isdir(output) and not os.listdir(output)) \
            and not overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it")
    members, files = [], []
    for run_dir in run_dirs:
        found = _member_files(run_dir, checkpoint)
        with open(found["input.json"]) as f:
            saved = json.load(f)["input"]
        with open(found["config.json"]) as f:
            model = json.load(f).get("model")
        if saved.get("modality") not in PRESETS["average"]:
            raise ValueError(f"{run_dir} takes {saved.get('modality')!r}; a fused run's "
                             "members take one stream each (rgb or flow)")
        members.append({"source": os.path.abspath(run_dir), "model": model,
                        "modality": saved["modality"], "labels": list(saved["labels"])})
        files.append(found)
    labels = members[0]["labels"]
    for m in members[1:]:
        if sorted(m["labels"]) != sorted(labels):
            extra = sorted(set(m["labels"]) ^ set(labels))
            raise ValueError(f"{m['source']} has other classes than {members[0]['source']} "
                             f"(not in both: {extra[:5]})")
    weights, preset = resolve_weights([m["modality"] for m in members], weights, preset)
    for i, (m, w) in enumerate(zip(members, weights)):
        m.update(dir=f"{MEMBERS_DIR}/{i}", weight=w)
        del m["labels"]
    spec = {"labels": labels, "preset": preset, "checkpoint": checkpoint, "members": members}
    with staged(output, overwrite) as (_, new):
        for m, found in zip(members, files):
            dest = os.path.join(new, m["dir"])
            os.makedirs(dest)
            for name, src in found.items():
                shutil.copy2(src, os.path.join(dest, name))
        with open(os.path.join(new, FUSION_FILE), "w") as f:
            json.dump(spec, f, indent=2)
    return spec


@dataclasses.dataclass
class Fusion:
    path: str
    labels: list[str]
    members: list  # kvid.train.runs.Run, one per member
    weights: list[float]
    preset: str | None
    spec: dict

    def label_order(self, run) -> tuple[int, ...] | None:
        """For each fused label, its index among ``run``'s outputs (None: same order)."""
        if run.labels == self.labels:
            return None
        return tuple(run.labels.index(name) for name in self.labels)

    def names(self) -> list[str]:
        """A short name per member: its model and stream (``i3d_rgb/flow``)."""
        return [f"{m.config.model}/{m.input.modality}" for m in self.members]


def load_fusion(path: str) -> Fusion:
    from kvid.train.runs import load_run

    with open(os.path.join(path, FUSION_FILE)) as f:
        spec = json.load(f)
    runs = [load_run(os.path.join(path, m["dir"])) for m in spec["members"]]
    return Fusion(path, list(spec["labels"]), runs, [float(m["weight"]) for m in
                                                     spec["members"]], spec.get("preset"), spec)


def fuse_scores(probs: Sequence, weights: Sequence[float]):
    """The weighted mean of the members' [N, C] scores (already in the fused label order)."""
    import numpy as np

    total = float(sum(weights))
    return sum(np.asarray(p, np.float64) * (w / total) for p, w in zip(probs, weights))
