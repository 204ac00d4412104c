"""The rules benchmark stays runnable: once on a small table (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_rules.py"


def test_rules_benchmark_runs_and_agrees_with_the_hand_written_masks():
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "20000", "--repeat", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["students"] == 20000 and report["identical_levels"] is True
    assert report["rules"] == 15 and report["rulesets"] == ["asq", "gad7", "phq9", "reports"]
    assert sum(report["levels"].values()) == 20000
    assert all(report["levels"][str(level)] > 0 for level in range(5))
    assert report["engine_students_per_s"] > 0 and report["hand_written_students_per_s"] > 0
