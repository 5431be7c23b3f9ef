"""The notebooks in notebooks/: each runs top to bottom at its small setting, leaves real
results behind, and is stored without outputs.

Each notebook is executed with nbclient on the ``python3`` kernel, which jupyter_client starts
with this interpreter (the kernel spec's ``python`` means ``sys.executable``), in a temporary
working directory, with ``KVID_NOTEBOOK_SMALL=1`` and ``KVID_NOTEBOOK_DIR`` set.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["01_quickstart.ipynb", "02_model_zoo.ipynb", "03_pipeline_and_serving.ipynb"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Appended to the executed copy only: which interpreter ran the notebook.
WHICH_PYTHON = "import sys; print('KERNEL_PYTHON=' + sys.executable)"


def _outputs(nb, output_type=None):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if output_type is None or out["output_type"] == output_type:
                yield out


def execute(name: str, tmp_path: Path, monkeypatch, timeout: int = 900):
    """Runs the notebook at its small setting; returns (executed notebook, work dir)."""
    work = tmp_path / "work"
    monkeypatch.setenv("KVID_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("KVID_NOTEBOOK_DIR", str(work))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHICH_PYTHON))
    client = NotebookClient(nb, kernel_name="python3", timeout=timeout,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any error
    assert not list(_outputs(nb, "error"))
    printed = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    kernel_python = [line.split("=", 1)[1] for line in printed.splitlines()
                     if line.startswith("KERNEL_PYTHON=")]
    assert kernel_python and os.path.samefile(kernel_python[0], sys.executable), kernel_python
    return nb, work


def inline_pngs(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def assert_png(path):
    assert os.path.isfile(path), path
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, path
    assert os.path.getsize(path) > 1000, path


def assert_clip_report(report: dict, labels: list[str]):
    n = len(labels)
    assert 0.0 <= report["top1"] <= 1.0
    assert report["top1"] <= report[f"top{min(5, n)}"] <= 1.0
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (n, n) and cm.sum() == report["count"] > 0
    assert np.isclose(report["top1"], np.trace(cm) / cm.sum())
    assert sorted(report["per_class_accuracy"]) == sorted(labels)
    assert report["chance"] == pytest.approx(1 / n)


def test_every_notebook_is_stored_stripped():
    # "-executed" copies are local run results (notebooks/.gitignore), not stored notebooks.
    paths = sorted(p for p in NOTEBOOKS.glob("*.ipynb") if not p.stem.endswith("-executed"))
    assert [p.name for p in paths if p.name in EXPECTED] == EXPECTED
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and any(c.cell_type == "markdown" for c in nb.cells), path.name
        for cell in code:
            assert cell.outputs == [], f"{path.name}: a cell has outputs: {cell.source[:60]!r}"
            assert cell.execution_count is None, f"{path.name}: {cell.source[:60]!r}"
            assert "execution" not in cell.metadata, path.name
        # The parameters cell comes first and reads the small switch and the work folder.
        assert "KVID_NOTEBOOK_SMALL" in code[0].source, path.name
        assert "KVID_NOTEBOOK_DIR" in code[0].source, path.name


@pytest.mark.slow
def test_01_quickstart(tmp_path, monkeypatch):
    nb, work = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    summary = json.loads((work / "summary.json").read_text())
    labels = summary["labels"]
    assert summary["small"] is True
    assert labels == ["move_left", "move_right", "move_up"] and summary["num_classes"] == 3
    assert min(summary["clips"].values()) > 0

    assert sorted(summary["models"]) == ["c3d", "cnn_lstm", "lrcn_soft_attention"]
    for name, result in summary["models"].items():
        report = json.loads(Path(result["report"]).read_text())
        assert report["model"] == name and report["split"] == "test"
        assert_clip_report(report["clip"], labels)
        assert report["clip"]["count"] == summary["clips"]["test"]
        assert result["test_top1"] == report["clip"]["top1"]
        assert_png(result["confusion_png"])
        assert_png(result["curves_png"])
        assert result["params"] > 0
    assert len(summary["attention_pngs"]) == 2
    for path in summary["attention_pngs"]:
        assert_png(path)

    trainer = summary["trainer"]
    report = json.loads(Path(trainer["report"]).read_text())
    assert_clip_report(report["clip"], labels)
    assert_clip_report(report["video"], labels)
    assert trainer["test_clip_top1"] == report["clip"]["top1"]
    assert_png(trainer["curves_png"])
    assert_png(trainer["confusion_png"])
    config = json.loads((Path(trainer["run_dir"]) / "config.json").read_text())
    assert config["model"] == "c3d" and config["preset"] == "tiny" and config["flip"] is False
    assert (Path(trainer["run_dir"]) / "best.keras").is_file()

    # Figures shown inline: the batch strip, curves + confusion matrix per model, attention
    # maps, and the trainer's two.
    assert inline_pngs(nb) >= 1 + 2 * 3 + 2 + 2


@pytest.mark.slow
def test_02_model_zoo(tmp_path, monkeypatch):
    from kvid.models import list_models

    nb, work = execute("02_model_zoo.ipynb", tmp_path, monkeypatch)
    summary = json.loads((work / "summary.json").read_text())
    assert summary["zoo_inputs"] == "tiny" and summary["num_models"] == len(list_models())

    import csv

    with open(summary["zoo_csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == list_models()
    for row in rows:
        assert float(row["params (M)"]) > 0, row
        assert float(row["GFLOPs"]) > 0, row
        assert row["modality"] in ("rgb", "flow", "rgb+flow")

    comparison = summary["comparison"]
    assert sorted(comparison) == ["early_fusion", "single_frame"]
    assert comparison["early_fusion"]["temporal"] and not comparison["single_frame"]["temporal"]
    for result in comparison.values():
        # At the small setting neither model learns much, so only the ranges are checked; the
        # temporal-beats-single-frame claim is tested at the demo's size in tests/test_demo.py.
        assert 0.0 <= result["test_clip_top1"] <= 1.0
        assert 0.0 <= result["test_video_top1"] <= 1.0
        assert len(result["val_accuracy"]) == 2  # the small setting's epochs, same for both
        assert_clip_report(json.loads(Path(result["report"]).read_text())["clip"],
                           summary["labels"])
    assert_png(summary["zoo_png"])
    assert_png(summary["comparison_png"])
    assert inline_pngs(nb) >= 2


@pytest.mark.slow
def test_03_pipeline_and_serving(tmp_path, monkeypatch):
    import tensorflow as tf

    from kvid import schema
    from kvid.data import resolve_files

    nb, work = execute("03_pipeline_and_serving.ipynb", tmp_path, monkeypatch)
    summary = json.loads((work / "summary.json").read_text())
    labels = summary["labels"]
    assert labels == ["move_left", "move_right", "move_up"]
    for node in ("VideoExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer",
                 "Evaluator", "Pusher"):
        assert summary["executions"].get(node) == ["COMPLETE"], (node, summary["executions"])
    assert summary["blessed"] is True and summary["validation_ok"] is True
    assert 0.0 <= summary["eval_accuracy"] <= 1.0

    versions = summary["pushed_versions"]
    assert len(versions) == 1
    saved_model = os.path.join(summary["model_base_path"], versions[0])
    assert os.path.isfile(os.path.join(saved_model, "saved_model.pb"))

    # REST (urllib) and kvid.serving.Client answered the same, with one row per clip sent.
    rest = summary["rest_predictions"]
    assert summary["rest_equals_client"] is True
    assert len(rest) == len(summary["requests"]) == 2
    np.testing.assert_array_equal(np.array([p["probabilities"] for p in rest], np.float32),
                                  np.array(summary["client_probabilities"], np.float32))
    for p in rest:
        assert np.isclose(sum(p["probabilities"]), 1.0, atol=1e-5)
        assert p["labels"][0] in labels

    # ... and the same as the pushed SavedModel called in this process on those clips.
    examples = [d for d in Path(summary["pipeline_root"], "VideoExampleGen", "examples").iterdir()]
    files, compression = resolve_files(str(examples[0]), "eval")
    stored = {(c.video_id, c.clip_index): c for c in (
        schema.from_example(r.numpy())
        for r in tf.data.TFRecordDataset(files, compression_type=compression))}
    clips = [stored[(r["video"], r["clip_index"])] for r in summary["requests"]]
    assert [c.label_name for c in clips] == [r["true"] for r in summary["requests"]]
    assert len({c.label_name for c in clips}) == len(clips)  # one clip per class
    served = tf.saved_model.load(saved_model).signatures["serving_default"]
    direct = served(frames=tf.constant([list(c.frames) for c in clips]))["probabilities"]
    np.testing.assert_allclose(np.array([p["probabilities"] for p in rest]), direct.numpy(),
                               atol=1e-5)
    assert summary["server_stopped"] is True
    assert inline_pngs(nb) >= 1
