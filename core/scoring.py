"""Score responses from their raw answers, many at once.

Scores are always derived from the stored raw answers (never hand-entered) and
stamp the instrument version and file digest they were computed with.

The engine works on a matrix of answers, one row per response and one column
per item (``float64``, ``NaN`` = missing), with numpy; no Python loop runs
over responses (issue 3's benchmark holds it to within 2× of a plain numpy
kernel). Per scale: reverse-scored items are recoded ``min + max - x`` with
the item's own options, the missing-data rule is applied (too few answered →
scale invalid, no band), the scale's :class:`Scorer` computes the raw score,
and the band is looked up.

Validity indicators (instrument ``validity:``) mark a protocol invalid with a
flag ``invalid:<id>``; an invalid protocol is routed to re-test and its scale
scores never raise a warning. Critical items are checked on the answers as
given, are never prorated and are never suppressed by a validity flag: a
critical item that is unanswered is flagged ``critical_missing:<item>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from xinshu.instruments import Instrument, Scale

Answer = float | None


class Scorer:
    """Base class for a scale scoring method (a plugin registers subclasses).

    Subclasses set ``name`` (what ``method:`` in YAML refers to), a one-line
    ``description``, and ``options_schema``, a JSON Schema for the scale's
    ``options`` mapping (validated like a built-in method's).

    :meth:`score` gets a :class:`ScaleInput` for ``n`` responses and returns
    the raw scores, shape ``(n,)``. Rows that fail the missing-data rule are
    discarded by the engine afterwards, so the method need not check it.
    Vectorise: do not loop over rows.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options_schema: ClassVar[dict] = {"type": "object", "additionalProperties": False}

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class ScaleInput:
    """One scale's answers for ``n`` responses, as a scorer sees them.

    ``total`` (sum of the answered, reverse-keyed values) and ``answered``
    (count of answered items), both shape ``(n,)``, are computed for every
    scale at once with one matrix product; ``values``, the ``(n, k)`` slice in
    scale order with ``NaN`` for missing answers, is only built when a scorer
    asks for it.
    """

    def __init__(self, keyed: np.ndarray, columns: list[int], total: np.ndarray, answered: np.ndarray):
        self._keyed, self._columns = keyed, columns
        self.total, self.answered = total, answered
        self.n_items = len(columns)

    @property
    def values(self) -> np.ndarray:
        return self._keyed[:, self._columns]


@dataclass(frozen=True)
class ScaleScore:
    """Result for one scale: raw score (None when invalid) and band id; with an
    active norm set, the T score, percentile rank and the norm set used."""

    scale: str
    raw: float | None
    band: str | None
    answered: int
    valid: bool
    t: float | None = None
    percentile: float | None = None
    norm_set: str | None = None
    norm_version: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    """Result for one response.

    ``items`` holds the item values as answered, before reverse keying
    (``None`` = missing); ``flags`` are strings such as ``critical:phq9_9``,
    ``critical_missing:phq9_9``, ``incomplete:total`` or ``invalid:lie``.
    """

    instrument: str
    instrument_version: str
    instrument_digest: str
    items: dict[str, Answer]
    scales: dict[str, ScaleScore]
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def protocol_valid(self) -> bool:
        """False when any validity indicator fired (the response goes to re-test)."""
        return not any(flag.startswith("invalid:") for flag in self.flags)

    def scale_value(self, scale_id: str) -> float | None:
        s = self.scales.get(scale_id)
        return s.raw if s else None

    def band(self, scale_id: str) -> str | None:
        s = self.scales.get(scale_id)
        return s.band if s else None

    def with_norms(
        self, norms: Mapping[str, Any], grade: int | None, gender: str | None, region: str | None = None
    ) -> ScoreResult:
        """A copy with T scores and percentile ranks from ``norms`` (scale id ->
        :class:`xinshu.norms.NormSet`) for a student of ``grade``, ``gender`` and ``region``
        (the code of the student's district)."""
        scales = dict(self.scales)
        for scale_id, norm in norms.items():
            current = scales.get(scale_id)
            placed = norm.convert(current.raw, grade, gender, region) if current else None
            if placed is not None:
                scales[scale_id] = replace(
                    current, t=placed.t, percentile=placed.percentile, norm_set=norm.id, norm_version=norm.version
                )
        return replace(self, scales=scales)


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


def answers_matrix(instrument: Instrument, rows: Sequence[Mapping[str, Answer]]) -> np.ndarray:
    """Stack answer mappings into an ``(n, n_items)`` float64 matrix (NaN = missing)."""
    matrix = np.full((len(rows), len(instrument.items)), np.nan)
    for j, item_id in enumerate(instrument.item_ids):
        column = [row.get(item_id) for row in rows]
        matrix[:, j] = [np.nan if v is None else v for v in column]
    return matrix


@dataclass
class ScoreTable:
    """Scores of ``n`` responses, as arrays.

    ``raw[scale]`` float (NaN when invalid), ``answered[scale]`` int,
    ``valid[scale]`` bool, ``band[scale]`` int index into the scale's bands
    (-1 = none); ``critical`` / ``critical_missing`` are ``(n, n_critical)``
    bool; ``invalid[indicator id]`` bool.
    """

    instrument: Instrument
    answers: np.ndarray
    raw: dict[str, np.ndarray]
    answered: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    band: dict[str, np.ndarray]
    critical: np.ndarray
    critical_missing: np.ndarray
    invalid: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.answers.shape[0]

    def result(self, i: int) -> ScoreResult:
        """The :class:`ScoreResult` of row ``i``."""
        inst = self.instrument
        items = {item_id: _answer(self.answers[i, j]) for j, item_id in enumerate(inst.item_ids)}
        scales, flags = {}, []
        for scale in inst.scales:
            valid = bool(self.valid[scale.id][i])
            band_index = int(self.band[scale.id][i])
            raw = float(self.raw[scale.id][i]) if valid else None
            band = scale.bands[band_index].id if valid and band_index >= 0 else None
            scales[scale.id] = ScaleScore(scale.id, raw, band, int(self.answered[scale.id][i]), valid)
            if not valid:
                flags.append(f"incomplete:{scale.id}")
        for c, critical in enumerate(inst.critical_items):
            if self.critical_missing[i, c]:
                flags.append(f"critical_missing:{critical.item}")
            elif self.critical[i, c]:
                flags.append(f"critical:{critical.item}")
        flags.extend(f"invalid:{ident}" for ident, mask in self.invalid.items() if mask[i])
        return ScoreResult(inst.id, inst.version, inst.digest, items, scales, tuple(flags))


def score_matrix(
    instrument: Instrument,
    answers: np.ndarray,
    scorers: Mapping[str, Scorer],
    seconds: np.ndarray | None = None,
) -> ScoreTable:
    """Score every row of ``answers`` (shape ``(n, n_items)``, NaN = missing).

    :param seconds: completion time of each response in seconds (for
        ``too_fast`` indicators); None when unknown (the indicator is skipped).
    """
    keyed = _reverse_keyed(instrument, answers)
    columns = {item_id: j for j, item_id in enumerate(instrument.item_ids)}
    present = ~np.isnan(answers)
    membership = np.zeros((len(columns), len(instrument.scales)))
    for s, scale in enumerate(instrument.scales):
        membership[[columns[i] for i in scale.items], s] = 1.0
    totals = np.where(present, keyed, 0.0) @ membership  # every scale's sum in one BLAS call
    counts = present.astype(np.float64) @ membership
    raw, answered, valid, band = {}, {}, {}, {}
    for s, scale in enumerate(instrument.scales):
        count = counts[:, s].astype(np.int64)
        data = ScaleInput(keyed, [columns[i] for i in scale.items], totals[:, s], count)
        ok = count >= scale.missing.min_answered
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.asarray(scorers[scale.method].score(data, scale), dtype=float)
        raw[scale.id] = np.where(ok, values, np.nan)
        answered[scale.id], valid[scale.id] = count, ok
        band[scale.id] = band_index(scale, raw[scale.id])
    critical, missing = _critical(instrument, answers, columns)
    table = ScoreTable(instrument, answers, raw, answered, valid, band, critical, missing, {})
    table.invalid = _validity(instrument, table, keyed, present, columns, seconds)
    return table


def score_response(
    instrument: Instrument,
    answers: Mapping[str, Any],
    scorers: Mapping[str, Scorer],
    seconds: float | None = None,
) -> ScoreResult:
    """Score one response (a one-row :func:`score_matrix`).

    :param answers: item id -> value (``None`` or absent = missing).
    :raises AnswerError: an answer outside the item's options.
    """
    checked = check_answers(instrument, answers)
    timing = None if seconds is None else np.array([seconds], dtype=float)
    return score_matrix(instrument, answers_matrix(instrument, [checked]), scorers, timing).result(0)


def band_index(scale: Scale, raw: np.ndarray) -> np.ndarray:
    """Index of the band holding each raw score (inclusive ranges); -1 for none."""
    if not scale.bands:
        return np.full(raw.shape, -1, dtype=np.int64)
    mins = np.array([b.min for b in scale.bands])
    maxs = np.array([b.max for b in scale.bands])
    found = np.searchsorted(mins, np.nan_to_num(raw, nan=-np.inf), side="right") - 1
    safe = np.clip(found, 0, len(mins) - 1)
    inside = (found >= 0) & (raw <= maxs[safe]) & ~np.isnan(raw)
    return np.where(inside, found, -1)


def _reverse_keyed(instrument: Instrument, answers: np.ndarray) -> np.ndarray:
    reverse = np.array([item.reverse for item in instrument.items])
    if not reverse.any():
        return answers
    pivot = np.array([item.min_value + item.max_value if item.reverse else 0.0 for item in instrument.items])
    return np.where(reverse, pivot - answers, answers)


def _critical(instrument: Instrument, answers: np.ndarray, columns: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    n, k = answers.shape[0], len(instrument.critical_items)
    critical, missing = np.zeros((n, k), dtype=bool), np.zeros((n, k), dtype=bool)
    for c, item in enumerate(instrument.critical_items):
        column = answers[:, columns[item.item]]
        missing[:, c] = np.isnan(column)
        critical[:, c] = column >= item.min_value
    return critical, missing


def _validity(instrument, table, keyed, present, columns, seconds) -> dict[str, np.ndarray]:
    flags = {}
    for indicator in instrument.validity:
        kind = indicator["kind"]
        if kind == "scale_at_least":
            flags[indicator["id"]] = table.raw[indicator["scale"]] >= indicator["value"]
        elif kind == "longstring":
            flags[indicator["id"]] = longest_run(table.answers) >= indicator["max_run"]
        elif kind == "too_fast" and seconds is not None:
            per_item = seconds / np.maximum(present.sum(axis=1), 1)
            flags[indicator["id"]] = per_item < indicator["min_seconds_per_item"]
        elif kind == "inconsistent_pairs":
            a = keyed[:, [columns[p[0]] for p in indicator["pairs"]]]
            b = keyed[:, [columns[p[1]] for p in indicator["pairs"]]]
            flags[indicator["id"]] = (np.abs(a - b) >= indicator["min_difference"]).sum(axis=1) >= indicator["at_least"]
    return flags


def longest_run(answers: np.ndarray) -> np.ndarray:
    """Length of the longest run of identical consecutive answers in each row
    (the ``longstring`` index of the R package careless); missing breaks a run."""
    n, k = answers.shape
    if k == 0:
        return np.zeros(n, dtype=np.int64)
    run = (~np.isnan(answers[:, 0])).astype(np.int64)
    best = run.copy()
    for j in range(1, k):  # loops over items, never over responses
        same = answers[:, j] == answers[:, j - 1]
        run = np.where(same, run + 1, (~np.isnan(answers[:, j])).astype(np.int64))
        np.maximum(best, run, out=best)
    return best


def _answer(value: float) -> Answer:
    return None if np.isnan(value) else float(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
