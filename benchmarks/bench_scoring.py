"""Benchmark: score 1,000,000 responses of a 60-item, 10-subscale instrument.

Reports responses per second and peak memory for xinshu's engine
(:func:`xinshu.scoring.score_matrix`, the path every import takes) and for a
plain numpy kernel doing the same arithmetic (reverse keys, missing-data rule
with prorating, sums, bands), measured in the same run, and the ratio to
the faster of two kernels (per-subscale slices; one matrix product for all
subscales). All three must give identical scores.
Target (issue 3): the engine within 2× of the kernel.

Run: ``.venv/bin/python benchmarks/bench_scoring.py [--n 1000000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np

from xinshu.instruments import build_instrument
from xinshu.scoring import score_matrix
from xinshu.services import load_plugins

N_ITEMS, N_SCALES, PER_SCALE = 60, 10, 6
REVERSE = {j for j in range(N_ITEMS) if j % 5 == 4}  # 12 reverse-scored items
BANDS = [(0, 4), (5, 9), (10, 14), (15, 18)]
BAND_ROWS = list(enumerate(BANDS))


def instrument_data() -> dict:
    options = [{"value": v, "label": {"zh": str(v)}} for v in range(4)]
    items = [{"id": f"q{j}", "reverse": j in REVERSE} for j in range(N_ITEMS)]
    scales = [
        {
            "id": f"s{s}",
            "title": {"zh": f"s{s}"},
            "method": "sum",
            "items": [f"q{j}" for j in range(s * PER_SCALE, (s + 1) * PER_SCALE)],
            "missing": {"min_answered": 5, "prorate": "mean_times_n"},
            "bands": {
                "source": "benchmark",
                "ranges": [
                    {"id": f"b{b}", "min": lo, "max": hi, "label": {"zh": "b"}} for b, (lo, hi) in enumerate(BANDS)
                ],
            },
        }
        for s in range(N_SCALES)
    ]
    return {"kind": "instrument", "id": "bench60", "version": "1", "title": {"zh": "bench"}, "source": "benchmark",
            "licence": {"status": "public_domain", "statement": "synthetic"}, "response_options": options,
            "items": items, "scales": scales}  # fmt: skip


def make_answers(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    answers = rng.integers(0, 4, size=(n, N_ITEMS)).astype(np.float64)
    answers[rng.random((n, N_ITEMS)) < 0.01] = np.nan
    return answers


def numpy_kernel(answers: np.ndarray) -> tuple[dict, dict]:
    """The same arithmetic, written directly."""
    reverse = np.zeros(N_ITEMS, dtype=bool)
    reverse[list(REVERSE)] = True
    keyed = np.where(reverse, 3.0 - answers, answers)
    mins = np.array([lo for lo, _ in BANDS], dtype=float)
    maxs = np.array([hi for _, hi in BANDS], dtype=float)
    raw, band = {}, {}
    for s in range(N_SCALES):
        block = keyed[:, s * PER_SCALE : (s + 1) * PER_SCALE]
        count = (~np.isnan(block)).sum(axis=1)
        total = np.nansum(block, axis=1)
        total = np.where(count < PER_SCALE, np.floor(total / count * PER_SCALE + 0.5), total)
        total = np.where(count >= 5, total, np.nan)
        index = np.searchsorted(mins, np.nan_to_num(total, nan=-1), side="right") - 1
        ok = (index >= 0) & (total <= maxs[np.clip(index, 0, 3)])
        raw[f"s{s}"], band[f"s{s}"] = total, np.where(ok, index, -1)
    return raw, band


def matmul_kernel(answers: np.ndarray) -> np.ndarray:
    """Sums and counts of all subscales at once with one matrix product each (BLAS)."""
    reverse = np.zeros(N_ITEMS, dtype=bool)
    reverse[list(REVERSE)] = True
    weights = np.zeros((N_ITEMS, N_SCALES))
    for s in range(N_SCALES):
        weights[s * PER_SCALE : (s + 1) * PER_SCALE, s] = 1
    keyed = np.where(reverse, 3.0 - answers, answers)
    missing = np.isnan(keyed)
    totals = np.where(missing, 0.0, keyed) @ weights
    counts = (~missing).astype(np.float64) @ weights
    totals = np.where(counts < PER_SCALE, np.floor(totals / counts * PER_SCALE + 0.5), totals)
    return np.where(counts >= 5, totals, np.nan)


def timed(fn, repeat: int) -> tuple[float, int, object]:
    best, peak, result = float("inf"), 0, None
    for _ in range(repeat):
        tracemalloc.start()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return best, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    instrument = build_instrument(instrument_data(), digest="bench", file="bench60.yaml")
    _pm, scorer_classes, _channels = load_plugins({})
    scorers = {name: cls() for name, cls in scorer_classes.items()}
    answers = make_answers(args.n)
    kernel_s, kernel_peak, (k_raw, k_band) = timed(lambda: numpy_kernel(answers), args.repeat)
    matmul_s, _matmul_peak, m_raw = timed(lambda: matmul_kernel(answers), args.repeat)
    engine_s, engine_peak, table = timed(lambda: score_matrix(instrument, answers, scorers), args.repeat)
    for s in range(N_SCALES):  # same numbers, or the comparison means nothing
        assert np.array_equal(table.raw[f"s{s}"], k_raw[f"s{s}"], equal_nan=True)
        assert np.array_equal(table.band[f"s{s}"], k_band[f"s{s}"])
        assert np.array_equal(table.raw[f"s{s}"], m_raw[:, s], equal_nan=True)
    best_kernel_s = min(kernel_s, matmul_s)
    report = {
        "responses": args.n,
        "items": N_ITEMS,
        "subscales": N_SCALES,
        "engine_responses_per_s": round(args.n / engine_s),
        "kernel_responses_per_s": round(args.n / kernel_s),
        "matmul_kernel_responses_per_s": round(args.n / matmul_s),
        "ratio_engine_to_fastest_kernel_time": round(engine_s / best_kernel_s, 2),
        "engine_peak_mib": round(engine_peak / 2**20, 1),
        "kernel_peak_mib": round(kernel_peak / 2**20, 1),
        "input_mib": round(answers.nbytes / 2**20, 1),
        "target": "ratio <= 2",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
