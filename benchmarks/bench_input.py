"""Input pipeline throughput: full training pipeline vs the raw read+decode limit vs videos.

Writes synthetic clip shards (16 JPEG frames of 112x112, from ``kvid synth`` videos decoded
with kvid.video, as ingest would) and times, at steady state on repeated datasets and in
interleaved rounds, in clips per wall second and per CPU second of the process (rates: the
best round; ratios to raw: the median over rounds of each round's ratio, since the shared
machine's speed drifts between rounds):

- raw: read TFRecords, parse, decode all JPEGs, batch (the limit of any reader)
- train: ``make_dataset(training=True)``: dense sampling, random resized crop, flip
- train_random: the same with C3D/I3D's fixed-size crop at a random place (no resampling)
- train_gzip: the same as train on gzip shards
- eval: ``make_dataset(training=False)``: centred clip, center crop
- video: ``dataset_from_videos(training=True)`` on the mp4 files themselves

Prints one JSON line. Usage: ``python benchmarks/bench_input.py [--seconds 6]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from kvid import schema, synth
from kvid.data import dataset_from_videos, make_dataset
from kvid.data.pipeline import read_records
from kvid.data.preprocess import decode_jpegs
from kvid.data.sources import resolve_files
from kvid.video import encode_jpeg, iter_frames, window_clips


def write_shards(root: str, videos: list[str], *, clip_frames: int, copies: int,
                 shards: int) -> tuple[int, float]:
    """Clips of every video (copied ``copies`` times) into plain and gzip shards."""
    records, jpeg_bytes = [], []
    for k, path in enumerate(videos):
        frames = [f.rgb for f in iter_frames(path)]
        for c, idx in enumerate(window_clips(len(frames), clip_frames)):
            jpegs = [encode_jpeg(frames[i], quality=90) for i in idx]
            jpeg_bytes += [len(j) for j in jpegs]
            records.append(schema.serialize_clip(schema.Clip(
                frames=jpegs, label=k % 4, label_name=str(k % 4), video_id=path, group="",
                clip_index=c, clip_start_frame=idx[0], fps=25.0,
                height=frames[0].shape[0], width=frames[0].shape[1])))
    for split, compression in (("train", ""), ("train_gzip", "GZIP")):
        os.makedirs(os.path.join(root, split))
        ext = ".tfrecord.gz" if compression else ".tfrecord"
        opts = tf.io.TFRecordOptions(compression_type=compression)
        writers = [tf.io.TFRecordWriter(
            os.path.join(root, split, f"clips-{i:05d}-of-{shards:05d}{ext}"), opts)
            for i in range(shards)]
        for n in range(copies):
            for j, r in enumerate(records):
                writers[(n * len(records) + j) % shards].write(r)
        for w in writers:
            w.close()
    return len(records) * copies, float(np.mean(jpeg_bytes))


def raw_dataset(data_dir: str, batch_size: int, clip_frames: int) -> tf.data.Dataset:
    """The limit: read, parse and decode every JPEG (the fastest way: unrolled); nothing else."""
    files, compression = resolve_files(data_dir, "train")

    def decode(r):
        jpegs = tf.ensure_shape(schema.parse_clip(r)[schema.FRAMES], [clip_frames])
        return tf.cast(decode_jpegs(jpegs), tf.float32)

    return (read_records(files, compression, shuffle=False, seed=None).repeat()
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def throughput(ds: tf.data.Dataset, batch_size: int, seconds: float,
               warmup: int = 5) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second of this process) at steady state.

    The CPU-time rate does not drop when other processes take the cores, so on a shared
    machine it is the stable measure of cost; times the core count it is the rate on an
    idle machine, if the pipeline scales over the cores.
    """
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        next(it)
        n += batch_size
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed per pipeline/round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--pipelines", default="raw,train,train_random,train_gzip,eval,video",
                        help="comma-separated subset to time")
    args = parser.parse_args()
    bs, t, size = args.batch_size, args.clip_frames, args.size

    with tempfile.TemporaryDirectory() as tmp:
        per_class = max(1, args.videos // 4)
        videos = synth.generate(os.path.join(tmp, "videos"), synth.SynthConfig(
            num_classes=4, videos_per_class=per_class, frames=2 * t, size=size))
        data = os.path.join(tmp, "shards")
        clips, jpeg_kb = write_shards(data, videos, clip_frames=t, copies=8, shards=4)
        common = dict(clip_frames=t, batch_size=bs, image_size=size, repeat=True, seed=0)
        pipelines = {
            "raw": lambda: raw_dataset(data, bs, t),
            "train": lambda: make_dataset(data, "train", training=True, **common),
            "train_random": lambda: make_dataset(data, "train", training=True, augment="random",
                                                 **common),
            "train_gzip": lambda: make_dataset(data, "train_gzip", training=True, **common),
            "eval": lambda: make_dataset(data, "train", training=False, **common),
            "video": lambda: dataset_from_videos(os.path.join(tmp, "videos"), training=True,
                                                 **common),
        }
        chosen = args.pipelines.split(",")
        pipelines = {k: v for k, v in pipelines.items() if k in chosen}
        wall = {k: 0.0 for k in pipelines}
        cpu = {k: 0.0 for k in pipelines}
        rounds = []  # per round {name: (wall rate, cpu rate)}: ratios of neighbours in time
        for _ in range(args.rounds):
            rates = {}
            for name, make in pipelines.items():
                seconds = args.seconds if name != "video" else args.seconds / 2
                rates[name] = throughput(make(), bs, seconds)
                wall[name] = max(wall[name], rates[name][0])
                cpu[name] = max(cpu[name], rates[name][1])
            rounds.append(rates)
    result = {
        "bench": "input", "clip": f"{t}x{size}x{size}", "jpeg_kb": round(jpeg_kb / 1024, 1),
        "records": clips, "batch_size": bs, "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        **{f"{k}_clips_per_s": round(v, 1) for k, v in wall.items()},
        **{f"{k}_clips_per_cpu_s": round(v, 1) for k, v in cpu.items()},
    }
    for name in ("train", "train_random", "train_gzip", "eval", "video"):
        if name in wall and "raw" in wall:
            # Median over rounds of the ratio within a round: the machine's speed drifts by
            # more than the effects measured here, so only neighbours in time are compared.
            for i, suffix in ((0, ""), (1, "_cpu")):
                ratios = [r[name][i] / r["raw"][i] for r in rounds]
                result[f"{name}_vs_raw{suffix}"] = round(float(np.median(ratios)), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
