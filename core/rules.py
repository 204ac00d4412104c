"""Alert rules: structured YAML conditions → warning level, with explain-why.

A condition is a mapping, never code (no ``eval``):

* ``{scale: total, gte: 15}`` (also ``gt``, ``lte``, ``lt``, ``eq``; all given
  comparisons must hold) — compares a scale's raw score; an invalid scale
  (too many missing answers) never matches;
* ``{item: phq9_9, gte: 1}`` — compares one item's value as answered;
* ``{band: total, in: [severe]}`` — the scale's severity band;
* ``{critical: phq9_9}`` — the instrument's critical-item flag fired;
* ``{critical_missing: phq9_9}`` — that critical item was left unanswered;
* ``{all: [...]}``, ``{any: [...]}``, ``{not: ...}``, ``{at_least: 2, of: [...]}``.

Every rule that matches is kept with the exact input values it read; the
warning level is the highest matching rule's level.

An invalid protocol (a validity indicator fired) goes to re-test: only rules
that read nothing but critical items (``critical`` / ``critical_missing``) are
evaluated on it, so a critical answer always warns and a lie-scale or
straight-lined protocol never warns on its scale scores.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from xinshu.scoring import ScoreResult

_COMPARE = {"gte": operator.ge, "gt": operator.gt, "lte": operator.le, "lt": operator.lt, "eq": operator.eq}


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
    """The alert rules for one instrument (``rules/alerts/<id>.yaml``)."""

    id: str
    version: str
    digest: str
    instrument: str
    rules: tuple[Rule, ...]
    file: str = ""


@dataclass(frozen=True)
class FiredRule:
    """A rule that matched, and the input values it read (explain-why)."""

    rule_id: str
    level: int
    inputs: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """Outcome of evaluating a ruleset on one score result.

    ``level`` is None when no rule matched; ``rule_id`` is the highest-level
    matching rule (the first in file order among equals).
    """

    level: int | None
    rule_id: str | None
    fired: tuple[FiredRule, ...]


def evaluate(ruleset: RuleSet, result: ScoreResult) -> Decision:
    """Evaluate every rule of ``ruleset`` on ``result``."""
    fired = []
    for rule in ruleset.rules:
        if not result.protocol_valid and not critical_only(rule.when):
            continue
        inputs: dict[str, Any] = {}
        if matches(rule.when, result, inputs):
            fired.append(FiredRule(rule.id, rule.level, inputs))
    if not fired:
        return Decision(None, None, ())
    top = max(fired, key=lambda f: f.level)  # max() keeps the first among equals
    return Decision(top.level, top.rule_id, tuple(fired))


def matches(cond: dict, result: ScoreResult, inputs: dict[str, Any]) -> bool:
    """True if ``cond`` holds; records every value read into ``inputs``."""
    if "all" in cond:
        return all([matches(c, result, inputs) for c in cond["all"]])  # noqa: C419 - evaluate all: explain-why
    if "any" in cond:
        return any([matches(c, result, inputs) for c in cond["any"]])  # noqa: C419 - evaluate all: explain-why
    if "not" in cond:
        return not matches(cond["not"], result, inputs)
    if "at_least" in cond:
        return sum(matches(c, result, inputs) for c in cond["of"]) >= cond["at_least"]
    for kind in ("critical", "critical_missing"):
        if kind in cond:
            key = f"{kind}:{cond[kind]}"
            inputs[key] = key in result.flags
            return inputs[key]
    if "band" in cond:
        band = result.band(cond["band"])
        inputs[f"band:{cond['band']}"] = band
        return band in cond["in"]
    if "scale" in cond:
        value = result.scale_value(cond["scale"])
        inputs[f"scale:{cond['scale']}"] = value
        return _compare(value, cond)
    value = result.items.get(cond["item"])
    inputs[f"item:{cond['item']}"] = value
    return _compare(value, cond)


def _compare(value: float | None, cond: dict) -> bool:
    if value is None:
        return False
    return all(fn(value, cond[op]) for op, fn in _COMPARE.items() if op in cond)


def critical_only(cond: dict) -> bool:
    """True when a condition reads critical-item flags and nothing else."""
    refs = references(cond)
    return bool(refs) and all(kind in ("critical", "critical_missing") for kind, _ in refs)


def references(cond: dict) -> list[tuple[str, str]]:
    """List ``(kind, name)`` pairs a condition refers to (for semantic checks)."""
    refs: list[tuple[str, str]] = []
    for key in ("all", "any", "of"):
        for sub in cond.get(key, []):
            refs.extend(references(sub))
    if "not" in cond:
        refs.extend(references(cond["not"]))
    for kind in ("scale", "item", "band", "critical", "critical_missing"):
        if kind in cond:
            refs.append((kind, cond[kind]))
    return refs
