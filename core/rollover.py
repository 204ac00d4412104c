"""School-year rollover (升级): every enrolled student of a school moves up for a new school year.

The grade is computed, not counted: a student who entered their stage (学段:
小学 1–6, 初中 7–9, 高中 10–12) in ``entry_year`` is in grade
``first grade of the stage + (start year of the school year − entry_year)``
(:mod:`xinshu.school_years`). So running the rollover for the same school and
year twice changes nothing the second time, and a school that skipped a year
catches up. A student whose entry year is unknown gets it from their grade and
the school year of their current enrolment row (else the year before).

Where a student goes:

* still inside their stage → the class with the same class number in the new
  grade (``七年级3班`` → ``八年级3班``), created under the school when missing,
  as the roster import does;
* past the last grade of their stage → if the school also teaches the next
  stage (it has a grade unit or students in that stage's first grade: a
  九年一贯制 school with grades 1–9, a 完全中学 with 7–12), into the next stage's
  first grade with a new entry year; otherwise the student graduates: status
  ``graduated``, ``active`` False, the enrolment row closed with ``graduated``.
  So a primary school graduates grade 6, a junior school grade 9, a 九年一贯制
  school grade 9 (its grade 6 goes on to grade 7), and every school grade 12.
  五四制 regions (小学 5 years, 初中 4) are not supported yet.

A promoted student's enrolment row is closed (``rollover``) and a new one
opened (``rollover``, the new school year). A rollover to a year before the
school's current enrolment year is refused. Every run that is not a dry run is
recorded in the audit log (action ``update``, object type ``roster``, the
school's id, the counts). A dry run writes nothing and returns the counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.class_units import ClassUnits, class_code, class_number
from xinshu.errors import XinshuError
from xinshu.models import Enrolment, OrgUnit, Student, User, utcnow
from xinshu.roster_preview import latest_enrolment_year
from xinshu.rosters import close_enrolment, get_school, open_enrolment
from xinshu.school_years import (
    Stage,
    entry_year_for,
    grade_for,
    next_stage,
    parse_school_year,
    school_year_label,
    stage_of,
)


@dataclass
class RolloverResult:
    """Counts of a rollover (or of a dry run: what it would do).

    :ivar promoted: students moved to a higher grade (within or into the next stage).
    :ivar graduated: students who finished the school's last stage.
    :ivar unchanged: students already in the grade the new year gives them.
    :ivar skipped: ids of students whose recorded entry year puts them in a lower grade (left as they are).
    :ivar classes_created: class units created (dry run: that would be created).
    """

    school: str
    school_year: str
    dry_run: bool
    promoted: int = 0
    graduated: int = 0
    unchanged: int = 0
    classes_created: int = 0
    skipped: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts only (no personal data)."""
        return {
            "school": self.school,
            "school_year": self.school_year,
            "dry_run": self.dry_run,
            "promoted": self.promoted,
            "graduated": self.graduated,
            "unchanged": self.unchanged,
            "skipped": len(self.skipped),
            "classes_created": self.classes_created,
        }


@dataclass(frozen=True)
class _Step:
    """One student's move: ``kind`` is ``promote``, ``graduate``, ``unchanged`` or ``skip``."""

    kind: str
    grade: int = 0
    entry_year: int = 0


def rollover(
    session: Session,
    school_code: str,
    school_year: str,
    *,
    actor: User | str = "system",
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> RolloverResult:
    """Move every enrolled student of the school into ``school_year`` (``2027-2028``).

    The caller owns the transaction (a dry run adds nothing to it).

    :param actor: who runs it (recorded on enrolment rows and in the audit log).
    :raises XinshuError: unknown school, a badly written year, a year before the
        school's current one, or a class unit whose class number cannot be read.
    """
    start = parse_school_year(school_year)
    school = get_school(session, school_code, lock=not dry_run)
    latest = latest_enrolment_year(session, school)
    if latest and latest > school_year:
        raise XinshuError(
            _("该校已在 %(latest)s 学年，不能升级到更早的 %(year)s 学年", latest=latest, year=school_year)
        )
    students = list(
        session.scalars(
            select(Student)
            .where(Student.school_id == school.id, Student.status == "enrolled", Student.active.is_(True))
            .order_by(Student.id)
        )
    )
    units = ClassUnits(session, school)
    covered = units.grades() | {s.grade_level for s in students}
    years = _enrolment_years(session, [s.id for s in students])
    previous = school_year_label(start - 1)
    result = RolloverResult(school=school.code, school_year=school_year, dry_run=dry_run)
    would_create: set[str] = set()
    name = (actor.username if isinstance(actor, User) else str(actor or "system"))[:80]
    moment = now or utcnow()
    for student in students:
        step = _step(student, covered, school_year, years.get(student.id, previous))
        if step.kind == "skip":
            result.skipped.append(student.id)
        elif step.kind == "unchanged":
            result.unchanged += 1
            if not dry_run and student.entry_year is None:
                student.entry_year = step.entry_year
        elif step.kind == "graduate":
            result.graduated += 1
            if not dry_run:
                _graduate(session, student, moment)
        else:
            result.promoted += 1
            number = class_number(student.class_unit)
            if dry_run:
                if units.find(step.grade, number) is None:
                    would_create.add(class_code(school.code, step.grade, number))
            else:
                _promote(session, student, units.get(step.grade, number), step, school_year, name, moment)
    result.classes_created = len(would_create) if dry_run else units.created
    if not dry_run:
        session.flush()
        detail = {"operation": "rollover", **result.as_dict()}
        audit.record(session, "update", "roster", school.id, detail=detail, actor=actor or name)
        session.flush()
    return result


def _enrolment_years(session: Session, student_ids: list[int]) -> dict[int, str]:
    """The school year of each student's open enrolment row (students without one are absent)."""
    years: dict[int, str] = {}
    for start in range(0, len(student_ids), 500):
        chunk = student_ids[start : start + 500]
        stmt = select(Enrolment.student_id, Enrolment.school_year).where(
            Enrolment.student_id.in_(chunk), Enrolment.ended_at.is_(None)
        )
        for student_id, year in session.execute(stmt):
            years[student_id] = max(year, years.get(student_id, year))
    return years


def _step(student: Student, covered: set[int], school_year: str, known_year: str) -> _Step:
    """Where ``student`` goes in ``school_year``; ``known_year`` is the year their grade was recorded for."""
    stage = stage_of(student.grade_level)
    entry = student.entry_year if student.entry_year is not None else entry_year_for(student.grade_level, known_year)
    grade = grade_for(entry, stage, school_year)
    if grade == student.grade_level:
        return _Step("unchanged", grade, entry)
    if grade < student.grade_level:
        return _Step("skip")
    if grade <= stage.last:
        return _Step("promote", grade, entry)
    return _next_stage_step(stage, grade, covered, school_year)


def _next_stage_step(stage: Stage, grade: int, covered: set[int], school_year: str) -> _Step:
    """A student past ``stage``'s last grade: on into the school's next stage, or graduated."""
    following = next_stage(stage)
    if following is None or following.first not in covered:
        return _Step("graduate")
    new_grade = following.first + (grade - stage.last - 1)
    if new_grade > following.last:
        return _Step("graduate")
    return _Step("promote", new_grade, entry_year_for(new_grade, school_year))


def _promote(
    session: Session, student: Student, unit: OrgUnit, step: _Step, year: str, actor: str, now: dt.datetime
) -> None:
    student.grade_level, student.entry_year = step.grade, step.entry_year
    student.class_id, student.class_unit = unit.id, unit
    close_enrolment(session, student, "rollover", now)
    open_enrolment(session, student, "rollover", year, actor, now)


def _graduate(session: Session, student: Student, now: dt.datetime) -> None:
    student.status, student.active = "graduated", False
    close_enrolment(session, student, "graduated", now)
