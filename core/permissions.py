"""What a user may see of one student: capabilities per record (minimum-necessary disclosure).

PIPL Art. 51 asks a processor of personal information to "合理确定个人信息处理的操作权限"
(set operating permissions reasonably), and minors' mental-health data are
sensitive personal information (Arts. 28, 31). xinshu therefore applies the
*minimum-necessary* rule of ``docs/security.md (roles table)`` (security.md P1, A5, A6): each
person sees of a student only what their job needs, and nothing without a role
over the student's class.

A capability names one kind of information or act (:data:`CAPABILITIES`):

``identity``
    the student as an individual: name, class, school student number.
``level``
    the current warning level and status, the case state.
``actions``
    the suggested actions for the user's own role (plan tasks whose
    ``owner_role`` is a role the user holds over the student).
``plan``
    the whole intervention plan (every task, the template).
``results``
    scores, T scores, percentiles, the fired rules and the values they read.
``answers``
    item-level answers of questionnaires.
``notes``
    interview notes, case notes, parent-ledger text, referral outcomes,
    reasons of level judgements.
``export_full`` / ``export_deidentified``
    list exports with identifiers, or de-identified (:mod:`xinshu.exports`).

Capabilities are computed **per record**: a user holding several role
assignments gets, for one student, the union of the capabilities of the
assignments whose scope covers that student (:func:`covering_roles`), never
the union of all roles applied to all scopes. An assignment covers a student
when the student's class lies under the assignment's org unit (a unit added
later is included: the test is a path prefix); district and bureau
administrators cover a student only when one of the student's warnings was
escalated to their level of the responsibility tree (:data:`ESCALATION_SCOPE`,
:func:`escalated_student_ids`), or when their role was notified about one of
the student's warnings (a :class:`~xinshu.models.Notification` row for that
role, e.g. ``levels.yaml`` notifies ``district_admin`` at level 3): a notice
always links to a page its recipient can open. A user with no assignment covers nobody.

Break-glass (:func:`record_break_glass`): a role may reach the capabilities of
:data:`BREAK_GLASS_CAPABILITIES` for one student by recording a reason of at
least :data:`MIN_REASON_CHARS` characters; an audit row
``break_glass/student/<id>`` is written first and the access lasts
:data:`BREAK_GLASS_WINDOW`. Exports are never granted by break-glass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, false, or_, select
from sqlalchemy.orm import Session, aliased, object_session

from xinshu.audit import break_glass_active, record_read
from xinshu.errors import XinshuError
from xinshu.models import AuditEvent, Notification, OrgUnit, RiskWarning, RoleAssignment, Student, User

CAPABILITIES = (
    "identity",
    "level",
    "actions",
    "plan",
    "results",
    "answers",
    "notes",
    "export_full",
    "export_deidentified",
)

_SCHOOL_LEADER = frozenset({"identity", "level", "actions", "plan", "results", "export_full"})
_ADMINISTRATOR = frozenset({"identity", "level", "plan", "results", "export_deidentified"})

#: Capabilities each role holds over a student its assignment covers (roles.md table).
ROLE_CAPABILITIES: Mapping[str, frozenset[str]] = {
    "bureau_admin": _ADMINISTRATOR,
    "district_admin": _ADMINISTRATOR,
    "principal": _SCHOOL_LEADER,
    "moral_education_director": _SCHOOL_LEADER,
    "psychology_teacher": _SCHOOL_LEADER | {"answers", "notes"},
    "class_teacher": frozenset({"identity", "level", "actions"}),
}

#: Capabilities a recorded break-glass reason adds for one student, for 60 minutes.
BREAK_GLASS_CAPABILITIES: Mapping[str, frozenset[str]] = {
    "bureau_admin": frozenset({"answers", "notes"}),
    "district_admin": frozenset({"answers", "notes"}),
    "principal": frozenset({"answers", "notes"}),
    "moral_education_director": frozenset({"answers", "notes"}),
    "psychology_teacher": frozenset(),
    "class_teacher": frozenset({"results", "answers", "notes"}),
}

#: Roles that see a student individually only after escalation (or a notice to the role):
#: role -> ``RiskWarning.escalated_to`` values.
ESCALATION_SCOPE: Mapping[str, tuple[str, ...]] = {
    "district_admin": ("district", "city"),
    "bureau_admin": ("city",),
}

#: Capabilities that allow an export (never reached by break-glass).
EXPORT_CAPABILITIES = ("export_full", "export_deidentified")

BREAK_GLASS_WINDOW = dt.timedelta(minutes=60)
MIN_REASON_CHARS = 5
MAX_REASON_CHARS = 1000


class AccessDenied(XinshuError):
    """The user holds no role that allows the requested access to this student."""


@dataclass(frozen=True)
class Access:
    """What one user may see of one student right now.

    :ivar roles: the roles whose assignment covers the student.
    :ivar capabilities: capabilities held now (break-glass included while active).
    :ivar break_glass: capabilities a break-glass reason would add (empty when none
        would, or when a break-glass is already active).
    :ivar break_glass_active: a break-glass reason for this student is active.
    """

    roles: frozenset[str]
    capabilities: frozenset[str]
    break_glass: frozenset[str]
    break_glass_active: bool

    def __contains__(self, capability: object) -> bool:
        return capability in self.capabilities


def assignments(user: User | None) -> list[RoleAssignment]:
    """The user's role assignments that count (none for None or an inactive user)."""
    if user is None or not getattr(user, "is_active", False):
        return []
    return [a for a in user.roles if a.org_unit is not None and a.role in ROLE_CAPABILITIES]


def escalated_student_ids(levels: Iterable[str], role: str | None = None) -> Select:
    """A ``select`` of ids of students with a warning escalated to one of ``levels``
    (``district``, ``city``), or, with ``role``, a warning that ``role`` was notified
    about (any channel or status), whatever the warning's status: once escalated or
    notified, that level shares responsibility for the student and follows the case."""
    condition = RiskWarning.escalated_to.in_(tuple(levels))
    if role is not None:
        notified = select(Notification.warning_id).where(Notification.role == role)
        condition = or_(condition, RiskWarning.id.in_(notified))
    return select(RiskWarning.student_id).where(condition)


def students_with(user: User | None, capability: str | None = None) -> Select:
    """A ``select`` of ids of the students for whom ``user`` holds ``capability``
    through a role (break-glass not included); ``None``: any capability (row visibility).

    Deny by default: no assignment, no rows.
    """
    groups: dict[str, set[str]] = {}
    for assignment in assignments(user):
        if capability is None or capability in ROLE_CAPABILITIES[assignment.role]:
            key = assignment.role if assignment.role in ESCALATION_SCOPE else ""
            groups.setdefault(key, set()).add(assignment.org_unit.path)
    if not groups:
        return select(Student.id).where(false())
    unit = aliased(OrgUnit)
    conditions = []
    for role, prefixes in sorted(groups.items()):
        under = _under(unit.path, prefixes)
        if role:
            escalated = escalated_student_ids(ESCALATION_SCOPE[role], role)
            conditions.append(and_(under, Student.id.in_(escalated)))
        else:
            conditions.append(under)
    return select(Student.id).join(unit, unit.id == Student.class_id).where(or_(*conditions))


def students_in_scope(user: User | None) -> Select:
    """A ``select`` of ids of every student under the user's org units, escalated or not.

    Only for aggregates (counts by level, coverage): every role sees the numbers of
    its whole scope, never the rows (roles.md, "Aggregates").
    """
    prefixes = {a.org_unit.path for a in assignments(user)}
    if not prefixes:
        return select(Student.id).where(false())
    unit = aliased(OrgUnit)
    return select(Student.id).join(unit, unit.id == Student.class_id).where(_under(unit.path, prefixes))


def _under(column: Any, prefixes: Iterable[str]):
    return or_(*[column.startswith(prefix, autoescape=True) for prefix in sorted(prefixes)])


def covering_roles(user: User | None, student: Student, session: Session | None = None) -> frozenset[str]:
    """The roles of the assignments whose scope covers ``student`` (escalation included)."""
    session = session or object_session(student)
    path = student.class_unit.path if student.class_unit is not None else None
    if not path:
        return frozenset()
    roles: set[str] = set()
    escalation: dict[str, bool] = {}
    for assignment in assignments(user):
        if not path.startswith(assignment.org_unit.path):
            continue
        role = assignment.role
        if role in ESCALATION_SCOPE:
            if role not in escalation:
                escalation[role] = _escalated(session, student.id, role)
            if not escalation[role]:
                continue
        roles.add(role)
    return frozenset(roles)


def _escalated(session: Session | None, student_id: int, role: str) -> bool:
    """True when a warning of the student was escalated to ``role``'s level or ``role`` was notified of one."""
    if session is None:
        return False
    stmt = escalated_student_ids(ESCALATION_SCOPE[role], role).where(RiskWarning.student_id == student_id)
    return session.scalar(stmt.limit(1)) is not None


def access_for(user: User | None, student: Student, session: Session | None = None) -> Access:
    """Everything :class:`Access` says for ``user`` and ``student`` (one or two queries)."""
    session = session or object_session(student)
    roles = covering_roles(user, student, session)
    held = frozenset().union(*(ROLE_CAPABILITIES[r] for r in roles))
    extra = frozenset().union(*(BREAK_GLASS_CAPABILITIES[r] for r in roles)) - held
    active = (
        bool(extra)
        and session is not None
        and break_glass_active(session, user, "student", student.id, BREAK_GLASS_WINDOW)
    )
    if active:
        return Access(roles, held | extra, frozenset(), True)
    return Access(roles, held, extra, False)


def capabilities_for(user: User | None, student: Student, session: Session | None = None) -> frozenset[str]:
    """The capabilities ``user`` holds for ``student`` now (an active break-glass included)."""
    return access_for(user, student, session).capabilities


def has_capability(user: User | None, student: Student, capability: str, session: Session | None = None) -> bool:
    """True when ``user`` holds ``capability`` for ``student`` now."""
    return capability in capabilities_for(user, student, session)


def may_export(user: User | None) -> bool:
    """True when the user holds, somewhere, a role that may export (full or de-identified)."""
    return any(ROLE_CAPABILITIES[a.role] & set(EXPORT_CAPABILITIES) for a in assignments(user))


def clean_reason(reason: str | None) -> str:
    """The break-glass reason, stripped.

    :raises XinshuError: shorter than :data:`MIN_REASON_CHARS` or longer than :data:`MAX_REASON_CHARS`.
    """
    text = (reason or "").strip()
    if len(text) < MIN_REASON_CHARS:
        raise XinshuError(f"a break-glass reason needs at least {MIN_REASON_CHARS} characters")
    if len(text) > MAX_REASON_CHARS:
        raise XinshuError(f"a break-glass reason has at most {MAX_REASON_CHARS} characters")
    return text


def break_glass_grants(user: User | None, student: Student, session: Session | None = None) -> frozenset[str]:
    """The capabilities a break-glass reason gives ``user`` for ``student`` (empty: none would)."""
    roles = covering_roles(user, student, session)
    held = frozenset().union(*(ROLE_CAPABILITIES[r] for r in roles))
    return frozenset().union(*(BREAK_GLASS_CAPABILITIES[r] for r in roles)) - held


def record_break_glass(
    factory: Any,
    user: User,
    student: Student,
    reason: str | None,
    session: Session | None = None,
    *,
    grants: frozenset[str] | None = None,
) -> AuditEvent:
    """Record a break-glass reason for ``student``; the access lasts :data:`BREAK_GLASS_WINDOW`.

    The audit row (action ``break_glass``, object ``student/<id>``, detail ``reason``
    and the capabilities granted) is committed in its own transaction first.

    :param factory: a ``sessionmaker`` or :class:`xinshu.db.Database` for :func:`xinshu.audit.record_read`.
    :param grants: :func:`break_glass_grants`, when the caller computed it already (then no
        query runs here: a web request ends its own transaction before the audit write).
    :raises XinshuError: the reason is too short or too long.
    :raises AccessDenied: no role of the user covering the student allows break-glass.
    :raises xinshu.audit.AuditUnavailable: the audit row could not be written.
    """
    text = clean_reason(reason)
    if grants is None:
        grants = break_glass_grants(user, student, session)
    if not grants:
        raise AccessDenied(f"no role of user {user.id} allows break-glass for student {student.id}")
    detail = {"reason": text, "grants": sorted(grants)}
    return record_read(factory, "break_glass", "student", student.id, detail=detail, actor=user)


__all__ = [
    "BREAK_GLASS_CAPABILITIES",
    "BREAK_GLASS_WINDOW",
    "CAPABILITIES",
    "ESCALATION_SCOPE",
    "EXPORT_CAPABILITIES",
    "MIN_REASON_CHARS",
    "ROLE_CAPABILITIES",
    "Access",
    "AccessDenied",
    "access_for",
    "assignments",
    "break_glass_grants",
    "capabilities_for",
    "clean_reason",
    "covering_roles",
    "escalated_student_ids",
    "has_capability",
    "may_export",
    "record_break_glass",
    "students_in_scope",
    "students_with",
]
