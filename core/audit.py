"""The audit log: who did what to which record, when, from where, with what result.

Two ways to write a row (:class:`xinshu.models.AuditEvent`):

* :func:`record` adds the row to the caller's session, so a change and its
  audit row commit (or roll back) together. Use it for writes.
* :func:`record_read` writes and commits the row in its own transaction
  *before* the caller shows anything. If that fails the read is refused
  (:class:`AuditUnavailable`, answered with 503) and an operator alarm is
  logged: no sensitive read goes unaudited (security.md I1, I4).

Rows never carry names, ID numbers or answers: records are named by type and
id, details hold ids, counts, filters, reasons and before/after snapshots of
non-identifying fields. The database refuses to update rows, or to delete rows
younger than :data:`AUDIT_MIN_DAYS` days (migration 0004; CSL Art. 21 asks for
network logs kept at least six months).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from xinshu.errors import XinshuError
from xinshu.models import AuditEvent, User, utcnow

log = logging.getLogger(__name__)

#: Audit rows are kept at least this many days (six months and a margin; CSL Art. 21).
AUDIT_MIN_DAYS = 183

#: Actions in use. Plugins may add their own (lower-case, at most 32 characters).
ACTIONS = (
    "read",
    "export",
    "create",
    "update",
    "delete",
    "login",
    "login_failed",
    "lockout",
    "logout",
    "break_glass",
    "activate",
    "retention",
)


class AuditUnavailable(XinshuError):
    """The audit row for a sensitive read could not be written; the read must be refused."""


def _request_context() -> dict[str, Any]:
    """Actor, IP and endpoint of the current Flask request (empty outside one)."""
    try:
        from flask import has_request_context, request
        from flask_login import current_user
    except ImportError:  # pragma: no cover - Flask is a dependency
        return {}
    if not has_request_context():
        return {}
    context: dict[str, Any] = {"ip": (request.remote_addr or "")[:64], "endpoint": request.path[:255]}
    user = current_user._get_current_object() if current_user else None
    if isinstance(user, User):
        context["actor_id"] = user.id
        context["actor"] = user.username
    return context


def make_event(
    action: str,
    object_type: str = "",
    object_id: Any = "",
    *,
    outcome: str = "ok",
    detail: Mapping[str, Any] | None = None,
    actor: User | str | None = None,
    ip: str | None = None,
    endpoint: str | None = None,
) -> AuditEvent:
    """A new (unsaved) audit row; who, IP and endpoint default to the current request.

    :param action: what happened (see :data:`ACTIONS`).
    :param object_type: the model or thing acted on (``student``, ``case``, ``export``...).
    :param object_id: its id (converted to text); ``""`` for lists and exports.
    :param outcome: ``ok``, ``denied`` or ``failed``.
    :param detail: JSON-safe facts: counts, filters, reasons, before/after of non-identifying fields.
    :param actor: a :class:`User` or a name (CLI, scheduler); default: the logged-in user.
    """
    context = _request_context()
    if isinstance(actor, User):
        context["actor_id"], context["actor"] = actor.id, actor.username
    elif isinstance(actor, str):
        context["actor_id"], context["actor"] = None, actor
    if ip is not None:
        context["ip"] = ip[:64]
    if endpoint is not None:
        context["endpoint"] = endpoint[:255]
    return AuditEvent(
        at=utcnow(),
        action=action[:32],
        object_type=object_type[:40],
        object_id=str(object_id)[:64],
        outcome=outcome,
        detail=dict(detail or {}),
        actor_id=context.get("actor_id"),
        actor=str(context.get("actor", "anonymous"))[:80],
        ip=context.get("ip", ""),
        endpoint=context.get("endpoint", ""),
    )


def record(session: Session, action: str, object_type: str = "", object_id: Any = "", **kwargs: Any) -> AuditEvent:
    """Add an audit row to ``session``; it commits or rolls back with the caller's change.

    Keyword arguments are those of :func:`make_event`.
    """
    event = make_event(action, object_type, object_id, **kwargs)
    session.add(event)
    return event


def record_read(
    factory: sessionmaker | Any, action: str, object_type: str = "", object_id: Any = "", **kwargs: Any
) -> AuditEvent:
    """Write and commit an audit row in its own transaction, before the data is shown.

    Given a :class:`xinshu.db.Database`, the current thread's request session
    is first ended if it has only read (:func:`end_read_transaction`), so that on
    SQLite the request does not wait for its own write lock.

    :param factory: a ``sessionmaker`` or a :class:`xinshu.db.Database` (its ``sessionmaker`` is used).
    :raises AuditUnavailable: the row could not be committed (the caller must refuse the read).
    """
    maker = getattr(factory, "sessionmaker", factory)
    event = make_event(action, object_type, object_id, **kwargs)
    _end_scoped_read(factory)
    try:
        with maker() as session, session.begin():
            session.add(event)
    except Exception as exc:
        log.critical("ALARM: audit log write failed (%s); refusing a %s of %s", type(exc).__name__, action, object_type)
        raise AuditUnavailable("the audit log cannot be written; the request was refused") from exc
    return event


def break_glass_active(
    session: Session, user: User | None, object_type: str, object_id: Any, within: dt.timedelta
) -> bool:
    """True when ``user`` recorded a break-glass reason for this record in the last ``within``."""
    if user is None:
        return False
    since = utcnow() - within
    row = session.scalar(
        select(AuditEvent.id)
        .where(
            AuditEvent.action == "break_glass",
            AuditEvent.actor_id == user.id,
            AuditEvent.object_type == object_type,
            AuditEvent.object_id == str(object_id),
            AuditEvent.outcome == "ok",
            AuditEvent.at >= since,
        )
        .limit(1)
    )
    return row is not None


def purge_audit(session: Session, keep_days: int, now: dt.datetime | None = None) -> int:
    """Delete audit rows older than ``keep_days`` (never fewer than :data:`AUDIT_MIN_DAYS`).

    :return: the number of rows deleted.
    :raises ValueError: ``keep_days`` is below :data:`AUDIT_MIN_DAYS`.
    """
    if keep_days < AUDIT_MIN_DAYS:
        raise ValueError(f"audit rows are kept at least {AUDIT_MIN_DAYS} days, not {keep_days}")
    cutoff = (now or utcnow()) - dt.timedelta(days=keep_days)
    result = session.execute(delete(AuditEvent).where(AuditEvent.at < cutoff))
    return int(result.rowcount or 0)


def record_now(
    factory: sessionmaker | Any, action: str, object_type: str = "", object_id: Any = "", **kwargs: Any
) -> bool:
    """Write and commit an audit row in its own transaction, never raising.

    For events that go ahead whether or not they can be audited (a logout, a
    refused request): a failure raises the operator alarm (see :func:`record_read`)
    and returns False. Arguments are those of :func:`record_read`.

    :return: True when the row was committed.
    """
    try:
        record_read(factory, action, object_type, object_id, **kwargs)
    except AuditUnavailable:
        return False
    return True


def _end_scoped_read(factory: Any) -> None:
    """End the read-only transaction of ``factory.session`` (a scoped session) in this thread, if any."""
    scoped = getattr(factory, "session", None)
    registry = getattr(scoped, "registry", None)
    if registry is None or not registry.has():
        return
    session = scoped()
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        session.commit()


def end_read_transaction(session: Session) -> None:
    """End the transaction of a session that has only read, so another connection can write.

    On SQLite every transaction takes the write lock when it begins, so a
    request whose session has read anything (the logged-in user, say) would
    block its own :func:`record_read` or :func:`record_now` until the busy
    timeout. Call this first; objects stay loaded (``expire_on_commit=False``).

    :raises RuntimeError: the session holds unflushed changes (they must not be committed here).
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("end_read_transaction() on a session with pending changes")
    session.commit()
