"""Answer-import profiles (``rules/imports/*.yaml``): how a file's columns map
to an instrument's items and how cell text is recoded into item values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class CellError(ValueError):
    """A cell cannot be read as an item value; the message is user-facing."""


@dataclass(frozen=True)
class ImportProfile:
    """Column mapping and value recoding for one kind of answer file.

    ``missing_codes`` are values that mean "no answer" (e.g. NHANES 7 refused,
    9 don't know): they become ``None`` and are never scored.
    """

    id: str
    version: str
    instrument: str
    respondent_column: str
    match: str
    items: dict[str, str]
    missing_codes: frozenset[float]
    recode: dict[str, float]
    accept_integral_floats: bool
    blank_rows: str

    def parse_value(self, cell: Any) -> float | None:
        """Turn one cell into an item value, ``None`` for missing.

        :raises CellError: text that is neither a number nor a recode key, or a
            fractional number.
        """
        if cell is None:
            return None
        if isinstance(cell, str):
            text = cell.strip()
            if text == "":
                return None
            if text in self.recode:
                return self.recode[text]
            value = self._number(text)
        elif isinstance(cell, bool):
            raise CellError(f"“{cell}”不是数字")
        elif isinstance(cell, (int, float)):
            value = self._integral(float(cell), str(cell))
        else:
            raise CellError(f"“{cell}”不是数字")
        return None if value in self.missing_codes else value

    def parse_respondent(self, cell: Any) -> str:
        """Respondent id as text; ``93705.0`` → ``93705`` when floats are accepted."""
        if cell is None:
            return ""
        if isinstance(cell, float) or (isinstance(cell, str) and "." in cell):
            try:
                number = float(cell)
            except ValueError:
                return str(cell).strip()
            if self.accept_integral_floats and number.is_integer():
                return str(int(number))
        return str(cell).strip()

    def _number(self, text: str) -> float:
        try:
            return float(int(text))
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError as exc:
            raise CellError(f"“{text}”不是数字，也不是可识别的选项文字") from exc
        return self._integral(number, text)

    def _integral(self, number: float, shown: str) -> float:
        if not number.is_integer():
            raise CellError(f"{shown} 不是整数")
        if "." in shown and not self.accept_integral_floats:
            raise CellError(f"{shown} 写成了小数；此导入方案要求整数")
        return float(int(number))


def build_profile(data: dict) -> ImportProfile:
    """Build an :class:`ImportProfile` from schema-valid data."""
    return ImportProfile(
        id=data["id"],
        version=data["version"],
        instrument=data["instrument"],
        respondent_column=data["respondent"]["column"],
        match=data["respondent"]["match"],
        items=dict(data["items"]),
        missing_codes=frozenset(float(v) for v in data.get("missing_codes", [])),
        recode={str(k): float(v) for k, v in data.get("recode", {}).items()},
        accept_integral_floats=data.get("accept_integral_floats", False),
        blank_rows=data.get("blank_rows", "skip"),
    )
