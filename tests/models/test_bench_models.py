"""benchmarks/bench_models.py: one JSON line per model, with params and FLOPs."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"


@pytest.fixture(scope="module")
def bench_models():
    spec = importlib.util.spec_from_file_location("bench_models", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fast_run_prints_json_lines(bench_models, capsys):
    assert bench_models.main(["--fast", "--models", "c3d,two_stream", "--repeats", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in lines] == ["c3d", "two_stream"]
    for record in lines:
        assert record["params"] > 0 and record["gflops"] > 0 and record["cpu_ms_per_clip"] > 0


def test_counts_flops_with_kvid_models(bench_models):
    # One FLOP counter: the benchmark uses the package's (tested in test_flops.py).
    from kvid.models import count_gflops

    assert bench_models.count_gflops is count_gflops


def test_unknown_model_is_an_error(bench_models):
    with pytest.raises(SystemExit):
        bench_models.main(["--models", "nope"])
