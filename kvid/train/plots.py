"""PNG figures people would rather look at than read: curves, confusion matrix, attention.

Each function draws on its own :class:`matplotlib.figure.Figure` and saves it to a PNG file,
without pyplot: no backend is selected and nothing process-wide changes, so this works
headless and leaves a notebook's inline backend alone (show a PNG there with
``IPython.display.Image(path)``).
"""

from __future__ import annotations

import csv
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def plot_training_curves(csv_log: str, path: str) -> str:
    """Loss and accuracy per epoch from Keras' CSVLogger file (train and validation)."""
    with open(csv_log) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_log} has no epochs")
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            # CSVLogger writes val_* columns of "NA" when a run has no validation data.
            values = [_number(r.get(key)) for r in rows]
            if not all(np.isnan(values)):
                ax.plot(epochs, values, style, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str,
                          title: str = "confusion matrix") -> str:
    """Rows are true classes, columns predicted; cells show counts, colour shows recall."""
    matrix = np.asarray(matrix)
    n = len(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    recall = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    size = max(4.0, 0.6 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                        color="white" if recall[i, j] > 0.5 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_attention_maps(frames: np.ndarray, attention: np.ndarray, path: str,
                        title: str = "attention") -> str:
    """Frames [T, H, W, 3] (uint8 or [0, 1]) with attention [T, K, K] overlaid, one column a step."""
    frames = np.asarray(frames)
    attention = np.asarray(attention)
    t = frames.shape[0]
    fig = Figure(figsize=(1.8 * t, 2.2))
    axes = fig.subplots(1, t, squeeze=False)
    for i in range(t):
        ax = axes[0, i]
        img = frames[i].astype(np.float32)
        ax.imshow(img / 255.0 if img.max() > 1.0 else img)
        ax.imshow(attention[i], cmap="jet", alpha=0.45, interpolation="bilinear",
                  extent=(0, frames.shape[2], frames.shape[1], 0))
        ax.set_axis_off()
        ax.set_title(f"t={i}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_view_costs(rows: Sequence[dict], path: str, title: str = "") -> str:
    """Video-level top-1 against GFLOPs per video for each views setting (clips x crops)
    of ``kvid evaluate``'s cost-vs-views table."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    x = [r["gflops_per_video"] for r in rows]
    y = [r["top1"] for r in rows]
    ax.plot(x, y, "-o")
    for r, xi, yi in zip(rows, x, y):
        ax.annotate(f"{r['clips']}x{r['crops']}", (xi, yi), textcoords="offset points",
                    xytext=(4, 4))
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per video (one clip's x views)")
    ax.set_ylabel("video top-1")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title or "accuracy vs the cost of views")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_fusion(rows: Sequence[dict], path: str, title: str = "") -> str:
    """Clip and video top-1 of each fused member and of the fusion, side by side."""
    fig = Figure(figsize=(max(5.0, 1.4 * len(rows) + 2), 4))
    ax = fig.subplots()
    x = np.arange(len(rows))
    for offset, key, name in ((-0.2, "clip_top1", "clip"), (0.2, "video_top1", "video")):
        values = [r[key] for r in rows]
        bars = ax.bar(x + offset, values, width=0.4, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, [f"{r['name']}\n(w {r['weight']:g})" for r in rows], fontsize=8)
    ax.set_ylabel("top-1")
    ax.set_ylim(0, 1.1)
    ax.set_title(title or "members vs fusion")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
