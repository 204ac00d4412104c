"""Grade and class org units of a school, named by a fixed code convention.

Roster imports and the school-year rollover create the grade unit
``<school>-G07`` (七年级) and the class unit ``<school>-G07-C03`` (七年级3班)
under a school when they are first needed. Class units made by hand (any
code) are recognised by the class number in their code or name.
"""

from __future__ import annotations

import re

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.errors import XinshuError
from xinshu.grades import grade_name, parse_grade
from xinshu.models import OrgUnit
from xinshu.orgs import add_org_unit

_CLASS_CODE = re.compile(r"-C(\d{1,2})$")
_GRADE_CODE = re.compile(r"-G(\d{2})$")


def grade_code(school_code: str, grade: int) -> str:
    """Code of a school's grade unit: ``S1`` and 7 → ``S1-G07``."""
    return f"{school_code}-G{grade:02d}"


def class_code(school_code: str, grade: int, number: int) -> str:
    """Code of a school's class unit: ``S1``, 7 and 3 → ``S1-G07-C03``."""
    return f"{grade_code(school_code, grade)}-C{number:02d}"


def class_name(grade: int, number: int) -> str:
    """Display name of a class: 7 and 3 → ``七年级3班``."""
    return f"{grade_name(grade)}{number}班"


def class_number(unit: OrgUnit) -> int:
    """The class number of a class unit, from its code (``…-C03``) or its name (``七年级3班``).

    :raises XinshuError: neither names a class number.
    """
    match = _CLASS_CODE.search(unit.code)
    if match:
        return int(match.group(1))
    digits = re.findall(r"\d+", unit.name.split("年级")[-1])
    if digits and 1 <= int(digits[-1]) <= 99:
        return int(digits[-1])
    raise XinshuError(_("班级 %(code)s 的代码和名称中都没有班号", code=unit.code))


def grade_of_class(unit: OrgUnit) -> int:
    """The grade level of a class unit, from its grade unit's code (``…-G07``) or name (``七年级``).

    :raises XinshuError: the class has no grade unit above it, or it names no grade.
    """
    grade_unit = unit.parent
    if unit.kind != "class" or grade_unit is None or grade_unit.kind != "grade":
        raise XinshuError(_("%(code)s 不是年级下的班级", code=unit.code))
    level = _grade_level(grade_unit)
    if level is None:
        raise XinshuError(_("年级 %(code)s 的代码和名称都不是年级", code=grade_unit.code))
    return level


def _grade_level(grade_unit: OrgUnit) -> int | None:
    match = _GRADE_CODE.search(grade_unit.code)
    if match and 1 <= int(match.group(1)) <= 12:
        return int(match.group(1))
    try:
        return parse_grade(grade_unit.name)
    except ValueError:
        return None


def school_of(session: Session, unit: OrgUnit) -> OrgUnit:
    """The school unit above (or equal to) ``unit``.

    :raises XinshuError: ``unit`` is not under a school.
    """
    ids = [int(part) for part in unit.path.strip("/").split("/") if part]
    school = session.scalar(select(OrgUnit).where(OrgUnit.id.in_(ids), OrgUnit.kind == "school").limit(1))
    if school is None:
        raise XinshuError(_("%(code)s 不在任何学校之下", code=unit.code))
    return school


class ClassUnits:
    """Find, or create on demand, the grade and class units of one school.

    :ivar created: the number of class units created so far.
    """

    def __init__(self, session: Session, school: OrgUnit):
        self.session = session
        self.school = school
        self.created = 0
        units = session.scalars(select(OrgUnit).where(OrgUnit.path.startswith(school.path, autoescape=True)))
        self.by_code = {u.code: u for u in units}

    def find(self, grade: int, number: int) -> OrgUnit | None:
        """The class unit by the code convention, or None when it does not exist yet (read only)."""
        return self.by_code.get(class_code(self.school.code, grade, number))

    def get(self, grade: int, number: int) -> OrgUnit:
        """The class unit, creating it (and its grade unit) when missing (flushes)."""
        grade_unit = self._unit(grade_code(self.school.code, grade), grade_name(grade), "grade", self.school)
        return self._unit(class_code(self.school.code, grade, number), class_name(grade, number), "class", grade_unit)

    def grades(self) -> set[int]:
        """Grade levels the school has grade units for (by code ``…-G07`` or name ``七年级``)."""
        levels = set()
        for unit in self.by_code.values():
            if unit.kind == "grade":
                level = _grade_level(unit)
                if level is not None:
                    levels.add(level)
        return levels

    def _unit(self, code: str, name: str, kind: str, parent: OrgUnit) -> OrgUnit:
        unit = self.by_code.get(code)
        if unit is None:
            unit = add_org_unit(self.session, code, name, kind, parent)
            self.by_code[code] = unit
            self.created += kind == "class"
        return unit
