"""The GPU benchmark script runs (on the CPU, with conf/base's model): it is run rarely,
on borrowed machines, so it must not be found broken there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_gpu_pretrain_prints_its_figures():
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu_pretrain.py", "--tiny", "--batch", "4",
         "--steps", "2", "--warmup", "1", "--workers", "0", "--no-compile", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["model"] == "conf/base" and result["batch"] == 4 and result["steps"] == 2
    assert result["pairs_per_s"] > 0 and result["pairs_per_s_in_memory"] > 0
    assert 0 <= result["data_wait_share"] < 1
    # conf/base's model with both teachers and a queue of 4,096: about 2 GFLOP per pair.
    assert 0.5 < result["gflop_per_pair"] < 10
    assert result["mfu"] == pytest.approx(
        result["pairs_per_s"] * result["gflop_per_pair"] * 1e9 / result["peak_flops"], rel=0.05)
