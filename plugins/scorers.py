"""Built-in scale scoring methods: ``sum``, ``mean`` and ``count_at_or_above``.

Each works on a whole matrix of responses at once (see
:class:`xinshu.scoring.Scorer`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from xinshu import hookimpl
from xinshu.instruments import Scale
from xinshu.scoring import ScaleInput, Scorer


def round_half_up(values: np.ndarray) -> np.ndarray:
    """Round to integers, halves away from zero for positive scores (2.5 → 3)."""
    return np.floor(values + 0.5)


class SumScorer(Scorer):
    """Sum of item values, optionally multiplied (``multiply``, e.g. WHO-5 ×4).

    With missing answers allowed by the scale's rule: ``prorate: none`` sums
    the answered items; ``prorate: mean_times_n`` returns the mean of the
    answered items times the number of items, rounded half up.
    """

    name = "sum"
    description = "sum of item values (optionally prorated and multiplied)"
    options_schema: ClassVar[dict] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"multiply": {"type": "number", "exclusiveMinimum": 0}},
    }

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:
        total = data.total
        if scale.missing.prorate == "mean_times_n":
            prorated = round_half_up(total / data.answered * data.n_items)
            total = np.where(data.answered < data.n_items, prorated, total)
        return total * scale.options.get("multiply", 1)


class MeanScorer(Scorer):
    """Mean of the answered item values."""

    name = "mean"
    description = "mean of answered item values"

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:
        return data.total / data.answered


class CountAtOrAboveScorer(Scorer):
    """Number of answered items with a value at or above ``threshold``
    (a derived index, e.g. SCL-90 positive items or an ASQ positive screen)."""

    name = "count_at_or_above"
    description = "number of items answered at or above a threshold"
    options_schema: ClassVar[dict] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["threshold"],
        "properties": {"threshold": {"type": "number"}},
    }

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:
        return (data.values >= scale.options["threshold"]).sum(axis=1).astype(float)


@hookimpl
def register_scorers() -> list[type[Scorer]]:
    return [SumScorer, MeanScorer, CountAtOrAboveScorer]
