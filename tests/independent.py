"""Expected values computed independently of xinshu's code.

Plain Python over the raw CSV, written from the published facts (PHQ-9 sum of
items 1–9, bands 0–4/5–9/10–14/15–19/20–27, Kroenke et al. 2001; NHANES codes
7 and 9 are not answers; the missing-data rule declared in phq9.yaml: all 9
items required) and the bureau's alert rules as written in
rules/alerts/phq9.yaml, re-implemented here by hand. Nothing here imports
xinshu.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

ITEMS = [f"DPQ0{i}0" for i in range(1, 10)]
NOT_ANSWERS = {"", "7", "9"}


def _code(cell: str) -> str:
    cell = cell.strip()
    return str(int(float(cell))) if cell else ""


def phq9_rows(path: Path) -> list[dict[str, str]]:
    """Rows with at least one item cell filled (all-blank = not asked)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if any(r[c].strip() for c in ITEMS)]


def phq9_total(row: dict[str, str]) -> int | None:
    codes = [_code(row[c]) for c in ITEMS]
    if any(code in NOT_ANSWERS for code in codes):
        return None
    return sum(int(code) for code in codes)


def phq9_band(total: int | None) -> str:
    if total is None:
        return "incomplete"
    for upper, band in ((4, "minimal"), (9, "mild"), (14, "moderate"), (19, "moderately_severe")):
        if total <= upper:
            return band
    return "severe"


def item9(row: dict[str, str]) -> int | None:
    code = _code(row["DPQ090"])
    return None if code in NOT_ANSWERS else int(code)


def phq9_level(row: dict[str, str]) -> int | None:
    """The bureau's PHQ-9 rules, by hand: highest matching level."""
    total, q9 = phq9_total(row), item9(row)
    band = phq9_band(total)
    levels = []
    if q9 is not None and q9 >= 2 and band == "severe":
        levels.append(4)
    if q9 is not None and q9 >= 1:
        levels.append(3)
    if band == "severe":
        levels.append(3)
    if band == "moderately_severe":
        levels.append(2)
    if total is not None and total >= 11:
        levels.append(1)
    if q9 is None:  # skipped, refused (7) or "don't know" (9): ask in person
        levels.append(1)
    return max(levels) if levels else None


def expected_phq9(path: Path) -> dict:
    """Counts the product must reproduce from DPQ_J.csv."""
    rows = phq9_rows(path)
    with path.open(newline="") as handle:
        all_rows = sum(1 for _ in csv.DictReader(handle))
    levels = Counter(phq9_level(r) for r in rows)
    return {
        "rows": all_rows,
        "answered": len(rows),
        "bands": Counter(phq9_band(phq9_total(r)) for r in rows),
        "item9_above_0": sum(1 for r in rows if (item9(r) or 0) > 0),
        "levels": {level: levels.get(level, 0) for level in (1, 2, 3, 4)},
        "cases": sum(levels.get(level, 0) for level in (2, 3, 4)),
        "item9_respondents": {str(int(float(r["SEQN"]))) for r in rows if (item9(r) or 0) > 0},
    }
