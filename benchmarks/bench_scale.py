"""Figures at 10x the usual test size: one JSON line per part.

``--part ingest``: ``--videos`` short synthetic videos plus ``--long`` long ones
(``--long-seconds`` at ``--long-size``, 25 fps) through ``run_ingest`` with 1 and N workers,
against the raw decode + resize + JPEG limit on the same files (bench_ingest.py's loop, 1 and
N processes). Peak RSS is sampled (psutil, every 0.2 s) for the driver and for each worker
process: a long video is decoded frame by frame, never held whole, so no process grows
with it. Rates: ``busy`` (first to last video processed: the steady state) and ``wall``
(start-up included).

``--part input``: the training tf.data pipeline over datasets of ``--sizes`` clips (shards
hard-linked from one real ingest, so the records are real and the disk is not): clips/s over
a fixed number of batches after a warm-up, and the growth of the process's RSS, which the
shuffle buffer (not the dataset) should bound.

    .venv/bin/python benchmarks/bench_scale.py --part ingest [--videos 3000 --long 1]
    .venv/bin/python benchmarks/bench_scale.py --part input [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class PeakRSS:
    """Peak resident memory of this process and of each descendant, sampled in a thread."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self._me = psutil.Process()
        self._interval, self._stop = interval, threading.Event()
        self.self_mb, self.children_mb = 0.0, {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.self_mb = max(self.self_mb, self._me.memory_info().rss / 2**20)
                for child in self._me.children(recursive=True):
                    try:
                        rss = child.memory_info().rss / 2**20
                    except Exception:  # noqa: BLE001 - it ended between listing and reading
                        continue
                    self.children_mb[child.pid] = max(self.children_mb.get(child.pid, 0), rss)
            except Exception:  # noqa: BLE001
                pass
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def long_video(path: str, seconds: float, width: int, height: int) -> str:
    """A ``seconds`` H.264 video streamed to disk frame by frame (a pan over noise)."""
    from kvid.video.encode import write_video

    if os.path.exists(path):
        return path
    rng = np.random.default_rng(0)
    base = cv2_resize(rng.integers(0, 255, (height // 8, width // 8 + 64, 3), np.uint8),
                      width + 512, height)

    def frames():
        for i in range(int(seconds * 25)):
            x = (i * 2) % 512
            yield np.ascontiguousarray(base[:, x:x + width])

    tmp = path + ".partial.mp4"
    write_video(tmp, frames(), fps=25, options={"preset": "ultrafast", "crf": "28"})
    os.replace(tmp, path)
    return path


def cv2_resize(img, width, height):
    import cv2

    return cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)


def ingest_part(args) -> dict:
    import logging

    from bench_ingest import make_videos, raw_limit

    from kvid.ingest import IngestConfig, run_ingest

    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    root = os.path.join(args.cache, "short")
    long_dir = os.path.join(root, "long_videos")  # a label folder of its own
    short = [p for p in make_videos(root, args.videos, args.frames, args.size)
             if not p.startswith(long_dir + os.sep)]
    os.makedirs(long_dir, exist_ok=True)
    longs = [long_video(os.path.join(long_dir, f"long{i}.mp4"), args.long_seconds,
                        *args.long_size) for i in range(args.long)]
    paths = short + longs
    made_s = time.perf_counter() - started
    result = {"bench": "scale_ingest", "videos": len(short), "frames_per_video": args.frames,
              "source": f"{args.size}x{args.size} h264", "long_videos": len(longs),
              "long_seconds": args.long_seconds,
              "long_size": f"{args.long_size[0]}x{args.long_size[1]}",
              "short_side": args.short_side, "clip_frames": args.clip_frames,
              "cpus": os.cpu_count(), "fixture_s": round(made_s, 1),
              "load_avg_start": round(os.getloadavg()[0], 2)}
    frames, seconds = raw_limit(paths, None, args.short_side, 90)
    result.update(raw_fps_1proc=round(frames / seconds, 1), frames=frames)
    frames_n, seconds_n = raw_limit(paths, None, args.short_side, 90, args.workers)
    result[f"raw_fps_{args.workers}proc"] = round(frames_n / seconds_n, 1)
    out_root = tempfile.mkdtemp(prefix="kvid-bench-scale-")
    try:
        for workers in (1, args.workers):
            config = IngestConfig(clip_frames=args.clip_frames, short_side=args.short_side,
                                  workers=workers)
            with PeakRSS() as rss:
                start = time.perf_counter()
                dataset = run_ingest(root, os.path.join(out_root, f"w{workers}"), config,
                                     overwrite=True)
                wall = time.perf_counter() - start
            stored = dataset["counters"]["frames"]
            assert stored == frames, (stored, frames)
            busy = dataset["timing"]["busy_s"] or wall
            key = f"beam_{workers}w"
            result.update({
                f"{key}_wall_s": round(wall, 1), f"{key}_busy_s": round(busy, 1),
                f"{key}_busy_fps": round(stored / busy, 1),
                f"{key}_ratio_busy": round(stored / busy / result["raw_fps_1proc"], 3),
                f"{key}_ratio_wall": round(stored / wall / result["raw_fps_1proc"], 3),
                f"{key}_driver_peak_rss_mb": round(rss.self_mb),
                f"{key}_worker_peak_rss_mb": sorted(
                    (round(v) for v in rss.children_mb.values() if v > 200), reverse=True)[:4],
            })
            shutil.rmtree(os.path.join(out_root, f"w{workers}"), ignore_errors=True)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result


def input_part(args) -> dict:
    import psutil
    import tensorflow as tf

    from kvid import dataset as dataset_file
    from kvid.data import InputConfig, make_dataset
    from kvid.ingest import IngestConfig, run_ingest
    from kvid.synth import SynthConfig, generate

    base = os.path.join(args.cache, "input")
    videos, data = os.path.join(base, "videos"), os.path.join(base, "data")
    if not os.path.exists(dataset_file.path(data)):
        shutil.rmtree(base, ignore_errors=True)
        generate(videos, SynthConfig(num_classes=8, videos_per_class=8, frames=64, size=128))
        run_ingest(videos, data, IngestConfig(clip_frames=16, stride=4, short_side=128,
                                              split_ratios={"train": 1.0}))
    info = dataset_file.load(data)
    per_copy = info["splits"]["train"]["num_clips"]
    sizes = [int(s) for s in args.sizes.split(",")]
    cfg = InputConfig(clip_frames=16, image_size=(112, 112), num_classes=len(info["labels"]))
    proc, rows = psutil.Process(), []
    for size in sizes:
        copies = max(1, round(size / per_copy))
        folder = os.path.join(base, f"x{copies}")
        if not os.path.exists(dataset_file.path(folder)):
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(os.path.join(folder, "train"))
            shards = []
            for c in range(copies):
                for rel in info["shards"]["train"]:
                    name = f"train/c{c:05d}-{os.path.basename(rel)}"
                    os.link(os.path.join(data, rel), os.path.join(folder, name))
                    shards.append(name)
            grown = {**info, "shards": {"train": shards},
                     "splits": {"train": {**info["splits"]["train"],
                                          "num_clips": per_copy * copies}}}
            dataset_file.save(grown, folder)
        ds = make_dataset(folder, "train", cfg, batch_size=args.batch_size, training=True,
                          shuffle_buffer=args.shuffle_buffer, seed=0, repeat=True)
        it = iter(ds)
        for _ in range(args.warmup):
            next(it)
        rss_start = proc.memory_info().rss / 2**20
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        seconds = time.perf_counter() - start
        rows.append({"clips": per_copy * copies, "files": copies * len(info["shards"]["train"]),
                     "clips_per_s": round(args.batches * args.batch_size / seconds, 1),
                     "rss_mb": round(proc.memory_info().rss / 2**20),
                     "rss_growth_mb": round(proc.memory_info().rss / 2**20 - rss_start)})
        del it, ds
    first = rows[0]["clips_per_s"]
    return {"bench": "scale_input", "batch_size": args.batch_size,
            "shuffle_buffer": args.shuffle_buffer, "batches": args.batches,
            "clip": "16x112x112 from short side 128", "cpus": os.cpu_count(), "sizes": rows,
            "throughput_vs_smallest": [round(r["clips_per_s"] / first, 3) for r in rows],
            "load_avg": round(os.getloadavg()[0], 2)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("ingest", "input"), required=True)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "kvid-bench-scale"))
    parser.add_argument("--videos", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=48, help="frames per short video")
    parser.add_argument("--size", type=int, default=128, help="short videos are size x size")
    parser.add_argument("--long", type=int, default=1, help="long videos")
    parser.add_argument("--long-seconds", type=float, default=600)
    parser.add_argument("--long-size", type=lambda s: tuple(map(int, s.split("x"))),
                        default=(1920, 1080), help="WxH")
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shuffle-buffer", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batches", type=int, default=100)
    args = parser.parse_args(argv)
    os.makedirs(args.cache, exist_ok=True)
    print(json.dumps(ingest_part(args) if args.part == "ingest" else input_part(args)))


if __name__ == "__main__":
    main()
