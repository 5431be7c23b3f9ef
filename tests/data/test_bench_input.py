"""benchmarks/bench_input.py runs and prints one JSON line with a ratio per pipeline."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_input.py"


def test_prints_one_json_line_with_rates_and_ratios_to_raw():
    pipelines = ["raw", "train", "train_tf_ops", "eval"]
    out = subprocess.run(
        [sys.executable, str(BENCH), "--videos", "4", "--rounds", "1", "--seconds", "0.3",
         "--batch-size", "4", "--clip-frames", "4", "--size", "32",
         "--pipelines", ",".join(pipelines)],
        capture_output=True, text=True, check=True, timeout=600).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["bench"] == "input" and result["clip"] == "4x32x32"
    assert isinstance(result["native_crop"], bool)
    for name in pipelines:
        assert result[f"{name}_clips_per_s"] > 0 and result[f"{name}_clips_per_cpu_s"] > 0
    for name in pipelines[1:]:
        assert 0 < result[f"{name}_vs_raw"] < 10 and 0 < result[f"{name}_vs_raw_cpu"] < 10
    assert "video_clips_per_s" not in result  # only the pipelines asked for
