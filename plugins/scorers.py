"""Built-in scale scoring methods: ``sum`` and ``mean``."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

from xinshu import hookimpl
from xinshu.instruments import Scale
from xinshu.scoring import Answer, Scorer


def _round_half_up(value: float) -> float:
    return float(Decimal(str(value)).quantize(Decimal("1"), rounding=ROUND_HALF_UP))


class SumScorer(Scorer):
    """Sum of item values.

    With missing answers allowed by the scale's rule: ``prorate: none`` sums
    the answered items; ``prorate: mean_times_n`` returns the mean of the
    answered items times the number of items, rounded half up to an integer.
    """

    name = "sum"
    description = "sum of item values (optionally prorated)"

    def score(self, values: Sequence[Answer], scale: Scale) -> float:
        present = [v for v in values if v is not None]
        if scale.missing.prorate == "mean_times_n" and len(present) < len(values):
            return _round_half_up(sum(present) / len(present) * len(values))
        return float(sum(present))


class MeanScorer(Scorer):
    """Mean of the answered item values."""

    name = "mean"
    description = "mean of answered item values"

    def score(self, values: Sequence[Answer], scale: Scale) -> float:
        present = [v for v in values if v is not None]
        return sum(present) / len(present)


@hookimpl
def register_scorers() -> list[type[Scorer]]:
    return [SumScorer, MeanScorer]
