"""Everything known about students, as columns: what alert rules read.

A :class:`Facts` table has one row per student and one numpy column per fact.
Column keys:

* ``<instrument>:scale:<scale>`` raw score, ``…:t:<scale>`` T score,
  ``…:pr:<scale>`` percentile rank, ``…:band:<scale>`` band id (object),
  ``…:bandindex:<scale>`` band position (float), ``…:item:<item>`` answer —
  all of the student's latest response to that instrument;
* ``<instrument>:prev:scale:<scale>`` and ``…:prev:bandindex:<scale>`` — of the
  response before it (change since the previous wave);
* ``<instrument>:flag:<flag>`` (bool) — ``critical:…``, ``critical_missing:…``,
  ``invalid:…`` of the latest response; ``<instrument>:taken`` (bool) — the
  student has a response; ``<instrument>:valid`` (bool) — the latest protocol
  is valid;
* ``teacher:<category>`` / ``parent:<category>`` (bool) — an open report in
  that category;
* ``judgement:level`` — the level a psychology teacher set on the open episode.

A missing column reads as "unknown": NaN, None or False.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from xinshu.scoring import ScoreResult


@dataclass
class Facts:
    """``n`` rows (``student_ids``, may be empty for synthetic tables) of named columns."""

    n: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    student_ids: np.ndarray | None = None

    def number(self, key: str) -> np.ndarray:
        column = self.columns.get(key)
        return np.full(self.n, np.nan) if column is None else column

    def text(self, key: str) -> np.ndarray:
        column = self.columns.get(key)
        return np.full(self.n, None, dtype=object) if column is None else column

    def flag(self, key: str) -> np.ndarray:
        column = self.columns.get(key)
        return np.zeros(self.n, dtype=bool) if column is None else column

    def value(self, key: str, row: int):
        """One cell as a plain Python value (None for unknown), for explain-why."""
        column = self.columns.get(key)
        if column is None:
            return None
        value = column[row]
        if isinstance(value, np.bool_ | bool):
            return bool(value)
        if isinstance(value, np.floating | float):
            return None if np.isnan(value) else float(value)
        return value


def result_columns(instrument_id: str, result: ScoreResult, bands: Mapping[str, list[str]]) -> dict[str, object]:
    """The fact columns (as scalars) of one scored response."""
    cells: dict[str, object] = {f"{instrument_id}:taken": True, f"{instrument_id}:valid": result.protocol_valid}
    for scale_id, score in result.scales.items():
        cells[f"{instrument_id}:scale:{scale_id}"] = np.nan if score.raw is None else score.raw
        cells[f"{instrument_id}:t:{scale_id}"] = np.nan if score.t is None else score.t
        cells[f"{instrument_id}:pr:{scale_id}"] = np.nan if score.percentile is None else score.percentile
        cells[f"{instrument_id}:band:{scale_id}"] = score.band
        order = bands.get(scale_id, [])
        cells[f"{instrument_id}:bandindex:{scale_id}"] = order.index(score.band) if score.band in order else np.nan
    for item_id, value in result.items.items():
        cells[f"{instrument_id}:item:{item_id}"] = np.nan if value is None else value
    for flag in result.flags:
        cells[f"{instrument_id}:flag:{flag}"] = True
    return cells


def facts_from_rows(rows: Iterable[Mapping[str, object]], student_ids: Iterable[int] | None = None) -> Facts:
    """Build a table from per-student cell mappings (missing cells: unknown)."""
    rows = list(rows)
    n = len(rows)
    keys = sorted({key for row in rows for key in row})
    columns: dict[str, np.ndarray] = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, bool | np.bool_):
            columns[key] = np.array([bool(v) for v in values], dtype=bool)
        elif isinstance(sample, str):
            columns[key] = np.array(values, dtype=object)
        else:
            columns[key] = np.array([np.nan if v is None else v for v in values], dtype=float)
    ids = None if student_ids is None else np.array(list(student_ids))
    return Facts(n, columns, ids)
