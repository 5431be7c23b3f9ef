"""kvid's PNG figures: written headless, at the expected size, without touching matplotlib's
process-wide backend (a notebook importing kvid keeps its inline figures).

The figures are drawn in a fresh interpreter whose backend is the one Jupyter's IPython kernel
selects (``module://matplotlib_inline.backend_inline``), so the check sees what a notebook sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from PIL import Image

NOTEBOOK_BACKEND = "module://matplotlib_inline.backend_inline"

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import matplotlib

    out = sys.argv[1]
    state = {"before": matplotlib.get_backend()}

    import kvid.train.plots as plots
    import kvid.serving.client as client
    state["after_import_plots"] = matplotlib.get_backend()

    log = os.path.join(out, "log.csv")
    with open(log, "w") as f:
        f.write("epoch,accuracy,loss,val_accuracy,val_loss\\n")
        f.write("0,0.4,1.1,0.3,1.2\\n1,0.6,0.9,0.5,1.0\\n2,0.8,0.5,0.6,0.8\\n")
    files = {
        "curves": plots.plot_training_curves(log, os.path.join(out, "curves.png")),
        "confusion3": plots.plot_confusion_matrix(
            np.array([[3, 1, 0], [0, 2, 2], [1, 0, 4]]), ["a", "b", "c"],
            os.path.join(out, "confusion3.png")),
        "confusion5": plots.plot_confusion_matrix(
            np.eye(5, dtype=int) * 2, list("vwxyz"), os.path.join(out, "confusion5.png")),
        "attention": plots.plot_attention_maps(
            np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8),
            np.random.default_rng(1).uniform(size=(3, 4, 4)),
            os.path.join(out, "attention.png")),
    }
    rows = [{"start": 0.0, "end": 1.0, "top": [("wave", 0.9), ("run", 0.1)]},
            {"start": 1.0, "end": 2.0, "top": [("run", 0.6), ("wave", 0.4)]}]
    thumbs = [np.full((24, 32, 3), v, np.uint8) for v in (40, 200)]
    files["strip"] = os.path.join(out, "strip.png")
    client._write_strip(files["strip"], rows, thumbs)
    state["after_calls"] = matplotlib.get_backend()
    state["pyplot_imported"] = "matplotlib.pyplot" in sys.modules
    state["files"] = files

    # The modules that draw with kvid.train.plots (TensorFlow, imported by these, imports pyplot
    # itself, so only the backend is compared from here on).
    import kvid.train.evaluate, kvid.train.trainer
    state["after_import_all"] = matplotlib.get_backend()
    print("STATE=" + json.dumps(state))
""")

# figsize (inches) x dpi 100, as the functions set them.
EXPECTED_SIZES = {
    "curves": (1000, 400),       # (10, 4)
    "confusion3": (400, 400),    # max(4, 0.6 * 3 + 2) = 4
    "confusion5": (500, 500),    # 0.6 * 5 + 2 = 5
    "attention": (540, 220),     # (1.8 * 3 frames, 2.2)
    "strip": (600, 260),         # (max(6, 1.2 * 2 windows), 2.6)
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    pytest.importorskip("matplotlib_inline")
    out = tmp_path_factory.mktemp("plots")
    env = dict(os.environ, MPLBACKEND=NOTEBOOK_BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("DISPLAY", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("STATE=")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(line[0][len("STATE="):])


def test_importing_and_drawing_leave_the_backend_alone(drawn):
    assert drawn["before"] == NOTEBOOK_BACKEND
    assert drawn["after_import_plots"] == NOTEBOOK_BACKEND
    assert drawn["after_import_all"] == NOTEBOOK_BACKEND
    assert drawn["after_calls"] == NOTEBOOK_BACKEND
    assert drawn["pyplot_imported"] is False  # drawn on Figure objects, not through pyplot


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_pngs_are_written_at_their_size(drawn, name):
    path = drawn["files"][name]
    assert os.path.getsize(path) > 1000, path
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()  # decodes every chunk: a truncated or corrupt file raises here
        assert img.size == EXPECTED_SIZES[name], (name, img.size)


def test_curves_of_a_run_without_validation_data(tmp_path):
    """Keras' CSVLogger writes val_* columns of "NA" when fit has no validation data (a
    split without val, or TFX's layout read as kvid's): the curves are still drawn."""
    from kvid.train.plots import plot_training_curves

    log = tmp_path / "train_log.csv"
    log.write_text("epoch,accuracy,loss,top5,val_accuracy,val_loss,val_top5\n"
                   "0,0.3,1.1,1.0,NA,NA,NA\n1,0.4,1.0,1.0,NA,NA,NA\n")
    path = plot_training_curves(str(log), str(tmp_path / "curves.png"))
    with Image.open(path) as img:
        img.load()
        assert img.size == EXPECTED_SIZES["curves"]
