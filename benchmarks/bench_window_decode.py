"""Decoding a crop window of JPEG frames: alone (``decode_and_crop_jpeg``) vs whole, then cut.

libjpeg-turbo skips the IDCT and colour conversion outside a window but still entropy-decodes
every block and does extra row work for a window, so decoding a window alone pays only when
it leaves out enough of the frame. ``kvid.data.preprocess.decode_jpegs`` decodes alone a
window of at most half the frame; this benchmark times both ways and that choice
(``kvid``), in ms of CPU per 16-frame clip (one thread, median of interleaved rounds), for
frames of real-photo detail at sizes kvid ingest stores (``--size 112x112``,
``--short-side 128``, native 240x320) and centred windows of a fraction of the frame's area.

Prints one JSON line. Usage: ``python benchmarks/bench_window_decode.py``.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
import tensorflow as tf

from bench_input import sample_photo
from kvid.data.preprocess import crop, decode_jpegs
from kvid.video import encode_jpeg


def clip_jpegs(photo: np.ndarray, height: int, width: int, frames: int) -> tf.Tensor:
    """``frames`` q90 JPEGs of a camera pan over ``photo``, resized to (height, width)."""
    views = [photo[4 * i:4 * i + 400, 3 * i:3 * i + 500] for i in range(frames)]
    return tf.constant([encode_jpeg(cv2.resize(v, (width, height), interpolation=cv2.INTER_AREA),
                                    quality=90) for v in views])


def timed(fn, *args, calls: int) -> float:
    """ms of process CPU time per call."""
    start = time.process_time()
    for _ in range(calls):
        fn(*args)
    return (time.process_time() - start) / calls * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="112x112,128x170,240x320")
    parser.add_argument("--areas", default="0.3,0.5,0.7,0.9")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    def each(decode):
        return tf.function(lambda j, win: tf.stack([decode(j[i], win) for i in range(args.frames)]))

    ways = {
        "alone": each(lambda b, win: tf.io.decode_and_crop_jpeg(b, win, channels=3,
                                                                 dct_method="INTEGER_FAST")),
        "whole": tf.function(lambda j, win: crop(decode_jpegs(j), win)),
        "kvid": tf.function(decode_jpegs),
    }
    photo = sample_photo()
    result = {"bench": "window_decode", "frames": args.frames, "cases": []}
    for size in args.sizes.split(","):
        h, w = map(int, size.split("x"))
        jpegs = clip_jpegs(photo, h, w, args.frames)
        for area in map(float, args.areas.split(",")):
            side = area ** 0.5
            ch, cw = round(h * side), round(w * side)
            window = tf.constant([(h - ch) // 2, (w - cw) // 2, ch, cw])
            times = {k: [] for k in ways}
            for _ in range(args.rounds):
                for k, fn in ways.items():
                    timed(fn, jpegs, window, calls=3)
                    times[k].append(timed(fn, jpegs, window, calls=args.calls))
            ms = {k: float(np.median(v)) for k, v in times.items()}
            result["cases"].append({
                "frame": size, "window": f"{ch}x{cw}", "area": round(ch * cw / (h * w), 2),
                **{f"{k}_ms": round(v, 3) for k, v in ms.items()},
                "alone_vs_whole": round(ms["alone"] / ms["whole"], 2),
                "kvid_vs_best": round(ms["kvid"] / min(ms["alone"], ms["whole"]), 2)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
