"""Score one response from its raw answers.

Scores are always derived from the stored raw answers (never hand-entered) and
stamp the instrument version and file digest they were computed with.

Pipeline per scale: recode reverse-scored items (``min + max - x``), drop
missing answers, apply the scale's missing-data rule (too few answered →
scale invalid, no band), call the scale's :class:`Scorer`, find the band.
Critical items are checked on the raw item values and are never prorated or
suppressed: a critical item that is unanswered is flagged
``critical_missing:<item>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from xinshu.instruments import Instrument, Scale

Answer = float | None


class Scorer:
    """Base class for a scale scoring method (a plugin registers subclasses).

    Subclasses set ``name`` (what ``method:`` in YAML refers to), a one-line
    ``description``, and ``options_schema``, a JSON Schema for the scale's
    ``options`` mapping. ``score`` gets the scale's item values in scale order,
    already reverse-keyed, with ``None`` for missing answers; the missing-data
    rule has already been checked. It returns the raw score (a float).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options_schema: ClassVar[dict] = {"type": "object", "additionalProperties": False}

    def score(self, values: Sequence[Answer], scale: Scale) -> float:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class ScaleScore:
    """Result for one scale: raw score (None when invalid) and band id."""

    scale: str
    raw: float | None
    band: str | None
    answered: int
    valid: bool


@dataclass(frozen=True)
class ScoreResult:
    """Result for one response.

    ``items`` holds the item values as answered, before reverse keying
    (``None`` = missing); ``flags`` are
    strings such as ``critical:phq9_9``, ``critical_missing:phq9_9`` or
    ``incomplete:total``.
    """

    instrument: str
    instrument_version: str
    instrument_digest: str
    items: dict[str, Answer]
    scales: dict[str, ScaleScore]
    flags: tuple[str, ...] = field(default_factory=tuple)

    def scale_value(self, scale_id: str) -> float | None:
        s = self.scales.get(scale_id)
        return s.raw if s else None

    def band(self, scale_id: str) -> str | None:
        s = self.scales.get(scale_id)
        return s.band if s else None


class AnswerError(ValueError):
    """An answer is not one of the item's allowed values, or names no item."""


def check_answers(instrument: Instrument, answers: Mapping[str, Any]) -> dict[str, Answer]:
    """Return answers for every item (None = missing), or raise AnswerError."""
    unknown = set(answers) - set(instrument.item_ids)
    if unknown:
        raise AnswerError(f"量表中没有这些题目：{', '.join(sorted(unknown))}")
    checked: dict[str, Answer] = {}
    for item in instrument.items:
        value = answers.get(item.id)
        if value is not None and value not in item.values:
            allowed = ", ".join(_fmt(v) for v in sorted(item.values))
            raise AnswerError(f"题目 {item.id} 的答案 {_fmt(value)} 不在允许范围内（{allowed}）")
        checked[item.id] = value
    return checked


def score_response(instrument: Instrument, answers: Mapping[str, Any], scorers: Mapping[str, Scorer]) -> ScoreResult:
    """Score one response.

    :param answers: item id -> value (``None`` or absent = missing).
    :param scorers: scorer name -> instance (from the plugin manager).
    :raises AnswerError: an answer outside the item's options.
    """
    values = check_answers(instrument, answers)
    keyed = {item.id: _reverse(item, values[item.id]) for item in instrument.items}
    flags: list[str] = []
    scales = {}
    for scale in instrument.scales:
        result = _score_scale(scale, [keyed[i] for i in scale.items], scorers[scale.method])
        if not result.valid:
            flags.append(f"incomplete:{scale.id}")
        scales[scale.id] = result
    for critical in instrument.critical_items:
        value = values[critical.item]
        if value is None:
            flags.append(f"critical_missing:{critical.item}")
        elif value >= critical.min_value:
            flags.append(f"critical:{critical.item}")
    return ScoreResult(instrument.id, instrument.version, instrument.digest, values, scales, tuple(flags))


def _score_scale(scale: Scale, values: list[Answer], scorer: Scorer) -> ScaleScore:
    answered = sum(v is not None for v in values)
    if answered < scale.missing.min_answered:
        return ScaleScore(scale.id, None, None, answered, False)
    raw = scorer.score(values, scale)
    band = scale.band_for(raw)
    return ScaleScore(scale.id, raw, band.id if band else None, answered, True)


def _reverse(item, value: Answer) -> Answer:
    if value is None or not item.reverse:
        return value
    return item.min_value + item.max_value - value


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
