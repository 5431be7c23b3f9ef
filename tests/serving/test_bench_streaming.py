"""benchmarks/bench_streaming.py runs and prints one JSON line: kvid's step model against
Model Garden's in the same run, and the session API's latency with concurrent streams."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_streaming.py"


@pytest.mark.slow
def test_prints_one_json_line_with_per_frame_times_and_ratios():
    pytest.importorskip("official.projects.movinet.modeling.movinet")
    out = subprocess.run(
        [sys.executable, str(BENCH), "--size", "32", "--frames", "3", "--warmup", "1",
         "--tflite", "none", "--streams", "2", "--session-frames", "3"],
        capture_output=True, text=True, check=True, timeout=900).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1
    r = json.loads(lines[0])
    assert r["bench"] == "streaming" and r["size"] == 32 and r["threads"] == 1
    assert r["keras_ms"] > 0 and r["reference_ms"] > 0
    assert r["keras_vs_reference"] == pytest.approx(r["keras_ms"] / r["reference_ms"],
                                                    rel=0.01)
    assert r["streams"] == 2 and 0 < r["session_p50_ms"] <= r["session_p99_ms"]
    assert r["session_frames_per_s"] > 0
    assert not any(k.startswith("tflite_") for k in r)  # --tflite none
