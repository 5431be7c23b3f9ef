"""benchmarks/bench_window_decode.py runs and prints one JSON line with every case."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_window_decode.py"


def test_prints_one_json_line_per_run_with_every_case():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "48x64,32x32", "--areas", "0.3,0.9",
         "--frames", "2", "--rounds", "1", "--calls", "1"],
        capture_output=True, text=True, check=True, timeout=300).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["bench"] == "window_decode" and result["frames"] == 2
    cases = result["cases"]
    assert [(c["frame"], c["window"]) for c in cases] == [
        ("48x64", "26x35"), ("48x64", "46x61"), ("32x32", "18x18"), ("32x32", "30x30")]
    for c in cases:
        assert abs(c["area"] - (0.3 if c["window"] in ("26x35", "18x18") else 0.9)) < 0.03
        assert c["alone_ms"] > 0 and c["whole_ms"] > 0 and c["kvid_ms"] > 0
