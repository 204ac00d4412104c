"""Grade names ↔ grade levels 1–12 (小学 1–6, 初中 7–9, 高中 10–12).

Accepts the forms found on rosters (school-context.md §1.5): ``七年级``,
``初一``, ``高二``, ``小学三年级``, ``高中一年级``, ``初中二年级``, ``7``.
"""

from __future__ import annotations

import re
import unicodedata

_NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_NAMES = {1: "一年级", 2: "二年级", 3: "三年级", 4: "四年级", 5: "五年级", 6: "六年级",
          7: "七年级", 8: "八年级", 9: "九年级", 10: "高一", 11: "高二", 12: "高三"}  # fmt: skip


def grade_name(level: int) -> str:
    """Display name for a grade level, e.g. 7 → ``七年级``, 10 → ``高一``."""
    return _NAMES[level]


def _number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if len(text) == 2 and text[0] == "十" and text[1] in _NUMERALS:
        return 10 + _NUMERALS[text[1]]
    return _NUMERALS.get(text)


def parse_grade(value: object) -> int:
    """Return the grade level 1–12.

    :raises ValueError: text that names no grade.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        level = int(value)
    else:
        text = unicodedata.normalize("NFKC", str(value or "")).strip().replace(" ", "")
        level = _parse_text(text)
    if not 1 <= level <= 12:
        raise ValueError(f"grade {value!r} is outside 1–12")
    return level


def _parse_text(text: str) -> int:
    patterns = [
        (r"^(?:高中|高)([一二三1-3])(?:年级)?$", 9),
        (r"^(?:初中|初)([一二三1-3])(?:年级)?$", 6),
        (r"^(?:小学)?([一二三四五六1-6])年级$", 0),
        (r"^([七八九]|[7-9])年级$", 0),
        (r"^(1[0-2]|[1-9])$", 0),
    ]
    for pattern, offset in patterns:
        match = re.match(pattern, text)
        if match:
            return offset + (_number(match.group(1)) or 0)
    raise ValueError(f"{text!r} is not a grade (e.g. 七年级, 初一, 高二, 7)")
