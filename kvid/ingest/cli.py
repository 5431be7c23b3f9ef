"""``kvid ingest``: flags at the edge, then :func:`kvid.ingest.runner.run_ingest`.

Arguments this parser does not know are Beam pipeline options, passed through untouched
(``--runner DataflowRunner --project ...``), so outgrowing one machine is a flag change.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Sequence

from kvid import files
from kvid.cliargs import (OneLineParser, any_int, fraction, non_negative_int, number_type,
                          positive_float, positive_int, regex)
from kvid.ingest import manifests
from kvid.ingest.config import COMPRESSIONS, FLOW_METHODS, LAYOUTS, IngestConfig
from kvid.video.sampling import SHORT_POLICIES

FORMATS = ("auto", "folder", "csv", "ucf101", "hmdb51", "kinetics", "ntu")


def _size(text: str) -> tuple[int, int]:
    """``112`` or ``112x112`` (height x width)."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or N, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 8:
        raise argparse.ArgumentTypeError(f"expected HxW with both >= 8, got {text!r}")
    return values


def _ratios(text: str) -> tuple[tuple[str, float], ...]:
    """``train=0.7,val=0.15,test=0.15`` or ``0.7,0.15,0.15`` (train, val, test)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            pairs = tuple((k.strip(), float(v)) for k, v in (p.split("=", 1) for p in parts))
        else:
            pairs = tuple(zip(("train", "val", "test"), (float(p) for p in parts)))
            if len(pairs) != len(parts):
                raise ValueError("more than three unnamed ratios")
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad split ratios {text!r}: {e}") from None
    if (not pairs or not all(math.isfinite(r) and r >= 0 for _, r in pairs)
            or sum(r for _, r in pairs) <= 0):
        raise argparse.ArgumentTypeError(f"split ratios must be >= 0 with a positive sum: {text!r}")
    return pairs


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the ingest flags to ``parser`` (``kvid ingest`` wires it as a subcommand)."""
    d = IngestConfig()
    parser.description = "Turn raw videos into TFRecord clip shards with an Apache Beam job."
    parser.epilog = ("Unknown --flags are Beam pipeline options, passed through "
                     "(e.g. --runner DataflowRunner --project P --region R).")
    parser.add_argument("source", help="videos folder root/<label>/..., a CSV manifest, or the "
                        "dataset root for --format ucf101/hmdb51/ntu (kinetics: the CSV)")
    parser.add_argument("-o", "--out", required=True, help="output dataset folder")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="manifest format (auto: folder or .csv)")
    parser.add_argument("--labels", help="label map file (one name per line): fixes the label "
                        "order; videos with other labels go to dead letters")
    parser.add_argument("--group-pattern", action="append", metavar="REGEX", type=regex,
                        help="regex on the file name whose first group is the video's group "
                        "(repeatable; default: _gNN_, then actorNN, else the video itself)")
    parser.add_argument("--split-files", metavar="DIR",
                        help="ucf101/hmdb51: folder of the official split lists")
    parser.add_argument("--videos", metavar="DIR", help="kinetics: folder of the video files")
    parser.add_argument("--official-split", type=positive_int, default=1, choices=(1, 2, 3),
                        help="ucf101/hmdb51: which official split")
    parser.add_argument("--protocol", choices=manifests.NTU_PROTOCOLS, default="xsub",
                        help="ntu: cross-subject, cross-view or cross-setup")
    parser.add_argument("--val-ratio", type=fraction, default=0.0,
                        help="formats with official train/test only: move this fraction of "
                        "train groups to a val split")
    parser.add_argument("--fps", type=positive_float, default=d.fps,
                        help="target frame rate (default: source)")
    parser.add_argument("--layout", choices=LAYOUTS, default=d.layout,
                        help="clips: stored windows of --clip-frames; video: each video whole "
                        "(or in chunks of --max-frames), clips sampled at read time")
    parser.add_argument("--max-frames", type=number_type(integer=True, minimum=2),
                        default=d.max_frames, help="layout video: frames per record at most")
    parser.add_argument("--chunk-overlap", type=non_negative_int, default=d.chunk_overlap,
                        help="layout video: frames shared by consecutive chunks (at least "
                        "the longest clip span a model will sample)")
    parser.add_argument("--clip-frames", type=positive_int, default=d.clip_frames,
                        help="T frames per clip (layout video: the fewest a video may have "
                        "with --short-policy reject)")
    parser.add_argument("--stride", type=positive_int, default=d.stride,
                        help="frames between clip starts")
    parser.add_argument("--max-clips", type=positive_int, default=d.max_clips,
                        help="clips per video, spread evenly")
    parser.add_argument("--segments", type=non_negative_int, default=d.segments,
                        help="TSN: one clip of the center snippet of K segments")
    parser.add_argument("--snippet", type=positive_int, default=d.snippet,
                        help="TSN: frames per segment")
    parser.add_argument("--short-policy", choices=SHORT_POLICIES, default=d.short_policy,
                        help="a video shorter than a clip")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short-side", type=number_type(integer=True, minimum=8),
                      default=d.short_side, help="resize, keep aspect")
    size.add_argument("--size", type=_size, default=d.size, help="HxW: resize + center crop")
    parser.add_argument("--jpeg-quality", type=number_type(integer=True, minimum=1, maximum=100),
                        default=d.jpeg_quality)
    parser.add_argument("--flow", choices=FLOW_METHODS, default=d.flow, help="optical flow")
    parser.add_argument("--flow-backward", action="store_true",
                        help="also store the backward flow, for bi-directional flow stacks "
                             "(kvid train --flow-direction bidirectional)")
    parser.add_argument("--compression", choices=("none", "gzip"), default="none",
                        help="shard compression (none: gzip reads 4-9x slower for ~20%% smaller)")
    parser.add_argument("--split-ratios", type=_ratios, default=d.split_ratios,
                        help="group-hash split ratios, e.g. train=0.7,val=0.15,test=0.15")
    parser.add_argument("--seed", type=any_int, default=d.seed, help="seed of the group hash")
    parser.add_argument("--workers", type=positive_int, default=d.workers,
                        help="DirectRunner processes")
    parser.add_argument("--num-shards", type=non_negative_int, default=d.num_shards,
                        help="shards per split; 0 (default): each worker writes its own "
                             "shards where it decodes, no shuffle of the records")
    parser.add_argument("--shard-mb", type=positive_float, default=d.shard_mb,
                        help="with --num-shards 0, start a new shard after this many MB")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    return parser


def config_from_args(args: argparse.Namespace) -> IngestConfig:
    return IngestConfig(
        layout=args.layout, max_frames=args.max_frames, chunk_overlap=args.chunk_overlap,
        fps=args.fps, clip_frames=args.clip_frames, stride=args.stride, max_clips=args.max_clips,
        segments=args.segments, snippet=args.snippet, short_policy=args.short_policy,
        short_side=args.short_side, size=args.size, jpeg_quality=args.jpeg_quality,
        flow=args.flow, flow_backward=args.flow_backward,
        compression=COMPRESSIONS[1] if args.compression == "gzip" else "",
        split_ratios=args.split_ratios, seed=args.seed, workers=args.workers,
        num_shards=args.num_shards, shard_mb=args.shard_mb)


def manifest_from_args(args: argparse.Namespace) -> manifests.Manifest:
    """Reads the manifest the flags describe."""
    labels = manifests.read_labels_file(args.labels) if args.labels else None
    fmt = args.format
    if fmt == "auto":
        fmt = "csv" if args.source.lower().endswith(".csv") else "folder"
    if fmt in ("ucf101", "hmdb51") and not args.split_files:
        raise ValueError(f"--format {fmt} needs --split-files DIR")
    if fmt == "kinetics" and not args.videos:
        raise ValueError("--format kinetics needs --videos DIR (the source is the CSV)")
    if fmt == "folder":
        m = manifests.read_folder(args.source, labels=labels, group_pattern=args.group_pattern)
    elif fmt == "csv":
        m = manifests.read_csv(args.source, labels=labels, group_pattern=args.group_pattern)
    elif fmt == "ucf101":
        m = manifests.read_ucf101(args.source, args.split_files, split=args.official_split)
    elif fmt == "hmdb51":
        m = manifests.read_hmdb51(args.source, args.split_files, split=args.official_split)
    elif fmt == "kinetics":
        m = manifests.read_kinetics(args.source, args.videos, labels=labels)
    else:
        m = manifests.read_ntu(args.source, protocol=args.protocol, labels=labels)
    if args.val_ratio:
        m = manifests.carve_split(m, args.val_ratio, seed=args.seed)
    return m


def _check_pipeline_args(parser: argparse.ArgumentParser, extra: Sequence[str]) -> list[str]:
    if extra and not extra[0].startswith("--"):
        parser.error(f"unexpected argument {extra[0]!r} (Beam options must start with --)")
    return list(extra)


def main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """Runs ``kvid ingest``; ``args`` is argv or a Namespace (Beam options in
    ``args.pipeline_args``). Returns 0 when done, also with dead letters (they are counted)."""
    parser = configure_parser(OneLineParser(prog="kvid ingest"))
    if args is None or not isinstance(args, argparse.Namespace):
        args, extra = parser.parse_known_args(args)
        args.pipeline_args = extra
    pipeline_args = _check_pipeline_args(parser, getattr(args, "pipeline_args", None) or [])
    try:
        config = config_from_args(args)
        if config.flow != "none":
            from kvid.video.flow import check_method
            check_method(config.flow)
        paths = (args.source, args.out, args.labels, args.split_files, args.videos)
        if any(p and files.is_remote(p) for p in paths):  # listed here, before the pipeline
            from kvid.ingest.runner import pipeline_options
            files.configure(pipeline_options(pipeline_args, config.workers))
        manifest = manifest_from_args(args)
    except (ValueError, OSError) as e:
        parser.error(str(e).splitlines()[0])
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        for noisy in ("apache_beam", "absl"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    from kvid.ingest.runner import NothingToIngest, run_ingest

    try:
        dataset = run_ingest(manifest, args.out, config, pipeline_args, overwrite=args.overwrite)
    except (FileExistsError, NothingToIngest) as e:
        parser.error(str(e))
    print_summary(dataset, args.out, manifest)
    return 0


def print_summary(dataset: dict, out: str, manifest: manifests.Manifest) -> None:
    """Per split, then what was lost (folders that could not be listed by name, with their
    label), then what was skipped, and last the totals line, so nothing goes unsaid."""
    from kvid.ingest.runner import DEAD_LETTERS_JSONL, totals_line

    for split, s in dataset["splits"].items():
        unit = "records (whole videos or chunks)" if dataset.get("layout") == "video" else "clips"
        print(f"  {split}: {s['num_videos']} videos, {s['num_clips']} {unit}")
    if dataset["dead_letters"]:
        print(f"  dead letters: {dataset['dead_letters']} {dataset['dead_letter_reasons']} "
              f"(see {out}/{DEAD_LETTERS_JSONL})")
    for d in manifest.dead_letters:
        if d["reason"] == manifests.UNREADABLE_DIR:
            label = f" (label {d['label']})" if d.get("label") else ""
            print(f"  cannot list folder {d['path']}{label}: its videos are not ingested")
    if dataset["num_skipped"]:
        print(f"  skipped: {dataset['num_skipped']} {dataset['skipped_reasons']} "
              f"(listed in {out}/dataset.json, \"skipped\")")
    print(totals_line(dataset))


if __name__ == "__main__":
    sys.exit(main())
