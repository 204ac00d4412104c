"""The benchmarks stay runnable: each runs once on a tiny input (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_scoring_benchmark_runs_and_agrees_with_its_kernels():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_scoring.py"), "--n", "3000", "--repeat", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["responses"] == 3000 and report["subscales"] == 10
