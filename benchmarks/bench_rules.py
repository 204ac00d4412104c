"""Benchmark: evaluate the active alert rules for 1,000,000 synthetic students.

Builds one :class:`xinshu.facts.Facts` table with numpy (PHQ-9 answers →
totals, band ids as object arrays, band positions, critical flags, previous
totals for change; GAD-7 totals and bands; ASQ answers for some students; a
few teacher and parent reports; valid-protocol flags), then evaluates the
project's active rulesets (``rules/alerts/*.yaml``) with
:class:`xinshu.rules.Engine` and with a hand-written numpy evaluation of the
same conditions (one boolean mask per rule, the highest level wins), measured
in the same run. Both must give identical per-rule masks and level arrays.

Reports students per second for both, the time ratio, and peak memory.
Target: the engine within 3× of the hand-written evaluation.

Run: ``python benchmarks/bench_rules.py [--n 1000000] [--repeat 3] [--seed 11]``
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from xinshu.facts import Facts
from xinshu.rules import Engine
from xinshu.services import build_services

PHQ9_BANDS = [
    ("minimal", 0, 4),
    ("mild", 5, 9),
    ("moderate", 10, 14),
    ("moderately_severe", 15, 19),
    ("severe", 20, 27),
]
GAD7_BANDS = [("minimal", 0, 4), ("mild", 5, 9), ("moderate", 10, 14), ("severe", 15, 21)]
CATEGORIES = ("self_harm_talk", "behaviour_change", "bullying", "family_crisis", "loss", "withdrawal",
              "sleep_appetite", "other")  # fmt: skip

#: The rules the hand-written evaluation covers (rules/alerts/*.yaml as of this benchmark).
BASELINE_RULES = {
    "phq9.item9_frequent_and_severe": 4,
    "phq9.item9": 3,
    "phq9.item9_unanswered": 1,
    "phq9.severe": 3,
    "phq9.moderately_severe": 2,
    "phq9.adolescent_cutoff": 1,
    "phq9.worsened": 2,
    "gad7.severe": 2,
    "gad7.cutoff": 1,
    "asq.acute_positive": 4,
    "asq.positive": 3,
    "asq.unanswered": 1,
    "reports.self_harm_talk": 3,
    "reports.two_concerns": 2,
    "reports.any_concern": 1,
}


# --- synthetic students -----------------------------------------------------------------------------------------------


def _bands(totals: np.ndarray, bands: list[tuple[str, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Band ids (object array, None when the total is unknown) and band positions (float, NaN)."""
    lows = np.array([low for _, low, _ in bands], dtype=float)
    known = ~np.isnan(totals)
    index = np.searchsorted(lows, np.where(known, totals, 0.0), side="right") - 1
    names = np.array([name for name, _, _ in bands] + [None], dtype=object)
    ids = names[np.where(known, index, len(bands))]
    return ids, np.where(known, index, np.nan).astype(float)


def make_facts(n: int, seed: int = 11) -> Facts:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}

    # PHQ-9: everyone answered; 0.5% of the answers are missing (then no total: all 9 required)
    phq = rng.choice(4, size=(n, 9), p=[0.6, 0.25, 0.1, 0.05]).astype(float)
    phq[:, 8] = rng.choice(4, size=n, p=[0.95, 0.03, 0.015, 0.005])  # item 9 (thoughts of death) is rarer
    phq[rng.random((n, 9)) < 0.005] = np.nan
    total = phq.sum(axis=1)
    band, bandindex = _bands(total, PHQ9_BANDS)
    cols["phq9:taken"] = np.ones(n, dtype=bool)
    cols["phq9:valid"] = rng.random(n) >= 0.02  # 2% invalid protocols (re-test)
    cols["phq9:scale:total"] = total
    cols["phq9:band:total"] = band
    cols["phq9:bandindex:total"] = bandindex
    for i in range(9):
        cols[f"phq9:item:phq9_{i + 1}"] = phq[:, i]
    cols["phq9:flag:critical:phq9_9"] = phq[:, 8] >= 1
    cols["phq9:flag:critical_missing:phq9_9"] = np.isnan(phq[:, 8])
    # the previous wave: 60% have one, within ±8 points of today's total
    has_prev = rng.random(n) < 0.6
    prev = np.clip(np.nan_to_num(total, nan=10.0) + rng.integers(-8, 9, size=n), 0, 27).astype(float)
    prev[~has_prev] = np.nan
    cols["phq9:prev:scale:total"] = prev
    cols["phq9:prev:bandindex:total"] = _bands(prev, PHQ9_BANDS)[1]

    # GAD-7: 70% answered
    has_gad = rng.random(n) < 0.7
    gad = rng.choice(4, size=(n, 7), p=[0.6, 0.25, 0.1, 0.05]).sum(axis=1).astype(float)
    gad[~has_gad] = np.nan
    gad_band, gad_index = _bands(gad, GAD7_BANDS)
    cols["gad7:taken"] = has_gad
    cols["gad7:valid"] = has_gad
    cols["gad7:scale:total"] = gad
    cols["gad7:band:total"] = gad_band
    cols["gad7:bandindex:total"] = gad_index

    # ASQ: 10% answered; Q1-4 "yes" 4% each, 1% skipped; Q5 asked after any "yes", then "yes" 30%
    has_asq = rng.random(n) < 0.1
    asq = (rng.random((n, 4)) < 0.04).astype(float)
    asq[rng.random((n, 4)) < 0.01] = np.nan
    asq[~has_asq] = np.nan
    any_yes = (asq == 1).any(axis=1)
    q5 = np.where(any_yes, (rng.random(n) < 0.3).astype(float), np.nan)
    cols["asq:taken"] = has_asq
    cols["asq:valid"] = has_asq
    for i in range(4):
        cols[f"asq:item:asq_{i + 1}"] = asq[:, i]
        cols[f"asq:flag:critical:asq_{i + 1}"] = asq[:, i] == 1
        cols[f"asq:flag:critical_missing:asq_{i + 1}"] = has_asq & np.isnan(asq[:, i])
    cols["asq:item:asq_5"] = q5
    cols["asq:flag:critical:asq_5"] = q5 == 1

    # reports: each teacher category 0.5%, each parent category 0.3%
    for category in CATEGORIES:
        cols[f"teacher:{category}"] = rng.random(n) < 0.005
        cols[f"parent:{category}"] = rng.random(n) < 0.003
    return Facts(n, cols)


# --- the same conditions, by hand -------------------------------------------------------------------------------------


def hand_written(c: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """rules/alerts/*.yaml written out as numpy masks; the level is the highest matching level."""
    phq_ok, gad_ok = c["phq9:valid"], c["gad7:valid"]
    band, total, item9 = c["phq9:band:total"], c["phq9:scale:total"], c["phq9:item:phq9_9"]
    severe = band == "severe"
    teacher = {k: c[f"teacher:{k}"] for k in CATEGORIES}
    parent = {k: c[f"parent:{k}"] for k in CATEGORIES}
    asq_yes = c["asq:flag:critical:asq_1"] | c["asq:flag:critical:asq_2"]
    asq_yes |= c["asq:flag:critical:asq_3"] | c["asq:flag:critical:asq_4"]
    asq_missing = c["asq:flag:critical_missing:asq_1"] | c["asq:flag:critical_missing:asq_2"]
    asq_missing |= c["asq:flag:critical_missing:asq_3"] | c["asq:flag:critical_missing:asq_4"]
    groups = (
        (teacher["behaviour_change"] | teacher["withdrawal"]).view(np.uint8)
        + teacher["bullying"].view(np.uint8)
        + (teacher["family_crisis"] | teacher["loss"]).view(np.uint8)
        + (
            parent["behaviour_change"] | parent["withdrawal"] | parent["sleep_appetite"]
            | parent["family_crisis"] | parent["loss"] | parent["bullying"]
        ).view(np.uint8)
    )  # fmt: skip
    any_teacher = teacher["behaviour_change"] | teacher["bullying"] | teacher["family_crisis"] | teacher["loss"]
    any_teacher |= teacher["withdrawal"] | teacher["other"]
    any_parent = parent["behaviour_change"] | parent["bullying"] | parent["family_crisis"] | parent["loss"]
    any_parent |= parent["withdrawal"] | parent["sleep_appetite"] | parent["other"]
    worsened = total - c["phq9:prev:scale:total"] >= 5
    worsened |= c["phq9:bandindex:total"] - c["phq9:prev:bandindex:total"] >= 2
    masks = {
        "phq9.item9_frequent_and_severe": (item9 >= 2) & severe & phq_ok,
        "phq9.item9": c["phq9:flag:critical:phq9_9"],
        "phq9.item9_unanswered": c["phq9:flag:critical_missing:phq9_9"],
        "phq9.severe": severe & phq_ok,
        "phq9.moderately_severe": (band == "moderately_severe") & phq_ok,
        "phq9.adolescent_cutoff": (total >= 11) & phq_ok,
        "phq9.worsened": worsened & phq_ok,
        "gad7.severe": (c["gad7:band:total"] == "severe") & gad_ok,
        "gad7.cutoff": (c["gad7:scale:total"] >= 10) & gad_ok,
        "asq.acute_positive": c["asq:flag:critical:asq_5"],
        "asq.positive": asq_yes,
        "asq.unanswered": asq_missing,
        "reports.self_harm_talk": teacher["self_harm_talk"] | parent["self_harm_talk"],
        "reports.two_concerns": groups >= 2,
        "reports.any_concern": any_teacher | any_parent,
    }
    level = np.zeros(len(total), dtype=np.int64)
    for lv in (1, 2, 3, 4):  # ascending, so the highest matching level is written last
        hit = np.logical_or.reduce([m for rid, m in masks.items() if BASELINE_RULES[rid] == lv])
        level[hit] = lv
    return level, masks


# --- measurement ------------------------------------------------------------------------------------------------------


def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    decls = build_services({}, with_db=False).declarations
    for instrument, bands in (("phq9", PHQ9_BANDS), ("gad7", GAD7_BANDS)):
        declared = [(b.id, b.min, b.max) for b in decls.instruments[instrument].scale("total").bands]
        assert declared == bands, f"{instrument} bands changed: {declared}"
    rulesets = list(decls.rulesets.values())
    declared_rules = {rule.id: rule.level for rs in rulesets for rule in rs.rules}
    assert declared_rules == BASELINE_RULES, "the active rules changed: update hand_written() and BASELINE_RULES"

    build_start = time.perf_counter()
    facts = make_facts(args.n, args.seed)
    build_s = time.perf_counter() - build_start
    compile_start = time.perf_counter()
    engine = Engine(rulesets)
    compile_s = time.perf_counter() - compile_start

    hand_s, (hand_level, hand_masks) = best_time(lambda: hand_written(facts.columns), args.repeat)
    engine_s, evaluation = best_time(lambda: engine.evaluate(facts), args.repeat)

    # the same answer, or the comparison means nothing
    for j, compiled in enumerate(evaluation.compiled):
        assert np.array_equal(evaluation.fired[:, j], hand_masks[compiled.rule.id]), compiled.rule.id
    assert np.array_equal(evaluation.level, hand_level)
    counts = np.bincount(hand_level, minlength=5)

    report = {
        "students": args.n,
        "rules": len(evaluation.compiled),
        "rulesets": [rs.id for rs in rulesets],
        "fact_columns": len(facts.columns),
        "levels": {str(lv): int(counts[lv]) for lv in range(5)},
        "identical_levels": True,
        "engine_students_per_s": round(args.n / engine_s),
        "hand_written_students_per_s": round(args.n / hand_s),
        "engine_s": round(engine_s, 4),
        "hand_written_s": round(hand_s, 4),
        "ratio_engine_to_hand_written_time": round(engine_s / hand_s, 2),
        "engine_peak_mib": peak_mib(lambda: engine.evaluate(facts)),
        "hand_written_peak_mib": peak_mib(lambda: hand_written(facts.columns)),
        "facts_mib": round(sum(col.nbytes for col in facts.columns.values()) / 2**20, 1),
        "build_facts_s": round(build_s, 2),
        "compile_s": round(compile_s, 4),
        "repeat": args.repeat,
        "target": "ratio <= 3",
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
