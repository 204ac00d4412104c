"""What the privacy pages reach: the org units where a user holds given roles, the students
under them, one student found by reference among them, and how many rows a privacy list shows.

Used by the campaign, consent, data-request and research-export pages
(:mod:`xinshu.admin.campaign_view`, :mod:`xinshu.admin.data_request_view`,
:mod:`xinshu.admin.research_export_view`). Deny by default: no role, no org unit, no student.
"""

from __future__ import annotations

from flask_babel import gettext as _
from sqlalchemy import false, or_, select
from sqlalchemy.orm import aliased

from xinshu.admin.access import MAX_ID
from xinshu.errors import XinshuError
from xinshu.models import OrgUnit, Student, User

#: The most rows a privacy list page shows.
LIST_LIMIT = 500


def role_prefixes(user: User | None, roles: tuple[str, ...]) -> list[str]:
    """Org-unit paths where ``user`` holds one of ``roles`` (empty: none, deny)."""
    if user is None or not user.is_active:
        return []
    return sorted({a.org_unit.path for a in user.roles if a.role in roles and a.org_unit is not None})


def students_under(prefixes: list[str], unit: OrgUnit | None = None):
    """A ``select`` of ids of students whose class lies under one of ``prefixes`` (and under ``unit``)."""
    if not prefixes:
        return select(Student.id).where(false())
    klass = aliased(OrgUnit)
    stmt = (
        select(Student.id)
        .join(klass, klass.id == Student.class_id)
        .where(or_(*[klass.path.startswith(p, autoescape=True) for p in prefixes]))
    )
    if unit is not None:
        stmt = stmt.where(klass.path.startswith(unit.path, autoescape=True))
    return stmt


def find_student(session, ref: str, prefixes: list[str]) -> Student:
    """The student named by system id, 学籍号 or 校内学号 among those under ``prefixes``.

    :raises XinshuError: none, or several (a 校内学号 used in two schools).
    """
    ref = (ref or "").strip()
    if not ref:
        raise XinshuError(_("请填写学生编号"))
    conditions = [Student.student_number == ref, Student.school_student_no == ref]
    if ref.isdigit() and 0 < int(ref) <= MAX_ID:
        conditions.append(Student.id == int(ref))
    found = list(session.scalars(select(Student).where(or_(*conditions), Student.id.in_(students_under(prefixes)))))
    if not found:
        raise XinshuError(_("在您负责的范围内没有编号为 %(ref)s 的学生", ref=ref))
    if len(found) > 1:
        raise XinshuError(_("编号 %(ref)s 对应多名学生，请改用系统编号", ref=ref))
    return found[0]
