"""kvid's TFX pipeline: videos -> VideoExampleGen -> Statistics/Schema/Validator -> Trainer
-> Evaluator -> Pusher. Runs with the TFX CLI or directly:

    python pipeline/kvid.py
    tfx pipeline create --pipeline_path=pipeline/kvid.py --engine=local
    tfx run create --pipeline_name=kvid --engine=local

Settings come from $KVID_PIPELINE_CONFIG (a JSON file) and KVID_* variables, e.g.
``KVID_DATA_ROOT=/data/videos KVID_EPOCHS=20 KVID_ACCURACY_THRESHOLD=0.6``; see
kvid/tfx/config.py. With no data root the synthetic motion dataset is written and used.
"""

import os
import sys

# This file is named like the package: drop its folder from the path so that "import kvid"
# finds the package, whether run as a script or by the TFX CLI.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if getattr(sys.modules.get("kvid"), "__file__", None) == os.path.abspath(__file__):
    del sys.modules["kvid"]

import kvid  # noqa: E402,F401  (first: it sets TensorFlow's CPU options before TF loads)
from tfx import v1 as tfx  # noqa: E402

from kvid.tfx.config import PipelineConfig, ensure_videos  # noqa: E402
from kvid.tfx.pipeline import create_pipeline  # noqa: E402

CONFIG = PipelineConfig.load()

if __name__ == "__main__":
    ensure_videos(CONFIG)
    os.makedirs(os.path.dirname(os.path.abspath(CONFIG.metadata_path)), exist_ok=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(CONFIG))
