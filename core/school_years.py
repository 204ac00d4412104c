"""School years (学年) and school stages (学段).

A school year is written ``2026-2027`` and starts on 1 September, Asia/Shanghai
time (school-context.md §1.5). The stages are 小学 (grades 1–6), 初中 (7–9) and
高中 (10–12). A student's ``entry_year`` is the calendar year in which the
school year that made them start their current stage began: a student entering
初中 in September 2026 has ``entry_year`` 2026, is in grade 7 in 2026-2027 and
in grade 8 in 2027-2028. Annual promotion is therefore a computation from the
entry year, not a counter (see :mod:`xinshu.rollover`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from flask_babel import gettext as _

from xinshu.errors import XinshuError

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
#: Month and day on which a school year starts (Asia/Shanghai).
YEAR_START = (9, 1)
_YEAR = re.compile(r"^(\d{4})-(\d{4})$")


@dataclass(frozen=True)
class Stage:
    """A school stage (学段): its name and first and last grade levels."""

    name: str
    first: int
    last: int


STAGES = (Stage("小学", 1, 6), Stage("初中", 7, 9), Stage("高中", 10, 12))


def stage_of(grade: int) -> Stage:
    """The stage holding grade level ``grade`` (1–12).

    :raises XinshuError: ``grade`` is outside 1–12.
    """
    for stage in STAGES:
        if stage.first <= grade <= stage.last:
            return stage
    raise XinshuError(_("年级 %(grade)s 不在 1–12 之间", grade=grade))


def next_stage(stage: Stage) -> Stage | None:
    """The stage after ``stage`` (None after 高中)."""
    index = STAGES.index(stage)
    return STAGES[index + 1] if index + 1 < len(STAGES) else None


def parse_school_year(text: str) -> int:
    """The starting calendar year of a school year written ``2027-2028``.

    :raises XinshuError: not two consecutive four-digit years joined by ``-``.
    """
    match = _YEAR.match((text or "").strip())
    if not match or int(match.group(2)) != int(match.group(1)) + 1 or not 2000 <= int(match.group(1)) <= 2200:
        raise XinshuError(_("学年“%(value)s”格式错误，应为如 2027-2028 的两个相邻年份", value=text))
    return int(match.group(1))


def school_year_label(start: int) -> str:
    """``2027`` → ``2027-2028``."""
    return f"{start}-{start + 1}"


def school_year_of(moment: dt.datetime | None = None) -> str:
    """The school year in progress at ``moment`` (naive UTC; default now).

    1 September 00:00 Beijing time starts the new year, so 2027-08-31T16:00Z
    (= 1 September 00:00 +08:00) is already in ``2027-2028``.
    """
    moment = moment or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    local = moment.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ).date()
    start = local.year if (local.month, local.day) >= YEAR_START else local.year - 1
    return school_year_label(start)


def school_year_start(year: str) -> dt.datetime:
    """When ``year`` (``2027-2028``) starts, as naive UTC (31 August 16:00 UTC)."""
    start = dt.datetime(parse_school_year(year), *YEAR_START, tzinfo=CHINA_TZ)
    return start.astimezone(dt.UTC).replace(tzinfo=None)


def entry_year_for(grade: int, year: str) -> int:
    """The entry year of a student in grade ``grade`` during school year ``year``.

    Grade 8 in ``2027-2028`` entered 初中 (grade 7) in 2026.
    """
    return parse_school_year(year) - (grade - stage_of(grade).first)


def grade_for(entry_year: int, stage: Stage, year: str) -> int:
    """The grade (possibly beyond ``stage.last``) of a student who entered ``stage``
    in ``entry_year``, during school year ``year``."""
    return stage.first + parse_school_year(year) - entry_year
