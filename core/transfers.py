"""Transfers (转学) between two schools of the city, keeping the student's whole history.

The student keeps their row (same id), so responses, scores, warnings, level
history, reports and cases stay linked to them. What changes:

* the student gets the new school and class (and the grade of that class;
  ``entry_year`` is recomputed when the grade differs). A student who had
  graduated from or left the old school is enrolled again. The old school's
  校内学号 means nothing at the new school: it is replaced by the number given,
  or cleared;
* the enrolment history closes the old school's row (``transfer``) and opens
  the new school's (``transfer``);
* visibility follows the class (:mod:`xinshu.scoping` scopes students and
  everything linked to them by the class's org-unit path), so the new
  school's staff see the student's responses, warnings and cases, and the old
  school's staff no longer do;
* open cases move with the student: ``Case.school_id`` becomes the new school,
  the case keeps its state and plan, its owner (the old school's psychology
  teacher, who can no longer see it) is cleared for the new school to take
  over, and a timeline note records the transfer. The workflow's
  ``transferred`` state (转出) is not used here: it ends a case handed over to
  someone outside xinshu (e.g. a move to another city) and cancels its tasks,
  which would stop the intervention for a student at risk. Finished cases stay
  as they were (their ``school_id`` records where they were handled).

Who may transfer: a ``district_admin`` whose district contains both schools,
or a ``bureau_admin`` whose city does (one role assignment covering both).
Every transfer is audited (action ``update``, object type ``roster``, the new
school's id; the student, schools, class, moved cases and the reason).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.class_units import grade_of_class, school_of
from xinshu.errors import XinshuError
from xinshu.models import OPEN_CASE_STATES, Case, Enrolment, OrgUnit, Student, User, utcnow
from xinshu.roster_preview import roster_school_year
from xinshu.rosters import close_enrolment, open_enrolment
from xinshu.school_years import entry_year_for
from xinshu.workflow import record_event

#: Roles that may transfer students between the schools under their org unit.
TRANSFER_ROLES = ("district_admin", "bureau_admin")
MAX_REASON = 500


class TransferDenied(XinshuError, PermissionError):
    """The actor may not transfer students between these two schools."""


class NotFound(XinshuError):
    """No student or class unit answers to the reference given."""


@dataclass
class TransferResult:
    """What a transfer did (ids only)."""

    student_id: int
    from_school_id: int
    to_school_id: int
    to_class_id: int
    grade_level: int
    school_year: str
    cases_moved: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "student_id": self.student_id,
            "from_school_id": self.from_school_id,
            "to_school_id": self.to_school_id,
            "to_class_id": self.to_class_id,
            "grade_level": self.grade_level,
            "school_year": self.school_year,
            "cases_moved": list(self.cases_moved),
        }


def may_transfer(user: User | None, from_school: OrgUnit, to_school: OrgUnit) -> bool:
    """True when one of the user's :data:`TRANSFER_ROLES` assignments covers both schools."""
    if user is None or not user.is_active:
        return False
    return any(
        a.role in TRANSFER_ROLES
        and a.org_unit is not None
        and from_school.path.startswith(a.org_unit.path)
        and to_school.path.startswith(a.org_unit.path)
        for a in user.roles
    )


def find_student(session: Session, ref: str) -> Student:
    """The student with 学籍号 ``ref``, or with id ``ref`` (``12`` or ``#12``).

    :raises NotFound: no such student.
    """
    ref = (ref or "").strip()
    student = session.scalar(select(Student).where(Student.student_number == ref)) if ref else None
    digits = ref.lstrip("#")
    if student is None and digits.isdigit() and int(digits) < 2**31:
        student = session.get(Student, int(digits))
    if student is None:
        raise NotFound(_("找不到该学生（按学籍号或学生编号查找）"))  # the reference may hold an ID number: not echoed
    return student


def find_class(session: Session, code: str) -> OrgUnit:
    """The class unit with ``code``.

    :raises NotFound: no class unit has that code.
    """
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == (code or "").strip()))
    if unit is None or unit.kind != "class":
        raise NotFound(_("找不到代码为 %(code)s 的班级", code=code))
    return unit


def transfer_student(
    session: Session,
    student: Student,
    to_class: OrgUnit,
    actor: User,
    reason: str,
    *,
    school_student_no: str | None = None,
    now: dt.datetime | None = None,
) -> TransferResult:
    """Move ``student`` into ``to_class`` of another school, keeping their history.

    The caller owns the transaction; the changes and their audit row are added to ``session``.

    :param actor: the user doing it (see :func:`may_transfer`).
    :param reason: why (required, at most :data:`MAX_REASON` characters); audited and noted on moved cases.
    :param school_student_no: the student's 校内学号 at the new school (default: none).
    :raises TransferDenied: the actor may not transfer between the two schools.
    :raises XinshuError: same school, an erased student, a class not under a
        school grade, a 校内学号 already used at the new school, no reason, or a
        student left with no identifier at all.
    """
    reason = (reason or "").strip()
    if not reason:
        raise XinshuError(_("请填写转学原因"))
    if len(reason) > MAX_REASON:
        raise XinshuError(_("转学原因最多 %(n)s 字", n=MAX_REASON))
    from_school = session.get(OrgUnit, student.school_id)
    to_school = school_of(session, to_class)
    _lock(session, from_school, to_school)
    if not may_transfer(actor, from_school, to_school):
        raise TransferDenied(_("只有同时管辖两所学校的区管理员或市管理员可以办理转学"))
    grade = grade_of_class(to_class)
    number = _check(session, student, from_school, to_school, school_student_no)
    moment = now or utcnow()
    year = _transfer_year(session, student, to_school, moment)
    if grade != student.grade_level or student.entry_year is None:
        student.entry_year = entry_year_for(grade, year)
    close_enrolment(session, student, "transfer", moment)
    student.school_id, student.school = to_school.id, to_school
    student.class_id, student.class_unit = to_class.id, to_class
    student.grade_level, student.school_student_no = grade, number
    student.status, student.active = "enrolled", True
    session.flush()
    open_enrolment(session, student, "transfer", year, actor.username, moment)
    result = TransferResult(student.id, from_school.id, to_school.id, to_class.id, grade, year)
    result.cases_moved = _move_open_cases(session, student, from_school, to_school, actor.username, reason, moment)
    detail = {"operation": "transfer", **result.as_dict(), "reason": reason}
    audit.record(session, "update", "roster", to_school.id, detail=detail, actor=actor)
    session.flush()
    return result


def _transfer_year(session: Session, student: Student, to_school: OrgUnit, now: dt.datetime) -> str:
    """The school year of the new enrolment: the new school's (see
    :func:`xinshu.roster_preview.roster_school_year`), or the student's current one if later."""
    current = session.scalar(
        select(func.max(Enrolment.school_year)).where(Enrolment.student_id == student.id, Enrolment.ended_at.is_(None))
    )
    year = roster_school_year(session, to_school, now)
    return max(year, current) if current else year


def _lock(session: Session, *schools: OrgUnit) -> None:
    """Lock both schools' rows (in id order, so two transfers cannot deadlock)."""
    ids = sorted({school.id for school in schools})
    session.scalars(select(OrgUnit.id).where(OrgUnit.id.in_(ids)).order_by(OrgUnit.id).with_for_update()).all()


def _check(
    session: Session, student: Student, from_school: OrgUnit, to_school: OrgUnit, number: str | None
) -> str | None:
    """Refuse impossible transfers; returns the 校内学号 the student gets at the new school."""
    if to_school.id == from_school.id:
        raise XinshuError(_("学生已在该校；同校调班请通过名册导入"))
    if student.status == "erased":
        raise XinshuError(_("该学生的数据已应申请删除，不能转学"))
    number = (number or "").strip() or None
    if number is not None:
        if len(number) > 32:
            raise XinshuError(_("校内学号超过32个字符"))
        taken = select(Student.id).where(Student.school_id == to_school.id, Student.school_student_no == number)
        if session.scalar(taken) is not None:
            raise XinshuError(_("新学校已有学生使用校内学号 %(no)s", no=number))
    if number is None and not student.id_number and not student.student_number:
        raise XinshuError(_("该学生没有身份证号和学籍号，请填写其在新学校的校内学号"))
    return number


def _move_open_cases(
    session: Session, student: Student, from_school: OrgUnit, to_school: OrgUnit, actor: str, reason: str, now
) -> list[int]:
    """Open cases follow the student to the new school, with a timeline note; returns their ids."""
    cases = session.scalars(
        select(Case).where(Case.student_id == student.id, Case.state.in_(OPEN_CASE_STATES)).order_by(Case.id)
    ).all()
    for case in cases:
        previous_owner = case.owner
        case.school_id, case.school = to_school.id, to_school
        case.owner, case.owner_role = None, "psychology_teacher"
        # Stored in the case timeline: written in Chinese whatever the interface language.
        note = (
            f"学生转学：由 {from_school.name} 转至 {to_school.name}，个案随学生移交新学校继续处置（状态不变）。"
            f"原负责人 {previous_owner or '—'} 不再负责，请新学校心理教师接手。转学原因：{reason}"
        )
        record_event(session, case, "note", actor, note, at=now)
    return [case.id for case in cases]
