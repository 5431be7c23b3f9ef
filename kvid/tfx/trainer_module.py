"""The TFX Trainer's module file: a thin ``run_fn`` over kvid's own trainer and export.

``custom_config`` carries :class:`kvid.train.trainer.TrainConfig` fields (model, epochs,
...). Data comes from the Examples artifact that VideoExampleGen wrote (its ``dataset.json``
holds the label map); the run (checkpoints, logs, ``input.json``) goes to
``fn_args.model_run_dir`` and its SavedModel to ``fn_args.serving_model_dir``, exported as
``kvid export`` exports a run: its best-validation model (``best.keras``), not whatever the
last epoch left, so the Evaluator blesses the model ``kvid export`` would serve.
"""

from __future__ import annotations

import os

from kvid.train.multiworker import cluster
from kvid.train.runs import export_run
from kvid.train.trainer import config_from_dict, train


def examples_root(file_patterns) -> str:
    """The Examples artifact's uri from the Trainer's ``.../Split-train/*`` patterns."""
    first = file_patterns[0] if isinstance(file_patterns, (list, tuple)) else file_patterns
    return os.path.dirname(os.path.dirname(first))


def run_fn(fn_args) -> None:
    custom = dict(fn_args.custom_config or {})
    data_dir = examples_root(fn_args.train_files)
    # Both output folders are this execution's artifacts: what a failed earlier attempt of
    # it left there is replaced (unless the custom config asks to resume that attempt).
    resume = bool(custom.get("resume"))
    config = config_from_dict({
        **custom, "data_dir": data_dir, "output_dir": fn_args.model_run_dir,
        "train_split": "train", "val_split": "eval", "verbose": 2,
        "resume": resume, "overwrite": not resume,
    })
    train(config)  # under TF_CONFIG with several tasks: every worker trains, the chief writes
    place = cluster()
    if place is not None and not place.chief:
        return
    export_run(fn_args.model_run_dir, fn_args.serving_model_dir,
               model_name=custom.get("model_name", "kvid"), overwrite=True)
