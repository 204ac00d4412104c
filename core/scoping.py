"""The one place that decides which rows a user may list or open.

Every query that lists or opens students, responses, warnings, cases, their
case records or notifications goes through :func:`scope_query`. The rules are
those of ``docs/security.md (roles table)`` (capabilities in :mod:`xinshu.permissions`):

* school and class roles see the students under the org units of their role
  assignments (scope is a path prefix, so a unit added later is included);
* district and bureau administrators see individually only the students with a
  warning escalated to their level (district: ``district`` or ``city``; bureau:
  ``city``), and those students' responses, warnings and cases;
* a row is visible only when the user holds, for its student, the capability
  the row carries (:data:`MODEL_CAPABILITY`): a class teacher sees a student's
  warning (``level``) but not the student's responses (``results``); interviews
  need ``notes``. Break-glass access is per record and is checked by the pages
  that open one record (:func:`xinshu.permissions.capabilities_for`);
* notifications and inbox messages are addressed to an org unit and are
  visible under the user's org units;
* a user with no assignment sees nothing: deny by default (security.md P1, A4).

Aggregates (counts by level, coverage) use :func:`scope_aggregate`, which
counts over the whole scope without the escalation rule and must never be
used to list rows.
"""

from __future__ import annotations

from sqlalchemy import Select, false, or_, select
from sqlalchemy.orm import aliased

from xinshu.models import (
    Case,
    CaseEvent,
    DataRequest,
    Enrolment,
    GuardianConsent,
    InboxMessage,
    Interview,
    Notification,
    OrgUnit,
    ParentContact,
    PlanTask,
    Referral,
    Response,
    RiskWarning,
    Score,
    Student,
    User,
)
from xinshu.permissions import assignments, students_in_scope, students_with

#: Rows that belong to one student (``student_id``) and the capability each needs.
STUDENT_OWNED: dict[type, str] = {
    Response: "results",
    RiskWarning: "level",
    Case: "level",
    GuardianConsent: "identity",
    DataRequest: "identity",
    Enrolment: "identity",
}
#: Rows that belong to one case (``case_id``) and the capability each needs.
CASE_OWNED: dict[type, str] = {
    PlanTask: "level",
    CaseEvent: "level",
    Referral: "level",
    ParentContact: "level",
    Interview: "notes",
}
#: Rows addressed to an org unit (``org_unit_id``).
UNIT_OWNED = (Notification, InboxMessage)
#: The capability a row of each student-related model needs (see :mod:`xinshu.permissions`).
MODEL_CAPABILITY: dict[type, str] = {Student: "identity", Score: "results", **STUDENT_OWNED, **CASE_OWNED}

SCOPED_MODELS = (Student, Score, *STUDENT_OWNED, *CASE_OWNED, *UNIT_OWNED, OrgUnit)


def scope_prefixes(user: User | None) -> list[str]:
    """Org-unit path prefixes of the user's assignments (empty: nothing)."""
    return sorted({assignment.org_unit.path for assignment in assignments(user)})


def scope_query(stmt: Select, model: type, user: User | None) -> Select:
    """Restrict ``stmt`` (a ``select`` over ``model``) to the rows the user may see.

    :raises TypeError: ``model`` is not a scoped model (add it here first).
    """
    if model is OrgUnit:
        prefixes = scope_prefixes(user)
        return stmt.where(_under(OrgUnit.path, prefixes)) if prefixes else stmt.where(false())
    if model in UNIT_OWNED:
        return _by_unit(stmt, model, user)
    if model not in MODEL_CAPABILITY:
        raise TypeError(f"{model.__name__} is not scoped; add it to xinshu.scoping")
    return _by_student(stmt, model, students_with(user, MODEL_CAPABILITY[model]))


def scope_aggregate(stmt: Select, model: type, user: User | None) -> Select:
    """Restrict an *aggregate* ``stmt`` over ``model`` to the user's whole scope.

    Counts over every student under the user's org units, escalated or not, for
    dashboards (roles.md: aggregates are visible to every role for its whole
    scope, without names). Use the result for ``count``/``group_by`` only, never
    to list or open rows: that is :func:`scope_query`.

    :raises TypeError: ``model`` is not a student-related model.
    """
    if model not in MODEL_CAPABILITY:
        raise TypeError(f"{model.__name__} has no aggregate scope; add it to xinshu.scoping")
    return _by_student(stmt, model, students_in_scope(user))


def _by_student(stmt: Select, model: type, visible: Select) -> Select:
    if model is Student:
        return stmt.where(Student.id.in_(visible))
    if model is Score:
        return stmt.where(Score.response_id.in_(select(Response.id).where(Response.student_id.in_(visible))))
    if model in STUDENT_OWNED:
        return stmt.where(model.student_id.in_(visible))
    return stmt.where(model.case_id.in_(select(Case.id).where(Case.student_id.in_(visible))))


def _by_unit(stmt: Select, model: type, user: User | None) -> Select:
    prefixes = scope_prefixes(user)
    if not prefixes:
        return stmt.where(false())
    unit = aliased(OrgUnit)
    return stmt.join(unit, unit.id == model.org_unit_id).where(_under(unit.path, prefixes))


def _under(column, prefixes: list[str]):
    return or_(*[column.startswith(prefix, autoescape=True) for prefix in prefixes])
