"""The retention job: delete what is kept longer than its configured period (security.md I3, J4).

``xinshu retention run [--dry-run]`` (:func:`run_retention`) deletes, in one transaction:

* **Responses and their scores** older than their period: a campaign's
  ``retention_days`` for the responses filed under it, ``XINSHU_RETENTION_RESPONSE_DAYS``
  (default :data:`DEFAULT_RESPONSE_DAYS`) for responses without a campaign. A
  response of a student who has an open case (not closed or transferred) is kept
  and counted as ``held``; it goes in the first run after the case ends. Warnings
  keep their explain-why inputs and lose only the link to the deleted response.
* **Audit rows** older than ``XINSHU_RETENTION_AUDIT_DAYS`` (default 365). Fewer than
  :data:`xinshu.audit.AUDIT_MIN_DAYS` (183, six months and a margin: CSL Art. 21) is
  refused, and the database refuses to delete younger rows anyway.
* **Notifications** delivered (``sent``) and **inbox messages** received more than
  ``XINSHU_RETENTION_NOTIFICATION_DAYS`` (default 365) ago. Undeliverable (``dead``)
  and pending notifications are never deleted here.
* **Erasures undone by a restore**: a completed deletion request whose student is
  not erased (the data came back from a backup) is carried out again
  (:func:`xinshu.data_requests.erase_student`); with an open case and no recorded
  legal exception it is held and counted.

Kept whatever their age: campaigns, guardian consents, data requests (evidence of
lawful processing; PIPL Art. 56 asks for processing records kept at least three
years), warnings and cases (case records follow their own keeping rules, not this job).

A dry run counts what would go and deletes nothing. Every run, dry or not, writes
one audit row (action ``retention``) with the counts.

**Restoring a backup (J4).** A backup holds data that has since passed its period
or been erased on request. After any restore, run ``xinshu retention run`` before
the system is opened again: it deletes what expired since the backup was taken and
re-applies the erasures whose requests are in the restored database. Deletion
requests completed *after* the backup was taken are not in it: re-enter them from
the request register (or the audit log kept off the restored host) and complete
them again before reopening.

Schedule: the scheduler does not run this job; run it daily from cron, e.g.
``30 2 * * * cd /srv/xinshu && XINSHU_DATABASE_URL=... .venv/bin/xinshu retention run``
(02:30 Beijing time on a host set to Asia/Shanghai).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.audit import AUDIT_MIN_DAYS, purge_audit
from xinshu.errors import XinshuError
from xinshu.models import (
    OPEN_CASE_STATES,
    AuditEvent,
    Campaign,
    Case,
    DataRequest,
    InboxMessage,
    Notification,
    Response,
    RiskWarning,
    Score,
    Student,
    utcnow,
)

log = logging.getLogger(__name__)

DEFAULT_RESPONSE_DAYS = 1095
DEFAULT_AUDIT_DAYS = 365
DEFAULT_NOTIFICATION_DAYS = 365
#: Settings (config key, or ``XINSHU_<key>`` in the environment) and their defaults.
SETTINGS = {
    "RETENTION_RESPONSE_DAYS": DEFAULT_RESPONSE_DAYS,
    "RETENTION_AUDIT_DAYS": DEFAULT_AUDIT_DAYS,
    "RETENTION_NOTIFICATION_DAYS": DEFAULT_NOTIFICATION_DAYS,
}


class RetentionError(XinshuError):
    """A retention setting that is not a whole number of days or is below its minimum."""


@dataclass(frozen=True)
class RetentionPolicy:
    """Keeping periods in days."""

    response_days: int = DEFAULT_RESPONSE_DAYS
    audit_days: int = DEFAULT_AUDIT_DAYS
    notification_days: int = DEFAULT_NOTIFICATION_DAYS

    def __post_init__(self) -> None:
        for name in ("response_days", "notification_days"):
            if getattr(self, name) < 1:
                raise RetentionError(f"{name} must be at least 1 day")
        if self.audit_days < AUDIT_MIN_DAYS:
            raise RetentionError(f"audit rows are kept at least {AUDIT_MIN_DAYS} days, not {self.audit_days}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> RetentionPolicy:
        """The policy from ``config`` keys of :data:`SETTINGS`, else ``XINSHU_<key>``, else the defaults.

        :raises RetentionError: a value that is not a whole number, or below its minimum.
        """
        config = config or {}
        values = {}
        for key, default in SETTINGS.items():
            raw = config.get(key)
            if raw in (None, ""):
                raw = os.environ.get(f"XINSHU_{key}", "")
            try:
                values[key] = int(str(raw).strip()) if str(raw).strip() else default
            except ValueError:
                raise RetentionError(f"XINSHU_{key} must be a whole number of days, not {raw!r}") from None
        return cls(
            response_days=values["RETENTION_RESPONSE_DAYS"],
            audit_days=values["RETENTION_AUDIT_DAYS"],
            notification_days=values["RETENTION_NOTIFICATION_DAYS"],
        )


@dataclass
class RetentionReport:
    """What a run deleted (or, for a dry run, would delete)."""

    dry_run: bool
    at: str
    policy: dict[str, int]
    responses_deleted: int = 0
    scores_deleted: int = 0
    responses_held: int = 0
    audit_deleted: int = 0
    notifications_deleted: int = 0
    inbox_deleted: int = 0
    reerased: int = 0
    reerase_held: int = 0
    #: campaign code (``""`` for responses without one) → responses deleted.
    by_campaign: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _open_case_students() -> Select:
    return select(Case.student_id).where(Case.state.in_(OPEN_CASE_STATES))


def _count(session: Session, stmt: Select) -> int:
    return int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def _response_groups(session: Session, policy: RetentionPolicy, now: dt.datetime) -> list[tuple[str, Any]]:
    """``(campaign code, condition)`` pairs selecting each group's expired responses."""
    groups = [
        ("", (Response.campaign_id.is_(None)) & (Response.submitted_at < now - dt.timedelta(days=policy.response_days)))
    ]
    for campaign_id, code, days in session.execute(select(Campaign.id, Campaign.code, Campaign.retention_days)):
        cutoff = now - dt.timedelta(days=int(days))
        groups.append((code, (Response.campaign_id == campaign_id) & (Response.submitted_at < cutoff)))
    return groups


def _expire_responses(session: Session, report: RetentionReport, policy: RetentionPolicy, now: dt.datetime) -> None:
    held_students = _open_case_students()
    for code, expired in _response_groups(session, policy, now):
        report.responses_held += _count(
            session, select(Response.id).where(expired, Response.student_id.in_(held_students))
        )
        doomed = select(Response.id).where(expired, Response.student_id.not_in(held_students))
        responses = _count(session, doomed)
        if not responses:
            continue
        scores = _count(session, select(Score.id).where(Score.response_id.in_(doomed)))
        if not report.dry_run:
            session.execute(
                update(RiskWarning)
                .where(RiskWarning.response_id.in_(doomed))
                .values(response_id=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                delete(Score).where(Score.response_id.in_(doomed)).execution_options(synchronize_session=False)
            )
            deleted = session.execute(
                delete(Response).where(Response.id.in_(doomed)).execution_options(synchronize_session=False)
            ).rowcount
            responses = int(deleted or 0)
        report.responses_deleted += responses
        report.scores_deleted += scores
        report.by_campaign[code] = report.by_campaign.get(code, 0) + responses


def _expire_audit(session: Session, report: RetentionReport, policy: RetentionPolicy, now: dt.datetime) -> None:
    cutoff = now - dt.timedelta(days=policy.audit_days)
    if report.dry_run:
        report.audit_deleted = _count(session, select(AuditEvent.id).where(AuditEvent.at < cutoff))
    else:
        report.audit_deleted = purge_audit(session, policy.audit_days, now)


def _expire_messages(session: Session, report: RetentionReport, policy: RetentionPolicy, now: dt.datetime) -> None:
    cutoff = now - dt.timedelta(days=policy.notification_days)
    sent = (Notification.status == "sent") & (Notification.sent_at < cutoff)
    inbox = InboxMessage.created_at < cutoff
    if report.dry_run:
        report.notifications_deleted = _count(session, select(Notification.id).where(sent))
        report.inbox_deleted = _count(session, select(InboxMessage.id).where(inbox))
        return
    options = {"synchronize_session": False}
    report.notifications_deleted = int(
        session.execute(delete(Notification).where(sent).execution_options(**options)).rowcount or 0
    )
    report.inbox_deleted = int(
        session.execute(delete(InboxMessage).where(inbox).execution_options(**options)).rowcount or 0
    )


def _reapply_erasures(session: Session, report: RetentionReport) -> None:
    """Carry out again the completed deletions whose student is not erased (undone by a restore)."""
    from xinshu.data_requests import DataRequestError, erase_student

    stmt = (
        select(DataRequest, Student)
        .join(Student, Student.id == DataRequest.student_id)
        .where(DataRequest.kind == "deletion", DataRequest.status == "done", Student.status != "erased")
        .order_by(DataRequest.id)
    )
    seen: set[int] = set()
    for request, student in session.execute(stmt).all():
        if student.id in seen:
            continue
        seen.add(student.id)
        if report.dry_run:
            report.reerased += 1
            continue
        try:
            erase_student(session, student, keep_casework=bool(request.legal_exception))
        except DataRequestError:
            report.reerase_held += 1
            continue
        report.reerased += 1


def run_retention(
    session: Session,
    policy: RetentionPolicy | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    actor: str = "retention",
) -> RetentionReport:
    """Run the retention job in the caller's transaction (the caller commits).

    :param policy: the keeping periods (default: :meth:`RetentionPolicy.from_config` of the environment).
    :param now: naive UTC (default: now); tests move the clock with it.
    :param dry_run: count only; nothing is deleted (the audit row is still written).
    :return: the counts; also written to an audit row (action ``retention``).
    """
    policy = policy or RetentionPolicy.from_config()
    now = now or utcnow()
    report = RetentionReport(dry_run=dry_run, at=now.isoformat(timespec="seconds"), policy=asdict(policy))
    connection = session.connection()
    if not dry_run and connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=ON")  # deleted rows are overwritten
    _expire_responses(session, report, policy, now)
    _reapply_erasures(session, report)
    _expire_messages(session, report, policy, now)
    _expire_audit(session, report, policy, now)
    audit.record(session, "retention", "retention", "", detail=report.as_dict(), actor=actor)
    log.info("retention run (dry_run=%s): %s", dry_run, report.as_dict())
    return report
