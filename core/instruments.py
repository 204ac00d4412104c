"""Typed, validated instrument declarations (built from ``instruments/*.yaml``).

These are plain immutable objects: the YAML has already passed the JSON Schema
and the semantic checks in :mod:`xinshu.declarations.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Band:
    """A severity band: inclusive raw-score range ``[min, max]`` with a label."""

    id: str
    min: float
    max: float
    label: dict[str, str]

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True)
class MissingRule:
    """Per-scale missing-data rule.

    ``min_answered`` items must be answered or the scale is not scored
    (``valid`` False, no band). ``prorate`` ``none`` sums what is present;
    ``mean_times_n`` scales the mean of answered items by the item count.
    """

    min_answered: int
    prorate: str = "none"
    source: str = ""


@dataclass(frozen=True)
class Scale:
    """A scale (total or subscale) of an instrument."""

    id: str
    title: dict[str, str]
    method: str
    items: tuple[str, ...]
    missing: MissingRule
    bands: tuple[Band, ...] = ()
    bands_source: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    role: str = "score"
    cutoffs: tuple[dict[str, Any], ...] = ()

    def band_for(self, value: float | None) -> Band | None:
        """Return the band containing ``value``, or None (no value / no band)."""
        if value is None:
            return None
        for band in self.bands:
            if band.contains(value):
                return band
        return None


@dataclass(frozen=True)
class CriticalItem:
    """An item whose answer at or above ``min_value`` always needs follow-up."""

    item: str
    min_value: float
    reason: dict[str, str]
    source: str


@dataclass(frozen=True)
class Item:
    """One question; ``options`` are its allowed values (item or instrument level)."""

    id: str
    text: dict[str, str]
    options: tuple[tuple[float, dict[str, str]], ...]
    reverse: bool = False

    @property
    def values(self) -> frozenset[float]:
        return frozenset(v for v, _ in self.options)

    @property
    def min_value(self) -> float:
        return min(self.values)

    @property
    def max_value(self) -> float:
        return max(self.values)


@dataclass(frozen=True)
class Instrument:
    """A screening instrument declared in ``instruments/<id>.yaml``.

    ``validity`` holds the validity indicators as declared (mappings with
    ``id``, ``kind`` and the kind's parameters; see the instrument schema).

    ``digest`` is the SHA-256 of the file's bytes; with ``version`` it is
    stamped on every score so past results stay interpretable.
    """

    id: str
    version: str
    digest: str
    title: dict[str, str]
    source: str
    licence: dict[str, Any]
    items: tuple[Item, ...]
    scales: tuple[Scale, ...]
    critical_items: tuple[CriticalItem, ...] = ()
    file: str = ""
    validity: tuple[dict[str, Any], ...] = ()
    text_source: str = "builtin"

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.items)

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def scale(self, scale_id: str) -> Scale:
        for scale in self.scales:
            if scale.id == scale_id:
                return scale
        raise KeyError(scale_id)


def build_instrument(data: dict, digest: str, file: str) -> Instrument:
    """Build an :class:`Instrument` from schema-valid YAML data."""
    shared = _options(data["response_options"])
    items = tuple(
        Item(
            id=i["id"],
            text=i.get("text", {}),
            options=_options(i["options"]) if "options" in i else shared,
            reverse=i.get("reverse", False),
        )
        for i in data["items"]
    )
    scales = tuple(_scale(s) for s in data["scales"])
    critical = tuple(
        CriticalItem(c["item"], c["min_value"], c["reason"], c["source"]) for c in data.get("critical_items", [])
    )
    return Instrument(
        id=data["id"],
        version=data["version"],
        digest=digest,
        title=data["title"],
        source=data["source"],
        licence=data["licence"],
        items=items,
        scales=scales,
        critical_items=critical,
        file=file,
        validity=tuple(data.get("validity", [])),
        text_source=data.get("text_source", "builtin"),
    )


def _options(raw: list[dict]) -> tuple[tuple[float, dict[str, str]], ...]:
    return tuple((o["value"], o["label"]) for o in raw)


def _scale(raw: dict) -> Scale:
    bands = raw.get("bands") or {"ranges": [], "source": ""}
    return Scale(
        id=raw["id"],
        title=raw["title"],
        method=raw["method"],
        items=tuple(raw["items"]),
        missing=MissingRule(**raw["missing"]),
        bands=tuple(Band(b["id"], b["min"], b["max"], b["label"]) for b in bands["ranges"]),
        bands_source=bands["source"],
        options=raw.get("options", {}),
        role=raw.get("role", "score"),
        cutoffs=tuple(raw.get("cutoffs", [])),
    )
