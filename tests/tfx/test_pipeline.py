"""The TFX pipeline end to end, the way users run it: TFX CLI, then `python pipeline/kvid.py`.

Real components, a real SQLite metadata store, real videos. One test so the three runs
share their artifacts: (1) `tfx pipeline create` + `tfx run create` bless and push a model,
(2) the same inputs again hit the cache, (3) an impossible accuracy threshold blocks the push.
"""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kvid import schema
from kvid.tfx.config import PipelineConfig

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIPELINE = os.path.join(REPO, "pipeline", "kvid.py")
BIN = os.path.dirname(sys.executable)


def _run(cmd, env, cwd):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _executions(config: PipelineConfig) -> dict[str, list[str]]:
    """Component id -> list of execution states, read from the pipeline's metadata store."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata

    store = metadata_store.MetadataStore(
        metadata.sqlite_metadata_connection_config(os.path.abspath(config.metadata_path)))
    states = {}
    for ctx in store.get_contexts_by_type("node"):  # named "<pipeline>.<component id>"
        executions = sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)
        states[ctx.name.split(".", 1)[1]] = [
            metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions]
    return states


def _pushed_versions(config):
    return sorted(os.listdir(os.path.join(config.push_dir, config.model_name)))


def test_pipeline_cli_run_cache_and_threshold(tmp_path):
    """Whole-video records (layout "video", the 16-frame videos in two chunks) with optical
    flow: what ExampleGen writes, StatisticsGen/SchemaGen/ExampleValidator read, a
    two-stream model (4 RGB frames + 2 flow images around each, rgb+flow) trains on and the
    Evaluator scores through serving_examples."""
    home = tmp_path / "home"
    cfg_path = tmp_path / "kvid_pipeline.json"
    values = {"home": str(home), "model": "two_stream", "epochs": 1, "synth_classes": 3,
              "synth_videos_per_class": 6, "fps": 12.5, "layout": "video", "max_frames": 12,
              "chunk_overlap": 4, "clip_frames": 4, "image_size": 32, "accuracy_threshold": 0.0,
              "change_threshold": -1.0, "batch_size": 4, "flow": "farneback",
              "modality": "rgb+flow", "flow_frames": 8,
              "model_kwargs": {"small_cnn_widths": [8, 16], "dropout": 0.0}}
    cfg_path.write_text(json.dumps(values))
    env = {**os.environ, "KVID_PIPELINE_CONFIG": str(cfg_path),
           "LOCAL_HOME": str(tmp_path / "tfx_cli"), "PATH": BIN + os.pathsep + os.environ["PATH"]}
    config = PipelineConfig.load(str(cfg_path), environ={})

    # 1. The TFX CLI: create from the file, then run by name.
    _run([os.path.join(BIN, "tfx"), "pipeline", "create", f"--pipeline_path={PIPELINE}",
          "--engine=local"], env, tmp_path)
    _run([os.path.join(BIN, "tfx"), "run", "create", "--pipeline_name=kvid", "--engine=local"],
         env, tmp_path)
    states = _executions(config)
    for node in ("VideoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                 "Evaluator", "Pusher"):
        assert states.get(node) == ["COMPLETE"], (node, states)

    examples = glob.glob(str(home / "pipelines" / "kvid" / "VideoExampleGen" / "examples" / "*"))
    assert len(examples) == 1
    info = json.load(open(os.path.join(examples[0], "dataset.json")))
    assert info["labels"] == ["move_left", "move_right", "move_up"]
    groups = {}
    for split in ("train", "eval"):
        files = glob.glob(os.path.join(examples[0], f"Split-{split}", "*.gz"))
        records = list(tf.data.TFRecordDataset(files, compression_type="GZIP"))
        assert records, split
        clips = [schema.from_example(r.numpy()) for r in records]
        assert sorted({(c.clip_start_frame, len(c.frames), c.video_frames, c.chunk_stride)
                       for c in clips}) == [(0, 12, 16, 8), (8, 8, 16, 8)]
        assert all(c.height == 32 and len(c.flow) == len(c.frames) - 1 for c in clips)
        groups[split] = {c.group for c in clips}
        # Exact counts of what TFX wrote, so the Trainer's epoch is exactly one pass.
        counts = info["splits"][split]
        assert counts["num_clips"] == len(clips)
        assert counts["num_videos"] == len({c.video_id for c in clips})
        assert counts["clips"] == {name: sum(c.label_name == name for c in clips)
                                   for name in info["labels"]}
        assert sum(counts["videos"].values()) == counts["num_videos"]
    assert not groups["train"] & groups["eval"], "a group straddles splits"

    versions = _pushed_versions(config)
    assert len(versions) == 1
    served = tf.saved_model.load(os.path.join(config.push_dir, "kvid", versions[0]))
    clip = next(c for c in clips if len(c.flow) >= 8)
    meta = json.load(open(os.path.join(config.push_dir, "kvid", versions[0], "assets",
                                       "kvid.json")))
    assert meta["modality"] == "rgb+flow" and meta["inputs"] == {"frames": 4, "flow": 8}
    assert meta["flow"]["method"] == "farneback"
    out = served.signatures["serving_default"](frames=tf.constant([list(clip.frames)[:4]]),
                                               flow=tf.constant([list(clip.flow)[:8]]))
    assert out["probabilities"].shape == (1, 3)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(), 1.0, atol=1e-5)
    by_record = served.signatures["serving_examples"](examples=tf.constant(
        [schema.serialize_clip(clip)]))
    assert by_record["probabilities"].shape == (1, 3)

    # 2. Same inputs, run directly: ingest, statistics and training come from the cache.
    #    (The Evaluator runs again: it now has a blessed baseline, which is a new input, and
    #    the Pusher pushes the same model again.)
    _run([sys.executable, PIPELINE], env, tmp_path)
    states = _executions(config)
    for node in ("VideoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer"):
        assert states[node] == ["COMPLETE", "CACHED"], (node, states)
    versions = _pushed_versions(config)

    # 3. An accuracy no model can reach: evaluated again, not blessed, not pushed.
    _run([sys.executable, PIPELINE], {**env, "KVID_ACCURACY_THRESHOLD": "1.01"}, tmp_path)
    states = _executions(config)
    assert states["VideoExampleGen"][-1] == "CACHED"
    assert states["Evaluator"][-1] == "COMPLETE"
    blessings = sorted(glob.glob(str(home / "pipelines" / "kvid" / "Evaluator" / "blessing" /
                                     "*")), key=lambda p: int(os.path.basename(p)))
    assert os.path.exists(os.path.join(blessings[-1], "NOT_BLESSED"))
    assert _pushed_versions(config) == versions


def test_kubeflow_v2_compile_names_every_component(tmp_path):
    """The compile reads and writes nothing but its spec: the videos are a bucket this
    machine cannot reach (no network in CI), their class count is given."""
    out = tmp_path / "kvid_pipeline.json"
    home = tmp_path / "home"
    env = {**os.environ, "KVID_HOME": str(home), "KVID_CROP": "multiscale",
           "KVID_MODEL": "r2plus1d_18", "KVID_PRETRAINED": "torchvision:/ckpt/r2plus1d_18.pth",
           "KVID_BACKBONE_LR_SCALE": "0.1", "KVID_FLOW": "farneback"}
    compile_cmd = [os.path.join(BIN, "kvid"), "pipeline", "compile", "--kubeflow-v2", str(out),
                   "--image", "gcr.io/example/kvid:1"]
    refused = subprocess.run(compile_cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode == 2 and "KVID_DATA_ROOT" in refused.stderr.strip().splitlines()[-1]
    _run(compile_cmd, {**env, "KVID_DATA_ROOT": "gs://kvid-example/videos",
                       "KVID_NUM_CLASSES": "3"}, tmp_path)
    assert not home.exists()  # no synthetic videos, no metadata store
    spec = json.load(open(out))["pipelineSpec"]
    components = set(spec["components"])
    for name in ("VideoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                 "Evaluator", "Pusher"):
        assert any(c == name or c.startswith(name) for c in components), (name, components)
    images = json.dumps(spec["deploymentSpec"])
    assert "gcr.io/example/kvid:1" in images
    root = json.dumps(spec["root"])  # the Trainer's custom_config
    assert '\\"crop\\": \\"multiscale\\"' in root
    assert '\\"pretrained\\": \\"torchvision:/ckpt/r2plus1d_18.pth\\"' in root
    assert '\\"backbone_lr_scale\\": 0.1' in root
    assert "farneback" in json.dumps(spec)  # VideoExampleGen computes flow
    assert '\\"freeze_backbone\\": false' in root
    assert "gs://kvid-example/videos" in json.dumps(spec)
    flat = re.sub(r"(\\n|\s)+", "", json.dumps(spec))  # the Evaluator's config, unindented
    assert '\\"class_ids\\":{\\"values\\":[0,1,2]}' in flat  # KVID_NUM_CLASSES recall
