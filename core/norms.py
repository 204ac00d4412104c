"""Norm-referenced scores: linear T, percentile rank, normalised T, lookup.

A norm set (``norms/*.yaml``, kind ``norm_set``) holds, for one instrument
scale, one group per norm group (grade × gender, optionally region) with
``n``, ``mean``, ``sd`` and the raw-score ``distribution``. Definitions
(instruments.md §3.1):

* linear T: ``T = 50 + 10 (x − mean) / sd`` (psytabs ``normTable``);
* percentile rank, midpoint convention: ``PR = 100 (cf_below + f / 2) / N``
  where ``cf_below`` counts the group's scores below ``x`` and ``f`` those equal
  to it;
* normalised T: ``T = 50 + 10 Φ⁻¹(PR / 100)`` with PR clamped to
  [0.5, 99.5] (petersenlab ``percentileToTScore``);
* lookup: a published raw → (T, PR) table.

T above 80 is reported as ">80" (the RCADS convention, instruments.md §1.9).
Group choice falls back grade × gender → grade → gender → all, skipping groups
smaller than ``min_group_n``.
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

_NORMAL = NormalDist()


def linear_t(raw: float, mean: float, sd: float) -> float:
    """``50 + 10 (raw − mean) / sd``."""
    return 50 + 10 * (raw - mean) / sd


def percentile_rank(raw: float, distribution: Sequence[tuple[float, int]]) -> float:
    """Midpoint percentile rank of ``raw`` in ``[(value, count), ...]`` (ascending), 0–100."""
    values = [v for v, _ in distribution]
    cumulative = [0]
    for _, count in distribution:
        cumulative.append(cumulative[-1] + count)
    total = cumulative[-1]
    below = cumulative[bisect_left(values, raw)]
    equal = cumulative[bisect_right(values, raw)] - below
    return 100 * (below + 0.5 * equal) / total


def normalized_t(pr: float) -> float:
    """``50 + 10 Φ⁻¹(PR / 100)``, PR clamped to [0.5, 99.5]."""
    return 50 + 10 * _NORMAL.inv_cdf(min(max(pr, 0.5), 99.5) / 100)


def t_display(t: float | None) -> str:
    """T as reported: rounded to an integer, ``>80`` above 80, empty for None."""
    if t is None:
        return ""
    shown = math.floor(t + 0.5)
    return ">80" if shown > 80 else str(shown)


@dataclass(frozen=True)
class NormGroup:
    """One norm group's statistics; ``None`` grade/gender means "any"."""

    n: int
    grade: int | None = None
    gender: str | None = None
    region: str | None = None
    mean: float | None = None
    sd: float | None = None
    distribution: tuple[tuple[float, int], ...] = ()
    table: tuple[tuple[float, float, float], ...] = ()

    @property
    def key(self) -> str:
        region = f",region={self.region}" if self.region else ""
        return f"grade={self.grade or '*'},gender={self.gender or '*'}{region}"


@dataclass(frozen=True)
class NormScore:
    """A raw score placed in a norm group."""

    t: float | None
    percentile: float | None
    group: str


@dataclass(frozen=True)
class NormSet:
    """A versioned norm set for one instrument scale."""

    id: str
    version: str
    instrument: str
    scale: str
    method: str
    status: str
    provenance: dict[str, Any]
    groups: tuple[NormGroup, ...]
    min_group_n: int = 1

    def group_for(self, grade: int | None, gender: str | None, region: str | None = None) -> NormGroup | None:
        """The most specific usable group: grade×gender, grade, gender, all;
        at each step a group of the student's ``region`` before a region-less one."""
        regions = (region, None) if region else (None,)
        for want_grade, want_gender in ((grade, gender), (grade, None), (None, gender), (None, None)):
            for want_region in regions:
                for group in self.groups:
                    key = (group.grade, group.gender, group.region)
                    if key == (want_grade, want_gender, want_region) and self._usable(group):
                        return group
        return None

    def _usable(self, group: NormGroup) -> bool:
        """Large enough, and with an SD when the method needs one (an SD of 0 gives no T)."""
        return group.n >= self.min_group_n and (self.method != "linear_t" or bool(group.sd))

    def convert(
        self, raw: float | None, grade: int | None, gender: str | None, region: str | None = None
    ) -> NormScore | None:
        """T and percentile rank of ``raw`` for a student of ``grade``, ``gender`` (and ``region``)."""
        group = self.group_for(grade, gender, region)
        if raw is None or group is None:
            return None
        if self.method == "lookup":
            for value, t, pr in group.table:
                if value == raw:
                    return NormScore(t, pr, group.key)
            return None
        pr = percentile_rank(raw, group.distribution) if group.distribution else None
        if self.method == "linear_t":
            return NormScore(linear_t(raw, group.mean, group.sd), pr, group.key)
        return NormScore(normalized_t(pr) if pr is not None else None, pr, group.key)


def build_norm_set_model(data: dict) -> NormSet:
    """Build a :class:`NormSet` from schema-valid YAML data."""
    groups = tuple(
        NormGroup(
            n=g["n"],
            grade=g.get("grade"),
            gender=g.get("gender"),
            region=g.get("region"),
            mean=g.get("mean"),
            sd=g.get("sd"),
            distribution=tuple((float(v), int(c)) for v, c in g.get("distribution", [])),
            table=tuple((float(r), float(t), float(p)) for r, t, p in g.get("table", [])),
        )
        for g in data["groups"]
    )
    return NormSet(
        data["id"], data["version"], data["instrument"], data["scale"], data["method"],
        data["status"], data["provenance"], groups, data.get("min_group_n", 1),
    )  # fmt: skip


def group_stats(values: Sequence[float]) -> dict[str, Any]:
    """``n``, ``mean``, sample ``sd`` (n − 1) and the distribution of ``values``."""
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    distribution = [[_plain(v), c] for v, c in sorted(Counter(values).items())]
    return {"n": n, "mean": round(mean, 6), "sd": round(sd, 6), "distribution": distribution}


def build_norm_data(
    rows: Sequence[tuple[float, int | None, str | None]],
    instrument: str,
    scale: str,
    *,
    method: str = "normalized_t",
    norm_id: str,
    version: str,
    population: str,
    wave: str = "",
    built_by: str = "",
    min_group_n: int = 200,
) -> dict[str, Any]:
    """Compute a draft norm set from ``(raw, grade, gender)`` rows (YAML-ready data).

    Groups: every grade × gender cell, every grade, every gender and all
    together (the fallbacks). Groups with an SD of 0 are kept for review but
    cannot give a linear T.
    """
    cells: dict[tuple[int | None, str | None], list[float]] = {}
    for raw, grade, gender in rows:
        for key in ((grade, gender), (grade, None), (None, gender), (None, None)):
            cells.setdefault(key, []).append(float(raw))
    groups = []
    for (grade, gender), values in sorted(cells.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1] or "")):
        group: dict[str, Any] = {}
        if grade is not None:
            group["grade"] = grade
        if gender is not None:
            group["gender"] = gender
        stats = group_stats(values)
        if stats["sd"] == 0:
            del stats["sd"]
        groups.append(group | stats)
    provenance = {"population": population, "built_at": dt.date.today().isoformat(), "n": len(rows)}
    if wave:
        provenance["wave"] = wave
    if built_by:
        provenance["built_by"] = built_by
    return {
        "kind": "norm_set", "id": norm_id, "version": version, "instrument": instrument, "scale": scale,
        "method": method, "status": "draft", "provenance": provenance, "min_group_n": min_group_n, "groups": groups,
    }  # fmt: skip


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
