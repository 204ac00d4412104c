"""Alert rules: structured YAML conditions → warning level, with explain-why.

A condition is a mapping, never code (no ``eval``). Leaves (a comparison is
any of ``gte``, ``gt``, ``lte``, ``lt``, ``eq``; all given must hold):

* ``{scale: total, gte: 15}`` — raw score; ``{t: total, gte: 70}`` — T score;
  ``{percentile: total, gte: 95}`` — percentile rank (active norm set);
* ``{band: total, in: [severe]}`` — severity band;
* ``{item: phq9_9, gte: 1}`` — one answer as given;
* ``{critical: phq9_9}`` / ``{critical_missing: phq9_9}`` — critical item
  endorsed / left unanswered; ``{validity: lie}`` — that validity indicator
  fired (``validity: any`` — any did);
* ``{change: total, worsened_by: 5}`` — raw score rose by at least 5 since the
  previous response; ``{change: total, band_worsened_by: 1}`` — by a band;
* ``{teacher_report: [self_harm_talk, …]}`` / ``{parent_report: […]}`` — an
  open report in any of those categories;
* ``{judgement: level, gte: 3}`` — the level a psychology teacher confirmed.

Leaves about a scale or item use the ruleset's ``instrument`` unless they
name one (``instrument: gad7``). Combinations: ``{all: […]}``, ``{any: […]}``,
``{not: …}``, ``{at_least: 2, of: […]}``.

Rules are compiled once into numpy functions over a :class:`xinshu.facts.Facts`
table, so a whole city is evaluated in one pass. Every rule that matches is
kept with the exact values it read; the level is the highest matching level.

An invalid protocol (a validity indicator fired) goes to re-test: a rule that
reads an instrument's scores, bands, items or change requires that
instrument's latest protocol to be valid, so only critical-item, validity
and report rules fire on it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xinshu.facts import Facts, facts_from_rows, result_columns
from xinshu.scoring import ScoreResult

_COMPARE = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt, "eq": operator.eq}
#: Leaf kinds that read an instrument's scores (gated on a valid protocol).
SCORE_KINDS = ("scale", "t", "percentile", "band", "item", "change")
INSTRUMENT_KINDS = (*SCORE_KINDS, "critical", "critical_missing", "validity")
REPORT_KINDS = ("teacher_report", "parent_report", "judgement")


@dataclass(frozen=True)
class Rule:
    """One alert rule: when ``when`` matches, warn at ``level``."""

    id: str
    level: int
    when: dict
    explain: dict[str, str]
    source: str = ""


@dataclass(frozen=True)
class RuleSet:
    """A file of alert rules (``rules/alerts/<id>.yaml``); ``instrument`` is the
    default for scale and item leaves (None for report-only rulesets)."""

    id: str
    version: str
    digest: str
    instrument: str | None
    rules: tuple[Rule, ...]
    file: str = ""


@dataclass(frozen=True)
class FiredRule:
    """A rule that matched, and the input values it read (explain-why)."""

    rule_id: str
    level: int
    inputs: dict[str, Any]
    ruleset: str = ""


@dataclass(frozen=True)
class Decision:
    """Outcome for one student: ``level`` None when no rule matched;
    ``rule_id`` is the highest-level matching rule (first in order among equals)."""

    level: int | None
    rule_id: str | None
    fired: tuple[FiredRule, ...]


@dataclass
class _Compiled:
    ruleset: RuleSet
    rule: Rule
    test: Callable[[Facts], np.ndarray]
    keys: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    """Vectorised outcome: ``level`` (0 = none) per row and which rules fired."""

    facts: Facts
    compiled: list[_Compiled]
    fired: np.ndarray  # (n, n_rules) bool
    level: np.ndarray  # (n,) int

    def decision(self, row: int) -> Decision:
        """The :class:`Decision` of one row, with the values each fired rule read."""
        fired = [
            FiredRule(c.rule.id, c.rule.level, {k: self.facts.value(k, row) for k in c.keys}, c.ruleset.id)
            for j, c in enumerate(self.compiled)
            if self.fired[row, j]
        ]
        if not fired:
            return Decision(None, None, ())
        top = max(fired, key=lambda f: f.level)
        return Decision(top.level, top.rule_id, tuple(fired))


class Engine:
    """Compiled rulesets, ready to evaluate :class:`Facts` tables."""

    def __init__(self, rulesets: Sequence[RuleSet]):
        self.rulesets = tuple(rulesets)
        self.compiled = [_compile_rule(rs, rule) for rs in self.rulesets for rule in rs.rules]

    def evaluate(self, facts: Facts) -> Evaluation:
        """Evaluate every rule on every row."""
        masks = [compiled.test(facts) for compiled in self.compiled]
        fired = np.stack(masks, axis=1) if masks else np.zeros((facts.n, 0), dtype=bool)
        level = np.zeros(facts.n, dtype=np.int64)
        for lv in sorted({c.rule.level for c in self.compiled}):  # higher levels overwrite lower ones
            level[
                np.logical_or.reduce([m for m, c in zip(masks, self.compiled, strict=True) if c.rule.level == lv])
            ] = lv
        return Evaluation(facts, self.compiled, fired, level)


def evaluate(ruleset: RuleSet, result: ScoreResult) -> Decision:
    """Evaluate one ruleset on one scored response (no reports, no history)."""
    return Engine([ruleset]).evaluate(facts_for_result(result)).decision(0)


def facts_for_result(result: ScoreResult, bands: Mapping[str, list[str]] | None = None) -> Facts:
    """A one-row table holding one scored response."""
    return facts_from_rows([result_columns(result.instrument, result, bands or {})])


def _compile_rule(ruleset: RuleSet, rule: Rule) -> _Compiled:
    keys: list[str] = []
    test = _compile(rule.when, ruleset.instrument, keys)
    gated = sorted({k.split(":")[0] for kind, k in _leaf_keys(rule.when, ruleset.instrument) if kind in SCORE_KINDS})
    if gated:
        inner = test

        def test(facts: Facts, inner=inner, gated=gated) -> np.ndarray:
            mask = inner(facts)
            for instrument in gated:
                mask = mask & facts.flag(f"{instrument}:valid")
            return mask

    return _Compiled(ruleset, rule, test, list(dict.fromkeys(keys)))


def _compile(cond: dict, instrument: str | None, keys: list[str]) -> Callable[[Facts], np.ndarray]:
    if "all" in cond:
        parts = [_compile(c, instrument, keys) for c in cond["all"]]
        return lambda f: np.logical_and.reduce([p(f) for p in parts])
    if "any" in cond:
        parts = [_compile(c, instrument, keys) for c in cond["any"]]
        return lambda f: np.logical_or.reduce([p(f) for p in parts])
    if "not" in cond:
        part = _compile(cond["not"], instrument, keys)
        return lambda f: ~part(f)
    if "at_least" in cond:
        parts, k = [_compile(c, instrument, keys) for c in cond["of"]], cond["at_least"]
        return lambda f: np.sum([p(f) for p in parts], axis=0) >= k
    return _leaf(cond, cond.get("instrument", instrument), keys)


def _leaf(cond: dict, inst: str | None, keys: list[str]) -> Callable[[Facts], np.ndarray]:
    for kind, column in (("scale", "scale"), ("t", "t"), ("percentile", "pr"), ("item", "item")):
        if kind in cond:
            key = f"{inst}:{column}:{cond[kind]}"
            keys.append(key)
            return lambda f, key=key: _compare(f.number(key), cond)
    if "band" in cond:
        key, allowed = f"{inst}:band:{cond['band']}", list(cond["in"])
        keys.append(key)
        return lambda f: np.isin(f.text(key), allowed)
    for kind in ("critical", "critical_missing"):
        if kind in cond:
            key = f"{inst}:flag:{kind}:{cond[kind]}"
            keys.append(key)
            return lambda f, key=key: f.flag(key).copy()
    if "validity" in cond:
        return _validity(cond["validity"], inst, keys)
    if "change" in cond:
        return _change(cond, inst, keys)
    for kind, prefix in (("teacher_report", "teacher"), ("parent_report", "parent")):
        if kind in cond:
            names = [f"{prefix}:{category}" for category in cond[kind]]
            keys.extend(names)
            return lambda f, names=names: np.logical_or.reduce([f.flag(k) for k in names])
    key = "judgement:level"
    keys.append(key)
    return lambda f: _compare(f.number(key), cond)


def _validity(name: str, inst: str | None, keys: list[str]) -> Callable[[Facts], np.ndarray]:
    if name == "any":
        taken, valid = f"{inst}:taken", f"{inst}:valid"
        keys.append(valid)
        return lambda f: f.flag(taken) & ~f.flag(valid)
    key = f"{inst}:flag:invalid:{name}"
    keys.append(key)
    return lambda f: f.flag(key).copy()


def _change(cond: dict, inst: str | None, keys: list[str]) -> Callable[[Facts], np.ndarray]:
    scale = cond["change"]
    if "worsened_by" in cond:
        now, before, step = f"{inst}:scale:{scale}", f"{inst}:prev:scale:{scale}", cond["worsened_by"]
    else:
        now, before, step = f"{inst}:bandindex:{scale}", f"{inst}:prev:bandindex:{scale}", cond["band_worsened_by"]
    keys.extend([now, before])
    return lambda f: np.nan_to_num(f.number(now) - f.number(before), nan=-np.inf) >= step


def _compare(values: np.ndarray, cond: dict) -> np.ndarray:
    mask = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        for op, fn in _COMPARE.items():
            if op in cond:
                mask &= fn(values, cond[op])
    return mask


def _leaf_keys(cond: dict, instrument: str | None) -> list[tuple[str, str]]:
    """``(kind, "<instrument>:<name>")`` for every leaf that reads an instrument."""
    found = []
    for sub in (*cond.get("all", []), *cond.get("any", []), *cond.get("of", [])):
        found.extend(_leaf_keys(sub, instrument))
    if "not" in cond:
        found.extend(_leaf_keys(cond["not"], instrument))
    inst = cond.get("instrument", instrument)
    for kind in INSTRUMENT_KINDS:
        if kind in cond:
            found.append((kind, f"{inst}:{cond[kind]}"))
    return found


def references(cond: dict, instrument: str | None = None) -> list[tuple[str, str, str | None]]:
    """``(kind, name, instrument)`` for every leaf (for the semantic checks)."""
    refs = []
    for sub in (*cond.get("all", []), *cond.get("any", []), *cond.get("of", [])):
        refs.extend(references(sub, instrument))
    if "not" in cond:
        refs.extend(references(cond["not"], instrument))
    inst = cond.get("instrument", instrument)
    for kind in (*INSTRUMENT_KINDS, "teacher_report", "parent_report"):
        if kind in cond:
            names = cond[kind] if isinstance(cond[kind], list) else [cond[kind]]
            refs.extend((kind, name, inst) for name in names)
    return refs
