"""Input pipeline throughput: full training pipeline vs the raw read+decode limit vs videos.

Writes clip shards of 16 JPEG frames (q90) decoded with kvid.video from mp4 videos and resized
as ``kvid ingest`` does (``--stored 128``: short side 128, as the README's UCF101 command;
``--stored 112x112``: exactly the model's input), and times clips of 16x112x112, at steady
state on repeated datasets and in interleaved rounds, in clips per wall second and per CPU
second of the process (rates: the best round; ratios to raw: the median over rounds of each
round's ratio, since the shared machine's speed drifts between rounds):

- raw: read TFRecords, parse, decode all JPEGs, batch (the limit of any reader)
- train: ``make_dataset(training=True)``: dense sampling, random resized crop, flip (in
  kvid's native kernel where it is built: kvid/data/native.py)
- train_tf_ops: the same with ``KVID_NATIVE=0``: crop, resize, flip, normalize in TF ops
- train_random: the same with C3D/I3D's fixed-size crop at a random place (no resampling)
- train_gzip: the same as train on gzip shards
- eval: ``make_dataset(training=False)``: centred clip, center crop
- train_imagenet: the same as train with ImageNet mean/std (the 2D-backbone models)
- train_jitter: the same as train with color jitter 0.4
- video: ``dataset_from_videos(training=True)`` on the mp4 files themselves
- whole_raw / whole_train / whole_views: video-level records (``kvid ingest --layout video``:
  each ``--whole-frames`` video one record): read + parse + decode the T frames a clip
  needs (the limit), the training pipeline drawing a random clip over the whole video, and
  multi-view evaluation (10 clips x 3 crops). ``whole_record_mb`` is a record's size, the
  memory a video costs in tf.data before its T sampled frames (``sampled_frames_mb``) are
  decoded.

The videos (``--content``) are 320x240 camera pans over a real photograph (``photo``, the
default: matplotlib's sample ``grace_hopper.jpg``), whose frames have a real image's detail
and so cost what real frames cost to decode, or ``kvid synth`` videos (``synth``), whose
smooth frames make JPEGs ~2.5x smaller and cheaper to decode while every other step costs
the same, so the ratios to raw are lower on them. Frames stored larger than the model's
input (``--stored 128``) let the fixed-size crop skip the resample and small windows decode
alone (see bench_window_decode.py), where raw decodes every pixel. ``train`` vs
``train_tf_ops`` is what kvid's native crop kernel (kvid/data/native.py) saves; the JSON's
``native_crop`` says whether it was built.

Prints one JSON line. Usage: ``python benchmarks/bench_input.py [--stored 112x112]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from unittest import mock

import cv2
import numpy as np
import tensorflow as tf
from matplotlib import cbook

from kvid import schema, synth
from kvid.data import AugmentConfig, dataset_from_videos, make_dataset, make_eval_views, native
from kvid.data.pipeline import read_records
from kvid.data.preprocess import decode_jpegs
from kvid.data.sources import resolve_files
from kvid.video import encode_jpeg, iter_frames, resize_frame, window_clips
from kvid.video.encode import write_video


def sample_photo() -> np.ndarray:
    """RGB uint8 pixels of a real photograph shipped with matplotlib (no download)."""
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def photo_videos(root: str, count: int, *, frames: int, size=(240, 320)) -> list[str]:
    """``count`` mp4 camera pans (random zoom and path) over a real photograph, in
    ``root/<class>/`` for 4 classes as ``kvid synth`` lays them out."""
    photo = sample_photo()
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        scale = rng.uniform(1.1, 1.6) * max(np.divide(size, photo.shape[:2]))
        image = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        free = np.array(image.shape[:2]) - size
        start, end = rng.uniform(0, 1, 2) * free, rng.uniform(0, 1, 2) * free
        path = os.path.join(root, f"class{k % 4}", f"pan{k:03d}.mp4")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_video(path, [image[y:y + size[0], x:x + size[1]] for y, x in (
            np.round(start + (end - start) * i / (frames - 1)).astype(int)
            for i in range(frames))])
        paths.append(path)
    return paths


def write_shards(root: str, videos: list[str], *, clip_frames: int, copies: int,
                 shards: int, stored: dict) -> tuple[int, float]:
    """Clips of every video (copied ``copies`` times) into plain and gzip shards, frames
    resized by ``stored`` (``short_side=`` or ``size=``, as ingest does)."""
    records, jpeg_bytes = [], []
    for k, path in enumerate(videos):
        frames = [resize_frame(f.rgb, **stored) for f in iter_frames(path)]
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


def write_whole_videos(root: str, videos: list[str], *, copies: int, stored: dict) -> float:
    """Each video as one video-level record (``--layout video``), ``copies`` times; returns
    the mean record size in bytes."""
    records = []
    for k, path in enumerate(videos):
        frames = [resize_frame(f.rgb, **stored) for f in iter_frames(path)]
        records.append(schema.serialize_clip(schema.Clip(
            frames=[encode_jpeg(f, quality=90) for f in frames], label=k % 4,
            label_name=str(k % 4), video_id=path, group="", clip_index=0, clip_start_frame=0,
            fps=25.0, height=frames[0].shape[0], width=frames[0].shape[1],
            video_frames=len(frames), chunk_stride=0)))
    os.makedirs(os.path.join(root, "train"))
    with tf.io.TFRecordWriter(os.path.join(root, "train", "clips-00000-of-00001.tfrecord")) as w:
        for _ in range(copies):
            for r in records:
                w.write(r)
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"labels": [str(i) for i in range(4)], "layout": "video",
                   "splits": {"train": {"num_videos": len(records) * copies,
                                        "num_clips": len(records) * copies}}}, f)
    return float(np.mean([len(r) for r in records]))


def raw_dataset(data_dir: str, batch_size: int, clip_frames: int) -> tf.data.Dataset:
    """The limit: read, parse and decode every JPEG (the fastest way: unrolled); nothing else."""
    files, compression = resolve_files(data_dir, "train")

    def decode(r):  # the first T frames of a clip window or a whole-video record
        jpegs = tf.ensure_shape(schema.parse_clip(r)[schema.FRAMES][:clip_frames],
                                [clip_frames])
        return tf.cast(decode_jpegs(jpegs), tf.float32)

    return (read_records(files, compression, shuffle=False, seed=None).repeat()
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def with_tf_ops(make):
    """``make`` traced with ``KVID_NATIVE=0``: the training crop in TF ops, for comparison."""
    def made():
        with mock.patch.dict(os.environ, {"KVID_NATIVE": "0"}):  # restored after tracing
            return make()
    return made


def throughput(ds: tf.data.Dataset, batch_size: int, seconds: float,
               warmup: float = 1.0) -> tuple[float, float]:
    """(clips per wall second, clips per CPU second of this process) at steady state.

    ``warmup`` seconds first, so the buffers are full and tf.data's autotuner has settled.
    The CPU-time rate does not drop when other processes take the cores, so on a shared
    machine it is the stable measure of cost; times the core count it is the rate on an
    idle machine, if the pipeline scales over the cores.
    """
    it = iter(ds)
    start = time.perf_counter()
    while time.perf_counter() - start < warmup:
        next(it)
    n, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
        next(it)
        n += batch_size
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed per pipeline/round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--clip-frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--content", choices=("photo", "synth"), default="photo",
                        help="video frames: pans over a real photo, or kvid synth videos")
    parser.add_argument("--stored", default="128",
                        help="stored frames: short side (ingest --short-side) or HxW (--size)")
    parser.add_argument("--pipelines", default="raw,train,train_tf_ops,train_random,"
                        "train_imagenet,train_jitter,train_gzip,eval,video,whole_raw,"
                        "whole_train,whole_views", help="comma-separated subset to time")
    parser.add_argument("--whole-frames", type=int, default=250,
                        help="frames of each video-level record (250: 10 s at 25 fps)")
    args = parser.parse_args()
    bs, t, size = args.batch_size, args.clip_frames, args.size
    if "x" in args.stored:
        stored = {"size": tuple(int(v) for v in args.stored.split("x"))}
    else:
        stored = {"short_side": int(args.stored)}
    # dataset_from_videos only scales the short side (no center crop to HxW)
    short_side = stored.get("short_side") or min(stored["size"])

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "videos")
        if args.content == "photo":
            videos = photo_videos(root, args.videos, frames=2 * t)
        else:
            videos = synth.generate(root, synth.SynthConfig(
                num_classes=4, videos_per_class=max(1, args.videos // 4), frames=2 * t,
                size=240))
        data = os.path.join(tmp, "shards")
        clips, jpeg_kb = write_shards(data, videos, clip_frames=t, copies=8, shards=4,
                                      stored=stored)
        common = dict(clip_frames=t, batch_size=bs, image_size=size, repeat=True, seed=0)
        whole = os.path.join(tmp, "whole")
        record_bytes = None
        if any(p.startswith("whole_") for p in args.pipelines.split(",")):
            long_videos = photo_videos(os.path.join(tmp, "long"), max(4, args.videos // 4),
                                       frames=args.whole_frames)
            record_bytes = write_whole_videos(whole, long_videos, copies=8, stored=stored)
        pipelines = {
            "raw": lambda: raw_dataset(data, bs, t),
            "train": lambda: make_dataset(data, "train", training=True, **common),
            "train_tf_ops": with_tf_ops(
                lambda: make_dataset(data, "train", training=True, **common)),
            "train_random": lambda: make_dataset(data, "train", training=True, augment="random",
                                                 **common),
            "train_imagenet": lambda: make_dataset(data, "train", training=True,
                                                   normalize="imagenet", **common),
            "train_jitter": lambda: make_dataset(data, "train", training=True,
                                                 augment=AugmentConfig(color_jitter=0.4), **common),
            "train_gzip": lambda: make_dataset(data, "train_gzip", training=True, **common),
            "eval": lambda: make_dataset(data, "train", training=False, **common),
            "video": lambda: dataset_from_videos(root, training=True, short_side=short_side,
                                                 **common),
            "whole_raw": lambda: raw_dataset(whole, bs, t),
            "whole_train": lambda: make_dataset(whole, "train", training=True, **common),
            "whole_views": lambda: make_eval_views(whole, "train", clip_frames=t,
                                                   image_size=size, num_clips=10, num_crops=3,
                                                   batch_size=bs).repeat(),
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
        "bench": "input", "content": args.content, "stored": args.stored,
        "clip": f"{t}x{size}x{size}", "jpeg_kb": round(jpeg_kb / 1024, 1),
        "records": clips, "batch_size": bs, "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "native_crop": native.crop_resize_op() is not None,
        **{f"{k}_clips_per_s": round(v, 1) for k, v in wall.items()},
        **{f"{k}_clips_per_cpu_s": round(v, 1) for k, v in cpu.items()},
    }
    if record_bytes is not None:
        result.update(whole_frames=args.whole_frames,
                      whole_record_mb=round(record_bytes / 2**20, 2),
                      sampled_frames_mb=round(t * size * size * 3 * 4 / 2**20, 2))
    for name in pipelines:
        base = "whole_raw" if name.startswith("whole_") else "raw"
        if name != base and base in wall:
            # Median over rounds of the ratio within a round: the machine's speed drifts by
            # more than the effects measured here, so only neighbours in time are compared.
            for i, suffix in ((0, ""), (1, "_cpu")):
                ratios = [r[name][i] / r[base][i] for r in rounds]
                result[f"{name}_vs_{base}{suffix}"] = round(float(np.median(ratios)), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
