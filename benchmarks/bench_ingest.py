"""Ingest speed against its raw limit, measured on the same videos in one run: one JSON line.

raw limit: a plain loop of PyAV decode (one thread) + resize + JPEG of the frames kept, in
one process (and in N processes, the ceiling for N workers). Beam: ``run_ingest`` on the
DirectRunner engine with 1 and N workers. Two rates per Beam run: ``wall`` (the whole
pipeline, worker start-up included) and ``busy`` (first to last video processed, from the
job's metrics: the steady state that large datasets see). Sizes: shard bytes against the raw
RGB bytes of the stored frames. Each rate is the best of ``--rounds`` interleaved rounds,
since the 2-core machine is shared.

    .venv/bin/python benchmarks/bench_ingest.py [--videos 48 --frames 150 --size 256]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import tempfile
import time


def _raw_one(args):
    from kvid.video.decode import iter_frames
    from kvid.video.frames import encode_jpeg, resize_frame

    path, fps, short_side, quality = args
    n = 0
    for frame in iter_frames(path, fps=fps, threads=1):
        encode_jpeg(resize_frame(frame.rgb, short_side=short_side), quality)
        n += 1
    return n


def raw_limit(paths, fps, short_side, quality, processes=1):
    """Frames/s of decode + resize + JPEG alone, over ``processes`` processes."""
    jobs = [(p, fps, short_side, quality) for p in paths]
    start = time.perf_counter()
    if processes == 1:
        frames = sum(map(_raw_one, jobs))
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.map(_raw_one, jobs[:processes])  # start-up and imports outside the clock
            start = time.perf_counter()
            frames = sum(pool.map(_raw_one, jobs, chunksize=1))
    return frames, time.perf_counter() - start


def make_videos(root, videos, frames, size):
    from kvid.synth import SynthConfig, generate

    cfg = SynthConfig(num_classes=8, videos_per_class=max(1, videos // 8), frames=frames,
                      size=size, actors=6)
    marker = os.path.join(root, f".done-{videos}-{frames}-{size}")
    if not os.path.exists(marker):
        shutil.rmtree(root, ignore_errors=True)
        generate(root, cfg)
        open(marker, "w").close()
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".mp4"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--frames", type=int, default=150, help="frames per source video")
    parser.add_argument("--size", type=int, default=256, help="source frames are size x size")
    parser.add_argument("--fps", type=float, default=None, help="target fps (default: source)")
    parser.add_argument("--short-side", type=int, default=128)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num-shards", type=int, default=0, help="IngestConfig.num_shards")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "kvid-bench-videos"))
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    from kvid.ingest import IngestConfig, run_ingest

    paths = make_videos(args.cache, args.videos, args.frames, args.size)
    src_bytes = sum(os.path.getsize(p) for p in paths)
    _raw_one((paths[0], args.fps, args.short_side, 90))  # warm the page cache and imports

    result = {"bench": "ingest", "videos": len(paths), "frames_per_video": args.frames,
              "source": f"{args.size}x{args.size} h264", "fps": args.fps,
              "short_side": args.short_side, "clip_frames": args.clip_frames,
              "cpus": os.cpu_count(), "load_avg_start": round(os.getloadavg()[0], 2)}
    best: dict[str, float] = {}

    def keep(key, value):
        best[key] = max(best.get(key, 0.0), round(value, 1))

    out_root = tempfile.mkdtemp(prefix="kvid-bench-ingest-")
    try:
        for _ in range(args.rounds):
            frames, seconds = raw_limit(paths, args.fps, args.short_side, 90)
            keep("raw_fps_1proc", frames / seconds)
            frames_n, seconds_n = raw_limit(paths, args.fps, args.short_side, 90, args.workers)
            keep(f"raw_fps_{args.workers}proc", frames_n / seconds_n)
            for workers in (1, args.workers):
                out = os.path.join(out_root, f"w{workers}")
                config = IngestConfig(fps=args.fps, clip_frames=args.clip_frames,
                                      short_side=args.short_side, workers=workers,
                                      num_shards=args.num_shards)
                start = time.perf_counter()
                dataset = run_ingest(args.cache, out, config, overwrite=True)
                wall = time.perf_counter() - start
                stored = dataset["counters"]["frames"]
                assert stored == frames, (stored, frames)
                busy = dataset["timing"]["busy_s"] or wall
                keep(f"beam_{workers}w_wall_fps", stored / wall)
                keep(f"beam_{workers}w_busy_fps", stored / busy)
                result[f"beam_{workers}w_shards"] = sum(map(len, dataset["shards"].values()))
                if workers == 1:
                    shard_bytes = sum(os.path.getsize(os.path.join(out, p))
                                      for ps in dataset["shards"].values() for p in ps)
                    clips = dataset["counters"]["clips"]
                    h = w = args.short_side  # square synth frames
                    raw_bytes = clips * args.clip_frames * h * w * 3
                    result.update(clips=clips, shard_bytes=shard_bytes,
                                  raw_frame_bytes=raw_bytes, source_bytes=src_bytes,
                                  shard_vs_raw=round(shard_bytes / raw_bytes, 4))
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
    result.update(best, rounds=args.rounds, num_shards=args.num_shards)
    for workers in (1, args.workers):
        result[f"beam_{workers}w_wall_s"] = round(frames / result[f"beam_{workers}w_wall_fps"], 2)
    raw1 = result["raw_fps_1proc"]
    w = args.workers
    result["ratio_1w_busy"] = round(result["beam_1w_busy_fps"] / raw1, 3)
    result["ratio_1w_wall"] = round(result["beam_1w_wall_fps"] / raw1, 3)
    result[f"ratio_{w}w_busy"] = round(result[f"beam_{w}w_busy_fps"] / raw1, 3)
    result[f"ratio_{w}w_wall"] = round(result[f"beam_{w}w_wall_fps"] / raw1, 3)
    result[f"raw_scaling_{w}proc"] = round(result[f"raw_fps_{w}proc"] / raw1, 3)
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
