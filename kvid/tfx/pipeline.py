"""The TFX pipeline: VideoExampleGen -> StatisticsGen/SchemaGen/ExampleValidator -> Trainer
-> Evaluator (TFMA, vs the latest blessed model) -> Pusher (TF Serving layout).

:func:`create_pipeline` only wires components from one :class:`PipelineConfig`;
``pipeline/kvid.py`` runs it with LocalDagRunner (``python pipeline/kvid.py``, the TFX CLI,
``kvid pipeline run``) and :func:`compile_kubeflow_v2` compiles the same pipeline for
Vertex AI Pipelines.
"""

from __future__ import annotations

import os

# TFMA 0.52's top-level package does not re-export its config protos (tfma.EvalConfig is
# missing); they live in tensorflow_model_analysis.proto.config_pb2.
from tensorflow_model_analysis.proto import config_pb2 as tfma
from tfx import v1 as tfx

from kvid.serving.contract import EXAMPLES_SIGNATURE, PROBABILITIES_OUTPUT
from kvid.tfx.config import PipelineConfig, ensure_videos
from kvid.tfx.example_gen import VideoExampleGen

TRAINER_MODULE = "kvid.tfx.trainer_module.run_fn"


def eval_config(config: PipelineConfig, num_classes: int) -> tfma.EvalConfig:
    """Accuracy, top-5, a confusion matrix and per-class one-vs-rest recall (TFMA binarizes
    class c as probability_c > 0.5, not argmax) on ``serving_examples``; blessing needs
    accuracy >= the absolute threshold and no worse than the baseline by more than the
    change threshold."""
    accuracy = tfma.MetricConfig(
        class_name="SparseCategoricalAccuracy",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(
                lower_bound={"value": config.accuracy_threshold}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": config.change_threshold})))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EXAMPLES_SIGNATURE, label_key="label",
                                    prediction_key=PROBABILITIES_OUTPUT,
                                    preprocessing_function_names=[])],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(metrics=[
                accuracy,
                tfma.MetricConfig(class_name="SparseTopKCategoricalAccuracy",
                                  config='{"k": %d}' % min(5, num_classes)),
                tfma.MetricConfig(class_name="ExampleCount"),
                tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
            ]),
            tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name="Recall")],
                binarize=tfma.BinarizationOptions(class_ids={"values": list(range(num_classes))})),
        ])


def _num_classes(config: PipelineConfig) -> int:
    if config.num_classes:
        return config.num_classes
    if not config.data_root:
        return config.synth_classes
    from kvid.ingest.runner import as_manifest

    return len(as_manifest(config.videos).labels)


def create_pipeline(config: PipelineConfig, *, local: bool = True) -> tfx.dsl.Pipeline:
    """Wires the components; runs nothing. The video folder must exist (see ensure_videos).

    ``local``: with the SQLite metadata store of LocalDagRunner (TFX creates its folder);
    an orchestrator that brings its own store (Kubeflow) gets none.
    """
    videos = config.videos
    example_gen = VideoExampleGen(
        videos, config.ingest_config(),
        split_buckets={"train": config.train_buckets, "eval": config.eval_buckets})
    components = [example_gen]
    if config.statistics:
        statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False)
        example_validator = tfx.components.ExampleValidator(
            statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
        components += [statistics_gen, schema_gen, example_validator]

    trainer = tfx.components.Trainer(
        run_fn=TRAINER_MODULE,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(),
        eval_args=tfx.proto.EvalArgs(),
        custom_config={
            "model": config.model, "model_kwargs": config.model_kwargs,
            "preset": config.preset or None,
            "pretrained": config.pretrained or None, "freeze_backbone": config.freeze_backbone,
            "backbone_lr_scale": config.backbone_lr_scale,
            "epochs": config.epochs, "batch_size": config.batch_size,
            "clip_frames": config.clip_frames, "sampling": config.sampling,
            "frame_step": config.frame_step, "num_segments": config.num_segments,
            "clip_aggregation": config.clip_aggregation, "modality": config.modality or None,
            "flow_frames": config.flow_frames or None, "flow_direction": config.flow_direction,
            "learning_rate": config.learning_rate, "optimizer": config.optimizer,
            "schedule": config.schedule, "lr_steps": list(config.lr_steps),
            "seed": config.seed,
            "mixed_precision": config.mixed_precision, "xla": config.xla,
            "model_name": config.model_name,
            "flip": config.flip and bool(config.data_root), "crop": config.crop,
        })
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config, _num_classes(config)),
        example_splits=["eval"])
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=os.path.abspath(os.path.join(config.push_dir,
                                                            config.model_name)))))
    components += [trainer, model_resolver, evaluator, pusher]
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=os.path.abspath(config.pipeline_root),
        components=components,
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.abspath(config.metadata_path)) if local else None,
        beam_pipeline_args=list(config.beam_args),
    )


def run_local(config: PipelineConfig) -> None:
    """What ``python pipeline/kvid.py`` does: LocalDagRunner with an SQLite metadata store."""
    ensure_videos(config)
    os.makedirs(os.path.dirname(os.path.abspath(config.metadata_path)), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))


def compile_kubeflow_v2(config: PipelineConfig, output_file: str, *,
                        image: str = "kvid:latest") -> str:
    """Compiles the same pipeline to a Kubeflow V2 / Vertex AI Pipelines JSON spec.

    It runs on a cluster, so it reads and writes nothing here: the videos are
    ``data_root`` (a place the cluster reads, e.g. ``gs://bucket/videos``) and their class
    count ``num_classes``, both given.
    """
    config.check_cluster()
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file))
    runner.run(create_pipeline(config, local=False), write_out=True)
    return output_file
