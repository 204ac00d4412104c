"""The back-office home page (首页): the user's roles, numbers for their whole scope, and
the open warnings they may see individually.

Numbers (students, screened, open warnings by level, open cases, escalated
warnings) count over every student under the user's org units, escalated or
not (:func:`xinshu.scoping.scope_aggregate`; roles.md: aggregates for the whole
scope, no names). Names appear only in the list of open warnings, which goes
through :func:`xinshu.scoping.scope_query` (a district administrator sees there
only escalated students) and is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from flask_admin import AdminIndexView, expose
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from xinshu.admin.access import audit_read, logged_in_user
from xinshu.admin.base import AccessMixin
from xinshu.admin.formatting import ROLE_LABELS, level_badge
from xinshu.models import OPEN_CASE_STATES, Case, Response, RiskWarning, Student, User
from xinshu.scoping import scope_aggregate, scope_query

#: Open warnings listed by name on the home page.
ATTENTION_LIMIT = 20


@dataclass
class ScopeCounts:
    """Aggregate numbers of one user's whole scope (no rows, no names)."""

    students: int = 0
    screened: int = 0
    warnings_by_level: dict[int, int] = field(default_factory=dict)
    open_cases: int = 0
    escalated: int = 0

    @property
    def open_warnings(self) -> int:
        return sum(self.warnings_by_level.values())


def scope_counts(session: Session, user: User | None) -> ScopeCounts:
    """Count the user's whole scope: enrolled students, students with a response, open
    warnings by level, open cases, open warnings escalated beyond the school."""

    def count(stmt, model) -> int:
        return int(session.scalar(scope_aggregate(stmt, model, user)) or 0)

    open_warning = RiskWarning.status == "open"
    by_level = scope_aggregate(
        select(RiskWarning.level, func.count()).where(open_warning).group_by(RiskWarning.level), RiskWarning, user
    )
    return ScopeCounts(
        students=count(select(func.count()).select_from(Student).where(Student.status == "enrolled"), Student),
        screened=count(select(func.count(distinct(Response.student_id))), Response),
        warnings_by_level={int(level): int(n) for level, n in session.execute(by_level)},
        open_cases=count(select(func.count()).select_from(Case).where(Case.state.in_(OPEN_CASE_STATES)), Case),
        escalated=count(
            select(func.count()).select_from(RiskWarning).where(open_warning, RiskWarning.escalated_to != "school"),
            RiskWarning,
        ),
    )


def attention_list(session: Session, user: User | None, limit: int = ATTENTION_LIMIT) -> list[RiskWarning]:
    """The open warnings the user may see individually, highest level and newest first."""
    stmt = (
        select(RiskWarning)
        .where(RiskWarning.status == "open")
        .order_by(RiskWarning.level.desc(), RiskWarning.created_at.desc(), RiskWarning.id.desc())
        .limit(limit)
    )
    return list(session.scalars(scope_query(stmt, RiskWarning, user)))


class SecureIndexView(AccessMixin, AdminIndexView):
    """The back-office home page; requires login."""

    @expose()
    def index(self):
        user = logged_in_user()
        session = current_app.extensions["xinshu"].db.session
        counts = scope_counts(session, user)
        warnings = attention_list(session, user)
        if warnings:
            audit_read("read", "warning", "", page="home", ids=[w.id for w in warnings])
        levels = current_app.extensions["xinshu"].declarations.levels.levels
        return self.render(
            self._template,
            role_labels=ROLE_LABELS,
            counts=counts,
            levels=levels,
            warnings=warnings,
            level_badge=level_badge,
        )
