"""``kvid demo``: the whole flow on synthetic videos, with real parts at every step.

synth mp4 videos -> Beam ingest (DirectRunner) -> TFRecord clip shards -> tf.data ->
a temporal Keras model ``fit`` -> evaluation on the test split -> SavedModel export ->
the local TF-Serving-compatible REST server on 127.0.0.1 -> a REST predict of a clip from a
held-out video, checked against the in-process model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import numpy as np

from kvid.serving import contract
from kvid.synth import MOTION


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The demo runs kvid.synth's motion recipe (the same as the TFX pipeline's defaults)."""

    output: str = "kvid-demo"
    num_classes: int = MOTION.num_classes
    videos_per_class: int = MOTION.videos_per_class
    video_frames: int = MOTION.video_frames
    video_size: int = MOTION.video_size
    fps: float = MOTION.fps
    clip_frames: int = MOTION.clip_frames
    image_size: int = MOTION.image_size
    epochs: int = MOTION.epochs
    batch_size: int = MOTION.batch_size
    model: str = MOTION.model
    model_kwargs: dict = dataclasses.field(default_factory=lambda: dict(MOTION.model_kwargs))
    learning_rate: float = MOTION.learning_rate
    workers: int = 1
    seed: int = 0
    overwrite: bool = False
    verbose: int | str = 2  # Keras fit verbosity (2: one line per epoch)


def _step(name: str):
    print(f"\n== {name}", flush=True)
    return time.perf_counter()


def run_demo(cfg: DemoConfig = DemoConfig()) -> dict:
    """Runs every stage; returns (and writes to ``summary.json``) what happened."""
    from kvid.ingest import IngestConfig, run_ingest
    from kvid.serving.client import Client
    from kvid.serving.server import start_server
    from kvid.synth import SynthConfig, generate
    from kvid.train.evaluate import evaluate_run
    from kvid.train.runs import export_run, load_run
    from kvid.train.trainer import TrainConfig, train

    if os.path.exists(cfg.output) and os.listdir(cfg.output):
        if not cfg.overwrite:
            raise FileExistsError(f"{cfg.output} is not empty; pass --overwrite or --output DIR")
        shutil.rmtree(cfg.output)
    videos, data, run_dir = (os.path.join(cfg.output, d) for d in ("videos", "data", "run"))
    base = os.path.join(cfg.output, "serving", "models")
    timings = {}
    started = time.perf_counter()

    t = _step("1/6 synth: writing synthetic motion videos")
    synth = SynthConfig(num_classes=cfg.num_classes, videos_per_class=cfg.videos_per_class,
                        frames=cfg.video_frames, size=cfg.video_size, seed=cfg.seed)
    paths = generate(videos, synth, progress=True)
    timings["synth_s"] = time.perf_counter() - t

    t = _step("2/6 ingest: Beam DirectRunner -> TFRecord clip shards")
    info = run_ingest(videos, data, IngestConfig(
        fps=cfg.fps, clip_frames=cfg.clip_frames, size=(cfg.image_size, cfg.image_size),
        workers=cfg.workers, seed=cfg.seed))
    timings["ingest_s"] = time.perf_counter() - t

    t = _step(f"3/6 train: {cfg.model} with model.fit")
    result = train(TrainConfig(
        data_dir=data, output_dir=run_dir, model=cfg.model, model_kwargs=cfg.model_kwargs,
        epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
        flip=False,  # a mirrored move_left is a move_right
        seed=cfg.seed, verbose=cfg.verbose, overwrite=cfg.overwrite), info=info)
    timings["train_s"] = time.perf_counter() - t

    t = _step("4/6 evaluate on the test split")
    report = evaluate_run(run_dir, split="test", output_dir=os.path.join(run_dir, "eval-test"))
    timings["evaluate_s"] = time.perf_counter() - t

    t = _step("5/6 export a SavedModel with the serving signatures")
    export_dir = export_run(run_dir, os.path.join(base, "kvid", "1"), overwrite=cfg.overwrite)
    timings["export_s"] = time.perf_counter() - t

    t = _step("6/6 serve on 127.0.0.1 and predict a held-out clip over REST")
    clip, true_label, video_path = _held_out_clip(data, info)
    server = start_server(model_base_path=os.path.join(base, "kvid"), model_name="kvid",
                          host="127.0.0.1", rest_port=0, grpc_port=None)
    try:
        client = Client(rest_url=f"http://127.0.0.1:{server.rest_port}", model="kvid")
        answer = client.predict({contract.FRAMES_INPUT: [clip]})
    finally:
        server.stop()
    rest_probs = np.asarray(answer[contract.PROBABILITIES_OUTPUT][0], dtype=np.float32)
    run = load_run(run_dir)
    local_probs = _in_process_probs(run, clip)
    predicted = answer[contract.LABELS_OUTPUT][0][0]
    predicted = predicted.decode() if isinstance(predicted, bytes) else predicted
    timings["serve_s"] = time.perf_counter() - t

    summary = {
        "videos": len(paths),
        "classes": list(info["labels"]),
        "clips": {s: v["num_clips"] for s, v in info["splits"].items()},
        "dead_letters": info["dead_letters"],
        "model": cfg.model,
        "epochs": cfg.epochs,
        "test_clip_top1": report["clip"]["top1"],
        "test_video_top1": report.get("video", {}).get("top1"),
        "chance": 1.0 / cfg.num_classes,
        "rest_prediction": {"video": video_path, "true": true_label, "predicted": predicted,
                            "score": float(answer[contract.SCORES_OUTPUT][0][0])},
        "rest_matches_in_process": bool(np.allclose(rest_probs, local_probs, atol=1e-4)),
        "max_abs_diff_rest_vs_in_process": float(np.max(np.abs(rest_probs - local_probs))),
        "paths": {"videos": videos, "data": data, "run": run_dir,
                  "report": report["files"]["report"], "saved_model": export_dir},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    with open(os.path.join(cfg.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    _print_summary(summary)
    return summary


def _held_out_clip(data_dir: str, info: dict) -> tuple[list[bytes], str, str]:
    """The first clip of the test split: JPEG frames, its true label and its video."""
    from kvid.train.runs import first_clip

    clip = first_clip(data_dir, "test")
    if clip is None:
        raise RuntimeError("the test split is empty")
    return list(clip.frames), clip.label_name, clip.video_id


def _in_process_probs(run, frames: list[bytes]) -> np.ndarray:
    """The Keras model's probabilities for the clip, with the same preprocessing."""
    import tensorflow as tf

    from kvid.data.preprocess import decode_frames, normalize

    pixels = decode_frames(tf.constant(frames), run.image_size)
    logits = run.model(normalize(pixels, run.normalization)[None], training=False)
    return tf.nn.softmax(logits, axis=-1).numpy()[0]


def _print_summary(s: dict) -> None:
    p = s["rest_prediction"]
    print("\n== kvid demo summary")
    print(f"videos: {s['videos']} ({len(s['classes'])} classes), clips per split: {s['clips']}, "
          f"dead letters: {s['dead_letters']}")
    video = s["test_video_top1"]
    print(f"test accuracy: clip top-1 {s['test_clip_top1']:.3f}"
          + (f", video top-1 {video:.3f}" if video is not None else "")
          + f" (chance {s['chance']:.3f})")
    print(f"REST predict of {os.path.basename(p['video'])}: {p['predicted']} "
          f"(score {p['score']:.3f}, true {p['true']}); same as in-process: "
          f"{s['rest_matches_in_process']}")
    print(f"wrote: {json.dumps(s['paths'])}")
    print(f"wall time {s['wall_s']} s: {s['timings_s']}")
