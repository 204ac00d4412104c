"""The one place that decides which rows a user may list or open.

Every query that lists or opens students, responses, warnings, cases or
notifications goes through :func:`scope_query`. A user sees rows under the
org units of their role assignments (a district admin sees every school of the
district, including one added later, because scope is a path prefix). A user
with no assignment sees nothing: deny by default (security.md P1, A4).
"""

from __future__ import annotations

from sqlalchemy import Select, false, or_, select
from sqlalchemy.orm import aliased

from xinshu.models import Case, InboxMessage, Notification, OrgUnit, Response, RiskWarning, Score, Student, User

SCOPED_MODELS = (Student, Response, Score, RiskWarning, Case, Notification, InboxMessage, OrgUnit)


def scope_prefixes(user: User | None) -> list[str]:
    """Org-unit path prefixes the user may see (empty: nothing)."""
    if user is None or not getattr(user, "is_active", False):
        return []
    return sorted({assignment.org_unit.path for assignment in user.roles if assignment.org_unit is not None})


def scope_query(stmt: Select, model: type, user: User | None) -> Select:
    """Restrict ``stmt`` (a ``select`` over ``model``) to the user's org units.

    :raises TypeError: ``model`` is not a scoped model (add it here first).
    """
    prefixes = scope_prefixes(user)
    if not prefixes:
        return stmt.where(false())
    if model is OrgUnit:
        return stmt.where(_under(OrgUnit.path, prefixes))
    if model in (Notification, InboxMessage):
        unit = aliased(OrgUnit)
        return stmt.join(unit, unit.id == model.org_unit_id).where(_under(unit.path, prefixes))
    visible = _visible_students(prefixes)
    if model is Student:
        return stmt.where(Student.id.in_(visible))
    if model is Score:
        return stmt.where(Score.response_id.in_(select(Response.id).where(Response.student_id.in_(visible))))
    if model in (Response, RiskWarning, Case):
        return stmt.where(model.student_id.in_(visible))
    raise TypeError(f"{model.__name__} is not scoped; add it to xinshu.scoping")


def _visible_students(prefixes: list[str]) -> Select:
    unit = aliased(OrgUnit)
    return select(Student.id).join(unit, unit.id == Student.class_id).where(_under(unit.path, prefixes))


def _under(column, prefixes: list[str]):
    return or_(*[column.startswith(prefix, autoescape=True) for prefix in prefixes])
