"""The outbox dispatcher: deliver pending notifications, at least once.

Each notification is handled in its own transaction: the channel is called,
then the row is marked ``sent``. A crash between the two leaves it
``pending`` and it is sent again with the same idempotency key (receivers
de-duplicate; the in-app inbox does so itself). A failure, or any exception
from a channel, is recorded and retried with exponential backoff; after
:data:`MAX_ATTEMPTS` the row becomes ``dead``: kept, shown as undeliverable,
never dropped. One channel failing never stops the others.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select

from xinshu.channels import ChannelContext, Delivery
from xinshu.models import Notification, utcnow
from xinshu.plugin_manager import notify_observers
from xinshu.services import Services

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BASE_DELAY = dt.timedelta(seconds=30)
MAX_DELAY = dt.timedelta(hours=1)


@dataclass
class DispatchReport:
    """Counts for one dispatcher pass."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    duplicates: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "dead": self.dead, "duplicates": self.duplicates}


def backoff(attempts: int) -> dt.timedelta:
    """Delay before retry number ``attempts`` (1-based): 30 s doubling, capped at 1 h."""
    return min(BASE_DELAY * (2 ** (attempts - 1)), MAX_DELAY)


def dispatch_pending(services: Services, now: dt.datetime | None = None, limit: int = 1000) -> DispatchReport:
    """Deliver up to ``limit`` due notifications; return what happened."""
    report = DispatchReport()
    now = now or utcnow()
    with services.db.sessionmaker() as session:
        due = list(
            session.scalars(
                select(Notification.id)
                .where(Notification.status == "pending", Notification.next_attempt_at <= now)
                .order_by(Notification.level.desc(), Notification.id)
                .limit(limit)
            )
        )
    for notification_id in due:
        _deliver_one(services, notification_id, now, report)
    return report


def _deliver_one(services: Services, notification_id: int, now: dt.datetime, report: DispatchReport) -> None:
    with services.db.sessionmaker() as session, session.begin():
        stmt = select(Notification).where(Notification.id == notification_id).with_for_update(skip_locked=True)
        notification = session.scalar(stmt)
        if notification is None or notification.status != "pending":
            return
        context = ChannelContext(session, services.config)
        try:
            with session.begin_nested():
                delivery = services.channel(notification.channel).send(notification, context)
        except Exception as exc:  # any channel error is a failed attempt, never a crash
            delivery = Delivery(False, f"{type(exc).__name__}: {exc}"[:500])
        _record(notification, delivery, now, report)
        notify_observers(services.pm, "notification_attempted", notification=notification, delivery=delivery)


def _record(notification: Notification, delivery: Delivery, now: dt.datetime, report: DispatchReport) -> None:
    notification.attempts += 1
    if delivery.ok:
        notification.status = "sent"
        notification.sent_at = now
        notification.last_error = None
        report.sent += 1
        report.duplicates += delivery.duplicate
        return
    notification.last_error = delivery.detail
    if notification.attempts >= MAX_ATTEMPTS:
        notification.status = "dead"
        report.dead += 1
        log.error("notification %s undeliverable after %s attempts", notification.id, notification.attempts)
    else:
        notification.next_attempt_at = now + backoff(notification.attempts)
        report.failed += 1
