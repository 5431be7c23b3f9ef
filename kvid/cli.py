"""``kvid <verb>``: the command line. Flags are parsed here into the library's configs.

Heavy imports (TensorFlow, Beam) happen inside the verbs, so ``kvid --help`` is instant.
A bad argument or a user error ends in one line on stderr, never a traceback
(set ``KVID_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from kvid import validate
from kvid.cliargs import (OneLineParser, any_int, json_object, non_negative_float,
                          positive_float, positive_floats, positive_int)

# What the user gave is wrong (a value, a path, an existing output): exit code 2, as
# argparse's own errors. Anything else that fails (a server, a disk) exits with 1.
USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
                IsADirectoryError, KeyError, validate.MissingExtra)

VERBS = {
    "synth": "write the synthetic motion dataset (real mp4 videos)",
    "ingest": "decode videos into TFRecord clip shards with Apache Beam",
    "copy": "copy a dataset or run folder between local disk and gs://, s3://... storage",
    "train": "train a model of the zoo on clip shards",
    "evaluate": "top-1/top-5, per-class accuracy, confusion matrix, video-level scores",
    "fuse": "fuse trained runs (e.g. an RGB and a flow stream) by weighted softmax scores",
    "export": "write a SavedModel with kvid's serving signatures",
    "serve": "serve SavedModels with the TF Serving REST/gRPC API (development server)",
    "predict": "classify a video with a served model (REST or gRPC)",
    "demo": "the whole flow on synthetic data: synth, ingest, train, evaluate, export, serve",
    "pipeline": "run or compile the TFX pipeline (pipeline/kvid.py)",
    "models": "list the model zoo (and which published checkpoints convert into it)",
    "convert": "convert a published checkpoint (torchvision, PyTorchVideo, DeepMind) to .keras",
    "native": "build the native training-crop kernel now (else built at first use)",
}


def _add_synth_args(p):
    p.add_argument("output", help="folder to write root/<label>/<video>.mp4 into")
    p.add_argument("--classes", type=positive_int, default=8, help="number of classes (2-8)")
    p.add_argument("--videos-per-class", type=positive_int, default=12)
    p.add_argument("--frames", type=positive_int, default=32, help="frames per video")
    p.add_argument("--fps", type=positive_float, default=25.0)
    p.add_argument("--size", type=positive_int, default=96, help="frame height and width")
    p.add_argument("--actors", type=positive_int, default=6,
                   help="groups that must not straddle splits")
    p.add_argument("--seed", type=any_int, default=0)


def _synth_config(args):
    from kvid.synth import SynthConfig

    return SynthConfig(num_classes=args.classes, videos_per_class=args.videos_per_class,
                       frames=args.frames, fps=args.fps, size=args.size, actors=args.actors,
                       seed=args.seed)


def _cmd_synth(args) -> int:
    from kvid.synth import generate

    cfg = _synth_config(args)
    paths = generate(args.output, cfg, progress=True)
    print(f"wrote {len(paths)} videos of {cfg.num_classes} classes to {args.output}")
    return 0


def _add_train_args(p):
    p.add_argument("--data", required=True, help="clip shards (kvid ingest output)")
    p.add_argument("--model", default="cnn_gru", help="a name from 'kvid models'")
    p.add_argument("--model-args", default={}, type=json_object,
                   help='builder keyword arguments as JSON, e.g. \'{"units": 64}\'')
    p.add_argument("--preset", choices=("paper", "tiny"),
                   help="paper: the paper's training recipe where kvid has it (clip length, "
                        "frame step, crop size, optimizer, learning rate, schedule, epochs, "
                        "batch: kvid.train.recipes; a flag given here wins); tiny: builder "
                        "arguments small enough for CPU runs (--model-args override them)")
    p.add_argument("--output", required=True, help="run folder (checkpoints, logs, plots)")
    p.add_argument("--epochs", type=positive_int, help="default: 10")
    p.add_argument("--batch-size", type=positive_int, help="default: 8")
    p.add_argument("--clip-frames", type=positive_int, help="default: the stored clip length")
    p.add_argument("--image-size", type=positive_int, help="default: the stored frame size")
    p.add_argument("--sampling", choices=("dense", "uniform", "segments"),
                   help="dense: consecutive frames (--frame-step apart); uniform: spread over "
                        "the record; segments: TSN, a snippet from each of --num-segments")
    p.add_argument("--modality", choices=("rgb", "flow", "rgb+flow", "rgbdiff"),
                   help="the stream to train on (default: the model's): flow is the stored "
                        "8-bit optical flow (kvid ingest --flow); rgb+flow: both, for the "
                        "two-stream models; rgbdiff: TSN's RGB difference (each frame's "
                        "successor minus it), made from the stored frames")
    p.add_argument("--flow-direction", choices=("forward", "bidirectional"),
                   default="forward",
                   help="bidirectional: each flow stack's first half is backward flow "
                        "(Simonyan & Zisserman; kvid ingest --flow-backward)")
    p.add_argument("--flow-frames", type=positive_int,
                   help="rgb+flow: flow images per clip, centred on the RGB clip (Simonyan & "
                        "Zisserman: --clip-frames 1 --flow-frames 10; default: --clip-frames)")
    p.add_argument("--frame-step", type=positive_int,
                   help="dense: frames between sampled frames (e.g. SlowFast's 8x8: 8; "
                        "default 1)")
    p.add_argument("--num-segments", type=positive_int,
                   help="segments: K (--clip-frames must be a multiple of it; default 3)")
    p.add_argument("--clip-aggregation", default="mean", choices=("mean", "last"),
                   help="per-step models (LRCN): clip logits for evaluation and export, "
                        "the mean over steps or the last step")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no random horizontal flips (needed when mirroring changes the class, "
                        "as for the synthetic move_left/move_right data)")
    p.add_argument("--crop", choices=("random_resized", "multiscale", "random", "center"),
                   help="training crop: Inception-style random resized (default), TSN "
                        "multi-scale, a fixed-size crop at a random place (C3D/I3D: store "
                        "frames larger than --image-size), or the center")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default: adam")
    p.add_argument("--lr", type=positive_float, help="default: 1e-3")
    p.add_argument("--schedule", choices=("constant", "cosine", "step", "multigrid"),
                   help="default: cosine")
    p.add_argument("--lr-steps", type=positive_floats, metavar="F1,F2,...",
                   help="--schedule step: the fractions of training at which the rate is "
                        "divided by 10 (default 0.5,0.75)")
    p.add_argument("--warmup", type=non_negative_float, help="warm-up epochs (default 0)")
    p.add_argument("--weight-decay", type=non_negative_float, help="default: 0")
    p.add_argument("--label-smoothing", type=non_negative_float, help="in [0, 1) (default 0)")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPU)")
    p.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                   help="XLA compilation of the training step (auto: Keras's choice, on with "
                        "a GPU)")
    p.add_argument("--pretrained", metavar="[SOURCE:]PATH",
                   help="start from a published checkpoint of --model (torchvision:PATH, "
                        "pytorchvideo:PATH, deepmind:PATH; `kvid models` lists them) or a kvid "
                        ".keras file; the head is new, for the data's classes")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="with --pretrained: train only the new head")
    p.add_argument("--backbone-lr-scale", type=positive_float, default=1.0, metavar="S",
                   help="with --pretrained: the backbone trains at --lr x S (e.g. 0.1), the "
                        "new head at --lr")
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true",
                      help="continue an interrupted run in --output (same model and input)")
    runs.add_argument("--overwrite", action="store_true",
                      help="replace the run already in --output")
    p.add_argument("--steps-per-epoch", type=positive_int)
    p.add_argument("--seed", type=any_int, default=0)


def _train_config(args):
    from kvid.train.recipes import paper_settings
    from kvid.train.trainer import TrainConfig

    # Flags left out take the paper's recipe (--preset paper), else TrainConfig's defaults.
    given = {"epochs": args.epochs, "batch_size": args.batch_size,
             "clip_frames": args.clip_frames, "image_size": args.image_size,
             "sampling": args.sampling, "frame_step": args.frame_step,
             "num_segments": args.num_segments, "flow_frames": args.flow_frames,
             "crop": args.crop, "optimizer": args.optimizer, "learning_rate": args.lr,
             "schedule": args.schedule, "warmup_epochs": args.warmup,
             "lr_steps": tuple(args.lr_steps) if args.lr_steps else None,
             "weight_decay": args.weight_decay, "label_smoothing": args.label_smoothing}
    recipe = paper_settings(args.model, args.modality) if args.preset == "paper" else {}
    settings = {**recipe, **{k: v for k, v in given.items() if v is not None}}
    return TrainConfig(
        data_dir=args.data, output_dir=args.output, model=args.model,
        model_kwargs=args.model_args, preset=args.preset, **settings,
        clip_aggregation=args.clip_aggregation, modality=args.modality, flip=args.flip,
        flow_direction=args.flow_direction,
        mixed_precision=args.mixed_precision, xla=args.xla,
        pretrained=args.pretrained, freeze_backbone=args.freeze_backbone,
        backbone_lr_scale=args.backbone_lr_scale, resume=args.resume, overwrite=args.overwrite,
        steps_per_epoch=args.steps_per_epoch, seed=args.seed)


def _cmd_train(args) -> int:
    from kvid.train.trainer import train

    result = train(_train_config(args))
    last = {k: round(v[-1], 4) for k, v in result.history.items() if v}
    print(json.dumps({"output": result.output_dir, "final": last}))
    return 0


def _add_evaluate_args(p):
    p.add_argument("run", help="run folder written by 'kvid train' or 'kvid fuse'")
    p.add_argument("--data", help="clip shards (default: the run's training data)")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=positive_int, default=4,
                   help="temporal clips per video (video level)")
    p.add_argument("--crops", type=int, default=1, choices=(1, 3, 10),
                   help="spatial crops per clip (video level): 1 center, 3 along the long "
                        "side, 10 = 4 corners + center, each also mirrored (TSN)")
    p.add_argument("--output", help="folder for report.json and PNGs (default: RUN/eval-SPLIT)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--clip-aggregation", choices=("mean", "last"),
                   help="per-step models (LRCN): clip logits from the mean or the last step "
                        "(default: the run's)")


def _cmd_evaluate(args) -> int:
    from kvid.train.evaluate import evaluate_run

    report = evaluate_run(args.run, data_dir=args.data, split=args.split,
                          num_clips=args.clips, num_crops=args.crops,
                          output_dir=args.output, batch_size=args.batch_size,
                          clip_aggregation=args.clip_aggregation)
    summary = {level: {k: report[level][k] for k in ("count", "top1", "mean_class_accuracy")}
               for level in ("clip", "video") if level in report}
    views = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
             for row in report["views"]["rows"]]
    print(json.dumps({**summary, "views": views, "report": report["files"]["report"]}))
    return 0


def _add_copy_args(p):
    p.add_argument("source", help="a folder or prefix: local, gs://..., s3://...")
    p.add_argument("dest", help="where the same files go (local or remote)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty DEST")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = ("Other flags are Beam's filesystem options, e.g. --s3_endpoint_url URL "
                "--s3_region_name R (credentials as boto3 finds them) or --project P.")


def _cmd_copy(args) -> int:
    """Why a copy: TensorFlow 2.21 reads gs:// but has no s3:// filesystem (README)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from kvid import dataset, files

    unknown = [a for a in args.pipeline_args or [] if a.startswith("-") and not a.startswith(
        ("--s3_", "--project", "--gcs_", "--hdfs_", "--azure_", "--blob_"))]
    if unknown:  # a typo would otherwise be dropped by Beam with a log line
        raise ValueError(f"unrecognized arguments: {' '.join(unknown)}")
    files.configure(PipelineOptions(args.pipeline_args or []))
    count, size = files.copy_tree(args.source, args.dest, overwrite=args.overwrite,
                                  last=dataset.FILE, progress=not args.quiet)
    print(json.dumps({"source": args.source, "dest": args.dest, "files": count,
                      "bytes": size}))
    return 0


def _add_fuse_args(p):
    from kvid.train.fuse import PRESETS

    p.add_argument("runs", nargs="+", help="run folders written by 'kvid train' (2 or more), "
                                           "with the same classes")
    p.add_argument("-o", "--output", required=True, help="the fused folder to write")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--weights", type=positive_floats,
                     help="one weight per run, e.g. 1,1.5 (scores: the weighted mean of the "
                          "runs' softmax scores)")
    how.add_argument("--preset", choices=sorted(PRESETS),
                     help="the papers' weights by stream: average (Simonyan; two-stream I3D) "
                          "rgb 1 flow 1, tsn rgb 1 flow 1.5, lrcn rgb 1/3 flow 2/3 "
                          "(default: average)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"),
                   help="which model of each run to take")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def _cmd_fuse(args) -> int:
    from kvid.train.fuse import fuse_runs

    spec = fuse_runs(args.runs, args.output, weights=args.weights, preset=args.preset,
                     checkpoint=args.checkpoint, overwrite=args.overwrite)
    print(json.dumps({"output": args.output, "preset": spec["preset"],
                      "members": [{k: m[k] for k in ("source", "model", "modality", "weight")}
                                  for m in spec["members"]]}))
    return 0


def _add_export_args(p):
    p.add_argument("run", help="run folder written by 'kvid train' or 'kvid fuse', or a "
                               ".keras file written by 'kvid convert'")
    p.add_argument("output", help="SavedModel folder, e.g. serving/models/kvid/1")
    p.add_argument("--weights", default="best", choices=("best", "last"))
    p.add_argument("--model-name", default=None,
                   help="name used in the SavedModel's warm-up requests (default: kvid)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="classes in the SavedModel's top-k outputs, at most the number of "
                        "classes (default: 5, or all of them if fewer)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing model in OUTPUT (swapped in by renames, so a "
                        "server watching it never loads a half-written one)")
    p.add_argument("--clip-aggregation", choices=("mean", "last"),
                   help="per-step models (LRCN): clip logits from the mean or the last step "
                        "(default: the run's)")
    p.add_argument("--tflite", choices=("float32", "float16", "int8"),
                   help="write a TF Lite folder (model.tflite, labels.txt, kvid.json) to "
                        "OUTPUT instead of a SavedModel: float32, float16 weights, or int8 "
                        "weights and activations calibrated on the run's training clips")
    p.add_argument("--calibration-clips", type=positive_int, default=100,
                   help="--tflite int8: training clips to calibrate on")
    p.add_argument("--calibration-data", metavar="DIR",
                   help="--tflite int8: data folder to calibrate on (default: the run's)")


def _cmd_export(args) -> int:
    from kvid.train.runs import export_run, export_run_tflite

    saved_model_only = {"model_name": args.model_name, "top_k": args.top_k}
    given = {k: v for k, v in saved_model_only.items() if v is not None}
    if args.tflite:
        if given:  # a TF Lite file has no top-k outputs and no warm-up requests
            flag = "--" + next(iter(given)).replace("_", "-")
            raise ValueError(f"{flag} applies to a SavedModel export, not to --tflite")
        path = export_run_tflite(args.run, args.output, quantization=args.tflite,
                                 weights=args.weights, calibration_clips=args.calibration_clips,
                                 calibration_data=args.calibration_data,
                                 overwrite=args.overwrite,
                                 clip_aggregation=args.clip_aggregation)
    else:
        path = export_run(args.run, args.output, weights=args.weights, **given,
                          overwrite=args.overwrite, clip_aggregation=args.clip_aggregation)
    print(f"exported {path}")
    return 0


def _add_demo_args(p):
    from kvid.demo import DemoConfig as D  # the demo's defaults live in one place

    p.add_argument("--output", default=D.output, help="folder for everything the demo writes")
    p.add_argument("--classes", type=positive_int, default=D.num_classes)
    p.add_argument("--videos-per-class", type=positive_int, default=D.videos_per_class)
    p.add_argument("--epochs", type=positive_int, default=D.epochs)
    p.add_argument("--model", default=D.model,
                   help="a zoo model (its builder defaults are used unless it is the default)")
    p.add_argument("--workers", type=positive_int, default=D.workers,
                   help="Beam worker processes for ingest")
    p.add_argument("--seed", type=any_int, default=D.seed)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo output")


def _cmd_demo(args) -> int:
    from kvid.demo import DemoConfig, run_demo

    kwargs = {} if args.model == DemoConfig.model else {"model_kwargs": {}}
    summary = run_demo(DemoConfig(output=args.output, num_classes=args.classes,
                                  videos_per_class=args.videos_per_class, epochs=args.epochs,
                                  model=args.model, workers=args.workers, seed=args.seed,
                                  overwrite=args.overwrite, **kwargs))
    return 0 if summary["rest_matches_in_process"] else 1


def _cmd_models(args) -> int:
    from kvid.models.registry import MODELS
    from kvid.pretrained import importers_for

    for name, info in MODELS.items():
        line = (f"{name:24s} {info.modality:9s} {'temporal' if info.temporal else 'per-frame':9s}"
                f" {info.description}")
        for imp in importers_for(name):
            top1 = f", Kinetics top-1 {imp.top1:.1f}%" if imp.top1 is not None else ""
            line += f" [converts {imp.spec}{top1}]"
        print(line)
    return 0


def _add_convert_args(p):
    p.add_argument("source", metavar="SOURCE:NAME",
                   help="the checkpoint's publisher and model, e.g. torchvision:r2plus1d_18, "
                        "pytorchvideo:x3d_m, deepmind:i3d_rgb (`kvid models` lists them)")
    p.add_argument("checkpoint", help="the checkpoint file you have (.pth/.pyth/.pt, "
                                      ".safetensors, or a TF checkpoint prefix or folder)")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--clip-frames", type=positive_int,
                   help="frames per clip the model is built for (default: the source recipe's)")
    p.add_argument("--image-size", type=positive_int,
                   help="frame height and width (default: the source recipe's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")


def _cmd_convert(args) -> int:
    import time

    from kvid.models.registry import get_model_info
    from kvid.pretrained import get_importer, load_pretrained, save_converted
    from kvid.pretrained.checkpoint import checkpoint_exists

    importer = get_importer(args.source)
    if not checkpoint_exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    if os.path.exists(args.output) and not args.overwrite:
        raise FileExistsError(f"{args.output} exists (use --overwrite to replace it)")
    frames, height, width, channels = get_model_info(importer.name).reference_input_shape
    shape = (args.clip_frames or frames, args.image_size or height, args.image_size or width,
             channels)
    start = time.perf_counter()
    model = load_pretrained(importer.spec, args.checkpoint, input_shape=shape)
    save_converted(model, importer, args.output, overwrite=args.overwrite, input_shape=shape)
    print(json.dumps({"converted": importer.spec, "output": args.output,
                      "params": model.count_params(), "input_shape": list(shape),
                      "seconds": round(time.perf_counter() - start, 1)}))
    return 0


def _cmd_native(args) -> int:
    from kvid.data import native

    if not native.enabled():
        print("native training crop: off (KVID_NATIVE=0); tf.data uses TF ops")
        return 0
    problem = native.problem()
    if problem:
        print(f"kvid native: error: {problem}; tf.data uses TF ops (slower)", file=sys.stderr)
        return 1
    print(f"native training crop: {native.build()}")
    return 0


def _add_pipeline_args(p):
    sub = p.add_subparsers(dest="pipeline_verb", required=True, metavar="{run,compile}",
                           parser_class=OneLineParser)
    run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
    run.add_argument("--config", help="pipeline config JSON (default: env KVID_* / built-ins)")
    comp = sub.add_parser("compile", help="compile for Kubeflow V2 / Vertex AI Pipelines")
    comp.add_argument("--kubeflow-v2", required=True, metavar="OUT.json")
    comp.add_argument("--config", help="pipeline config JSON")
    comp.add_argument("--image", default="kvid:latest", help="container image for components")


def _cmd_pipeline(args) -> int:
    from kvid.tfx.config import PipelineConfig

    config = PipelineConfig.load(args.config)
    if args.pipeline_verb != "run":
        config.check_cluster()
    from kvid.tfx.pipeline import compile_kubeflow_v2, run_local

    if args.pipeline_verb == "run":
        run_local(config)
        print(f"pipeline {config.pipeline_name} finished; pushed models: {config.serving_dir}")
    else:
        out = compile_kubeflow_v2(config, args.kubeflow_v2, image=args.image)
        print(f"wrote {out}")
    return 0


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``verb``'s own flags are added (its module imported), for speed."""
    parser = OneLineParser(prog="kvid", description="Human action recognition in video: "
                     "videos -> Beam -> TFRecord clips -> Keras -> TFX -> TF Serving.")
    from kvid import __version__

    parser.add_argument("--version", action="version", version=f"kvid {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB",
                                parser_class=OneLineParser)
    adders = {"synth": _add_synth_args, "train": _add_train_args,
              "evaluate": _add_evaluate_args, "export": _add_export_args, "fuse": _add_fuse_args,
              "copy": _add_copy_args,
              "demo": _add_demo_args, "pipeline": _add_pipeline_args, "models": lambda p: None,
              "convert": _add_convert_args,
              "native": lambda p: None}
    only = verb
    for verb, help_text in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        if verb != only:
            continue
        if verb in adders:
            adders[verb](p)
        elif verb == "ingest":
            from kvid.ingest.cli import configure_parser
            configure_parser(p)
        elif verb == "serve":
            from kvid.serving.flags import configure_serve_parser
            configure_serve_parser(p)
        elif verb == "predict":
            from kvid.serving.client import configure_predict_parser
            configure_predict_parser(p)
    return parser


def _dispatch(args) -> int:
    if args.verb == "ingest":
        from kvid.ingest.cli import main as ingest_main
        return ingest_main(args)
    if args.verb == "serve":
        from kvid.serving.flags import check_serve_args
        check_serve_args(args)  # before TensorFlow loads: a bad flag costs no import
        from kvid.serving.server import serve_command
        return serve_command(args)
    if args.verb == "predict":
        from kvid.serving.client import predict_command
        return predict_command(args)
    return globals()[f"_cmd_{args.verb}"](args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in VERBS else None)
    if argv and argv[0] in ("ingest", "copy"):
        # Unknown flags after 'ingest'/'copy' are Beam pipeline options (--runner=..., ...).
        args, extra = parser.parse_known_args(argv)
        args.pipeline_args = extra
    else:
        args = parser.parse_args(argv)
    try:
        return int(_dispatch(args) or 0)
    except KeyboardInterrupt:
        print("kvid: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:  # the lean core install (a Beam worker's) lacks an extra
        if os.environ.get("KVID_DEBUG") or not e.name or e.name.split(".")[0] == "kvid":
            raise
        print(f"kvid {args.verb}: error: {e.name} is not installed (the core install is the "
              f"ingest's); run scripts/install.sh for everything", file=sys.stderr)
        return 2
    except (*USAGE_ERRORS, OSError) as e:
        if os.environ.get("KVID_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"kvid {args.verb}: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, USAGE_ERRORS) else 1


if __name__ == "__main__":
    sys.exit(main())
