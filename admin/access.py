"""Who is logged in, what they may see of one student, and audited reads (back office).

* :func:`logged_in_user`, :func:`user_roles`, :func:`role_covers`: the user and
  their roles where they hold them.
* :func:`student_access`: :class:`xinshu.permissions.Access` of the current
  user for one student, cached for the request (list pages ask per row).
* :func:`guarded`: wraps a column formatter so that a value is shown only to a
  user holding a capability for the row's student.
* :func:`audit_read`: the audit row of a sensitive read, written and committed
  before the page is rendered; when it cannot be written the request is
  answered 503 and nothing is shown (security.md I1, I4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import abort, current_app, g
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from markupsafe import Markup

from xinshu.audit import AuditUnavailable, end_read_transaction, record_read
from xinshu.models import Student, User
from xinshu.permissions import Access, access_for

log = logging.getLogger(__name__)

#: The largest primary key an ``Integer`` column holds on every supported database.
MAX_ID = 2**31 - 1

HIDDEN_MESSAGE = _l("（无权查看）")
AUDIT_DOWN_MESSAGE = _l("审计日志暂时无法写入。为保护学生信息，本次查看已被拒绝，请稍后再试或联系管理员。")


def logged_in_user() -> User | None:
    """The logged-in active :class:`User`, or None for anonymous visitors."""
    if not current_user or not current_user.is_authenticated or not current_user.is_active:
        return None
    return current_user._get_current_object()


def user_roles(user: User | None) -> set[str]:
    """The roles a user holds at any org unit (empty for None)."""
    return {assignment.role for assignment in user.roles} if user is not None else set()


def role_covers(user: User | None, roles: tuple[str, ...], student: Student) -> bool:
    """True when ``user`` holds one of ``roles`` at the student's class or an org unit above it.

    For acts reserved to school roles (judge a level, drive a case); what a user may
    *see* is :func:`student_access`.
    """
    if user is None or student is None or student.class_unit is None:
        return False
    path = student.class_unit.path
    return any(a.role in roles and a.org_unit is not None and path.startswith(a.org_unit.path) for a in user.roles)


def student_access(student: Student | None) -> Access:
    """The current user's :class:`~xinshu.permissions.Access` to ``student`` (cached per request)."""
    if student is None:
        return Access(frozenset(), frozenset(), frozenset(), False)
    cache: dict[int, Access] = g.setdefault("xinshu_access", {})
    if student.id not in cache:
        cache[student.id] = access_for(logged_in_user(), student)
    return cache[student.id]


def forget_access() -> None:
    """Drop the cached access (after a break-glass reason was recorded)."""
    g.pop("xinshu_access", None)


def may(student: Student | None, capability: str) -> bool:
    """True when the current user holds ``capability`` for ``student`` now."""
    return capability in student_access(student)


def hidden() -> Markup:
    """The placeholder shown instead of a value the user may not see."""
    return Markup("<span class='text-muted xinshu-hidden'>{}</span>").format(HIDDEN_MESSAGE)


def _plain(view, context, model, name) -> Any:
    value = getattr(model, name)
    return "" if value is None else value


def guarded(
    capability: str,
    formatter: Callable[..., Any] | None = None,
    student_of: Callable[[Any], Student | None] = lambda model: model.student,
) -> Callable[..., Any]:
    """A Flask-Admin column formatter showing the value only with ``capability`` for the row's student."""
    inner = formatter or _plain

    def formatter_(view, context, model, name):
        if not may(student_of(model), capability):
            return hidden()
        return inner(view, context, model, name)

    return formatter_


def fmt_student(view: Any, context: Any, model: Any, name: str) -> Markup | str:
    """The row's student as "name #id" for users who may see the student's identity, else "#id"
    (a column formatter for rows with a ``student`` relationship; the name is escaped)."""
    student = model.student
    if student is None:
        return ""
    if may(student, "identity"):
        return Markup('{} <small class="text-muted">#{}</small>').format(student.name, student.id)
    return f"#{student.id}"


def audit_read(action: str, object_type: str, object_id: Any = "", *, outcome: str = "ok", **detail: Any) -> None:
    """Write the audit row of a sensitive read before anything is shown.

    The request's own (read-only) transaction is ended first
    (:func:`xinshu.audit.end_read_transaction`: on SQLite every transaction holds
    the write lock, which the audit transaction needs).

    :raises werkzeug.exceptions.ServiceUnavailable: (503) the row could not be written.
    """
    services = current_app.extensions["xinshu"]
    end_read_transaction(services.db.session)
    try:
        record_read(services.db, action, object_type, object_id, outcome=outcome, detail=detail)
    except AuditUnavailable:
        abort(503, description=str(AUDIT_DOWN_MESSAGE))
