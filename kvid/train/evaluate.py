"""Clip- and video-level evaluation: the one JSON report and the confusion-matrix PNG."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from kvid.train.plots import plot_confusion_matrix


def classification_report(y_true: Sequence[int], probs: np.ndarray,
                          labels: Sequence[str]) -> dict:
    """Top-1, top-5, mean class accuracy, per-class accuracy and the confusion matrix."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(labels)
    if probs.ndim != 2 or probs.shape[1] != n_classes or len(y_true) != len(probs):
        raise ValueError(f"Expected probs [N, {n_classes}] for N={len(y_true)} labels. "
                         f"Received: probs.shape={probs.shape}")
    pred = probs.argmax(axis=1)
    k = min(5, n_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, pred), 1)
    support = cm.sum(axis=1)
    per_class = {labels[i]: (float(cm[i, i] / support[i]) if support[i] else None)
                 for i in range(n_classes)}
    present = [v for v in per_class.values() if v is not None]
    return {
        "count": int(len(y_true)),
        "top1": float((pred == y_true).mean()) if len(y_true) else 0.0,
        f"top{k}": float((topk == y_true[:, None]).any(axis=1).mean()) if len(y_true) else 0.0,
        "mean_class_accuracy": float(np.mean(present)) if present else 0.0,
        "per_class_accuracy": per_class,
        "confusion_matrix": cm.tolist(),
        "chance": 1.0 / n_classes,
    }


def write_report(report: dict, labels: Sequence[str], out_dir: str, prefix: str = "") -> dict:
    """Writes ``<prefix>report.json`` and a confusion-matrix PNG and JSON per level."""
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    for level in ("clip", "video"):
        if level not in report:
            continue
        cm = report[level]["confusion_matrix"]
        png = os.path.join(out_dir, f"{prefix}confusion_matrix_{level}.png")
        plot_confusion_matrix(np.array(cm), labels, png,
                              title=f"{level}-level, top-1 {report[level]['top1']:.3f}")
        cm_json = os.path.join(out_dir, f"{prefix}confusion_matrix_{level}.json")
        with open(cm_json, "w") as f:
            json.dump({"labels": list(labels), "matrix": cm}, f)
        files[f"confusion_matrix_{level}_png"] = png
        files[f"confusion_matrix_{level}_json"] = cm_json
    report = {**report, "files": files}
    path = os.path.join(out_dir, f"{prefix}report.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    report["files"]["report"] = path
    return report


def _probabilities(model, inputs, aggregation: str = "mean") -> np.ndarray:
    """Softmax of the model's logits; per-step logits [B, T, C] (LRCN) become the clip's
    first: their mean or the last step (``aggregation``)."""
    import tensorflow as tf

    from kvid.models import clip_logits

    logits = clip_logits(tf.convert_to_tensor(model(inputs, training=False)), aggregation)
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()


def evaluate_run(run_dir: str, *, data_dir: str | None = None, split: str = "test",
                 num_clips: int = 4, num_crops: int = 1, output_dir: str | None = None,
                 batch_size: int = 8, attention_clips: int = 2,
                 clip_aggregation: str | None = None) -> dict:
    """Clip-level and video-level (num_clips x num_crops views averaged per video) report.
    A fused folder (``kvid fuse``) is reported beside each member (:func:`evaluate_fusion`).

    Writes ``report.json``, confusion matrices (PNG + JSON) and, for the soft-attention
    LRCN, attention-map PNGs, into ``output_dir`` (default ``RUN/eval-<split>``).
    """
    from kvid.data import make_dataset
    from kvid.train.fuse import is_fusion
    from kvid.train.runs import load_run
    from kvid.train.trainer import RunPaths

    if is_fusion(run_dir):
        if clip_aggregation:
            raise ValueError("a fused run's members keep their own clip aggregation; "
                             "--clip-aggregation is for a single run")
        return evaluate_fusion(run_dir, data_dir=data_dir, split=split, num_clips=num_clips,
                               num_crops=num_crops, output_dir=output_dir,
                               batch_size=batch_size)
    run = load_run(run_dir)
    aggregation = clip_aggregation or run.config.clip_aggregation
    data_dir = data_dir or run.config.data_dir
    output_dir = output_dir or RunPaths(run_dir).evaluation(split)
    # The run's own input settings and label order (labels matched by name): the data
    # folder's current dataset.json does not change them.
    cfg = dataclasses.replace(run.input.evaluation(), label_mode="sparse")
    clips = make_dataset(data_dir, split, cfg, batch_size=batch_size, training=False)
    y_true, probs = [], []
    for inputs, labels in clips:
        probs.append(_probabilities(run.model, inputs, aggregation))
        y_true.append(labels.numpy())
    if not probs:
        raise ValueError(f"the {split!r} split of {data_dir} has no clips")
    report = {"run": run_dir, "model": run.config.model, "split": split, "data": data_dir,
              "clip": classification_report(np.concatenate(y_true), np.concatenate(probs),
                                            run.labels)}
    report["clip_aggregation"] = aggregation
    report["views"] = view_costs(run, data_dir, split, cfg, num_clips, num_crops, batch_size,
                                 aggregation)
    report["video"] = report["views"].pop("_largest")
    report = write_report(report, run.labels, output_dir)
    from kvid.train.plots import plot_view_costs

    report["files"]["view_costs_png"] = plot_view_costs(
        report["views"]["rows"], os.path.join(output_dir, "view_costs.png"),
        title=f"{run.config.model}: video top-1 vs the cost of views")
    if run.config.model == "lrcn_soft_attention":
        report["files"]["attention_maps"] = _attention_pngs(run, clips, output_dir,
                                                            attention_clips)
    curves = os.path.join(run_dir, "training_curves.png")
    if os.path.exists(curves):
        report["files"]["training_curves"] = curves
    with open(report["files"]["report"], "w") as f:
        json.dump(report, f, indent=2)
    return report


def view_costs(run, data_dir: str, split: str, cfg, num_clips: int, num_crops: int,
               batch_size: int, aggregation: str = "mean") -> dict:
    """Video-level accuracy at 1x1, Nx1 and NxM views (clips x crops, averaged per video),
    with GFLOPs per video (one clip's x views) and the clips/s measured here: what more
    views buy and what they cost. ``"_largest"``: the NxM report."""
    import time

    from kvid.data import make_eval_views, predict_video_scores
    from kvid.models.flops import count_gflops
    from kvid.train.trainer import model_input_shape

    gflops = count_gflops(run.model, model_input_shape(cfg))
    rows, largest = [], None
    for n, m in dict.fromkeys([(1, 1), (num_clips, 1), (num_clips, num_crops)]):
        views = make_eval_views(data_dir, split, cfg, num_clips=n, num_crops=m,
                                batch_size=batch_size * m)
        started = time.perf_counter()
        ids, probs, labels = predict_video_scores(
            lambda x, training=False: _probabilities(run.model, x, aggregation), views)
        seconds = time.perf_counter() - started
        largest = classification_report(labels, probs, run.labels)
        largest.update(num_clips=n, num_crops=m)
        rows.append({"clips": n, "crops": m, "views": n * m, "videos": len(ids),
                     "top1": largest["top1"], "mean_class_accuracy":
                     largest["mean_class_accuracy"], "gflops_per_video": gflops * n * m,
                     "clips_per_s": len(ids) * n * m / seconds if seconds > 0 else None})
    return {"gflops_per_clip": gflops, "rows": rows, "_largest": largest}


def _summary(report: dict) -> dict:
    return {k: report[k] for k in ("count", "top1", "mean_class_accuracy")}


def evaluate_fusion(fused_dir: str, *, data_dir: str | None = None, split: str = "test",
                    num_clips: int = 4, num_crops: int = 1, output_dir: str | None = None,
                    batch_size: int = 8) -> dict:
    """Each member and the fusion on the same clips and views: each member reads the records
    with its own input settings (frames, size, stream) and its scores are matched to the
    fused labels by name; the fused score is the members' weighted mean of softmax scores.

    Writes ``report.json`` (``members``: each member's clip and video accuracy), the fused
    confusion matrices and ``fusion.png`` (members vs fused top-1) into ``output_dir``
    (default ``FUSED/eval-<split>``).
    """
    from kvid.data import make_dataset, make_eval_views, predict_video_scores
    from kvid.train.fuse import fuse_scores, load_fusion
    from kvid.train.plots import plot_fusion

    fusion = load_fusion(fused_dir)
    data_dir = data_dir or fusion.members[0].config.data_dir
    output_dir = output_dir or os.path.join(fused_dir, f"eval-{split}")
    clip_probs, video_probs, clip_true, video_true, video_ids = [], [], None, None, None
    for run in fusion.members:
        order = fusion.label_order(run)
        aggregation = run.config.clip_aggregation
        # The fused label order for the records' labels; the member's own for its outputs.
        cfg = dataclasses.replace(run.input.evaluation(), label_mode="sparse",
                                  labels=tuple(fusion.labels))

        def probabilities(x, training=False, run=run, order=order, aggregation=aggregation):
            p = _probabilities(run.model, x, aggregation)
            return p if order is None else p[:, list(order)]

        probs, y = [], []
        for inputs, labels in make_dataset(data_dir, split, cfg, batch_size=batch_size,
                                           training=False):
            probs.append(probabilities(inputs))
            y.append(labels.numpy())
        if not probs:
            raise ValueError(f"the {split!r} split of {data_dir} has no clips")
        y = np.concatenate(y)
        if clip_true is not None and not np.array_equal(y, clip_true):
            raise ValueError("the members read different clips from the same records")
        clip_true = y
        clip_probs.append(np.concatenate(probs))
        views = make_eval_views(data_dir, split, cfg, num_clips=num_clips, num_crops=num_crops,
                                batch_size=batch_size * num_crops)
        ids, probs, labels = predict_video_scores(probabilities, views)
        if video_ids is None:
            video_ids, video_true = list(ids), labels
        elif set(ids) != set(video_ids):
            raise ValueError("the members' views cover different videos")
        rows = {v: i for i, v in enumerate(ids)}
        video_probs.append(probs[[rows[v] for v in video_ids]])
    report = {"run": fused_dir, "model": "fusion", "split": split, "data": data_dir,
              "fusion": {"weights": fusion.weights, "preset": fusion.preset},
              "members": [], "num_clips": num_clips, "num_crops": num_crops}
    for name, run, m, cp, vp in zip(fusion.names(), fusion.members, fusion.spec["members"],
                                    clip_probs, video_probs):
        report["members"].append({
            "name": name, "model": run.config.model, "modality": run.input.modality,
            "weight": m["weight"], "source": m["source"],
            "clip": _summary(classification_report(clip_true, cp, fusion.labels)),
            "video": _summary(classification_report(video_true, vp, fusion.labels))})
    report["clip"] = classification_report(clip_true, fuse_scores(clip_probs, fusion.weights),
                                           fusion.labels)
    report["video"] = classification_report(video_true, fuse_scores(video_probs,
                                                                    fusion.weights),
                                            fusion.labels)
    report["video"].update(num_clips=num_clips, num_crops=num_crops)
    rows = [{"name": m["name"], "weight": m["weight"], "clip_top1": m["clip"]["top1"],
             "video_top1": m["video"]["top1"]} for m in report["members"]]
    rows.append({"name": "fused", "weight": float(sum(fusion.weights)),
                 "clip_top1": report["clip"]["top1"], "video_top1": report["video"]["top1"]})
    report["views"] = {"rows": rows}
    report = write_report(report, fusion.labels, output_dir)
    report["files"]["fusion_png"] = plot_fusion(
        rows, os.path.join(output_dir, "fusion.png"),
        title=f"fusion ({fusion.preset or 'weights'} "
              f"{':'.join(f'{w:g}' for w in fusion.weights)}), "
              f"{num_clips}x{num_crops} views")
    with open(report["files"]["report"], "w") as f:
        json.dump(report, f, indent=2)
    return report


def _attention_pngs(run, clips, output_dir: str, count: int) -> list[str]:
    """Where the soft-attention LRCN looked, step by step, for the first clips."""
    from kvid.data.preprocess import denormalize
    from kvid.models.attention import attention_model
    from kvid.train.plots import plot_attention_maps

    helper = attention_model(run.model)
    paths = []
    for inputs, labels in clips.take(1):
        _, attention = helper(inputs, training=False)
        attention = np.asarray(attention)
        frames = np.asarray(denormalize(inputs, run.normalization))
        for i in range(min(count, len(frames))):
            att = attention[i]
            if att.ndim == 2:  # [T, K*K] -> [T, K, K]
                k = int(round(att.shape[1] ** 0.5))
                att = att.reshape(att.shape[0], k, k)
            label = run.labels[int(labels[i])]
            path = os.path.join(output_dir, f"attention_{i}.png")
            paths.append(plot_attention_maps(np.clip(frames[i], 0, 1), att, path,
                                             title=f"soft attention, true: {label}"))
    return paths
