"""The one scheduler process: escalation, reminders, undeliverable alerts, delivery.

Run it as its own process (``xinshu scheduler run``), never inside the web
workers. However many are started, one runs jobs: each tick first takes or
renews the :class:`~xinshu.models.SchedulerLease` row ``main`` (holder
``<hostname>:<pid>``, valid for two intervals) with one conditional UPDATE
(or INSERT when there is no row) in its own transaction, which is atomic on
SQLite and PostgreSQL alike. A process that finds the lease held by someone
else and not expired does nothing that tick; if the holder dies, another
process takes over once the lease expires (at most two intervals later).
The lease is renewed between jobs and between chunks of
:data:`DISPATCH_CHUNK` deliveries (from the main thread, between
transactions: on SQLite a renewal committed from another thread in the middle
of a delivery's transaction would make that transaction fail with "database is
locked"); a process that finds it lost stops mid-tick.

Each tick runs, each job in its own transaction, an exception logged without
stopping the others: :func:`~xinshu.escalation.escalate_overdue`,
:func:`~xinshu.escalation.remind_tasks`,
:func:`~xinshu.escalation.escalate_undeliverable`, then
:func:`~xinshu.dispatch.dispatch_pending` (so what the jobs queued goes out in
the same tick). Every job takes ``now``: :meth:`Scheduler.tick` accepts it,
which is how tests drive the clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from xinshu.dispatch import DispatchReport, dispatch_pending
from xinshu.escalation import escalate_overdue, escalate_undeliverable, remind_tasks
from xinshu.models import SchedulerLease, utcnow
from xinshu.services import Services

log = logging.getLogger(__name__)

LEASE_NAME = "main"
DEFAULT_INTERVAL = 60.0
#: Notifications delivered between two lease renewals. With the default timeouts
#: (10 s per channel call) a chunk takes at most 100 s, within the 120 s lease of
#: the default 60 s interval.
DISPATCH_CHUNK = 10


class LeaseLost(Exception):
    """The lease went to another process during a tick; carries the counts so far."""

    def __init__(self, counts: dict[str, Any]):
        super().__init__("scheduler lease lost")
        self.counts = counts


def default_holder() -> str:
    """``hostname:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire_lease(services: Services, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
    """Take or renew lease ``name`` for ``holder`` until ``now + ttl``; True if ``holder`` has it now.

    A lease held by another process and not expired is only read, never
    written: on SQLite even an UPDATE that changes no row takes the write lock
    for a moment, and a transaction of the holder that read first and then
    tries to write at that moment fails at once with "database is locked"
    (SQLite does not wait for the lock when upgrading a read transaction).
    Taking an expired lease is one conditional UPDATE, so two standbys cannot
    both take it.
    """
    expires = now + ttl
    with services.db.sessionmaker() as session:  # a standby only reads: see below
        lease = session.get(SchedulerLease, name)
        if lease is not None and lease.holder != holder and lease.expires_at > now:
            return False
    with services.db.transaction() as session:
        taken = session.execute(
            update(SchedulerLease)
            .where(
                SchedulerLease.name == name,
                or_(SchedulerLease.holder == holder, SchedulerLease.expires_at <= now),
            )
            .values(holder=holder, expires_at=expires)
            .execution_options(synchronize_session=False)
        ).rowcount
        if taken:
            return True
        if session.get(SchedulerLease, name) is not None:
            return False
    try:
        with services.db.transaction() as session:
            session.add(SchedulerLease(name=name, holder=holder, expires_at=expires))
    except IntegrityError:  # another process inserted it first
        return False
    return True


def release_lease(services: Services, name: str, holder: str, now: dt.datetime) -> None:
    """Let the lease go (if ``holder`` has it) so a standby process can take over at once."""
    with services.db.transaction() as session:
        session.execute(
            update(SchedulerLease)
            .where(SchedulerLease.name == name, SchedulerLease.holder == holder)
            .values(expires_at=now)
            .execution_options(synchronize_session=False)
        )


def lease_holder(services: Services, name: str = LEASE_NAME) -> tuple[str, dt.datetime] | None:
    """``(holder, expires_at)`` of the lease, if any."""
    with services.db.sessionmaker() as session:
        lease = session.get(SchedulerLease, name)
        return (lease.holder, lease.expires_at) if lease else None


class Scheduler:
    """Runs the jobs while holding the lease. ``clock`` gives naive-UTC ``now``."""

    def __init__(
        self,
        services: Services,
        interval: float = DEFAULT_INTERVAL,
        holder: str | None = None,
        name: str = LEASE_NAME,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.services = services
        self.interval = interval
        self.holder = holder or default_holder()
        self.name = name
        self.clock = clock
        self.ttl = dt.timedelta(seconds=2 * interval)

    def jobs(self) -> list[tuple[str, Callable[[dt.datetime, Callable[[], bool]], dict[str, Any]]]]:
        """``(name, job)`` pairs; ``job(now, renew)`` returns counts. ``renew()`` renews the
        lease and says whether this process still holds it."""

        def in_transaction(job):
            def run(now: dt.datetime, renew: Callable[[], bool]) -> dict[str, Any]:
                with self.services.db.transaction() as session:
                    return job(session, self.services, now).as_dict()

            return run

        return [
            ("escalate_overdue", in_transaction(escalate_overdue)),
            ("remind_tasks", in_transaction(remind_tasks)),
            ("escalate_undeliverable", in_transaction(escalate_undeliverable)),
            ("dispatch", self._dispatch),
        ]

    def _dispatch(self, now: dt.datetime, renew: Callable[[], bool]) -> dict[str, Any]:
        """Deliver in chunks of :data:`DISPATCH_CHUNK`, renewing the lease between chunks."""
        total = DispatchReport()
        while True:
            report = dispatch_pending(self.services, now=now, limit=DISPATCH_CHUNK)
            for name, value in report.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
            if report.sent + report.failed + report.dead < DISPATCH_CHUNK:
                return total.as_dict()
            if not renew():
                raise LeaseLost(total.as_dict())

    def tick(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Run every job once if this process holds (or can take) the lease.

        Returns ``{"holder", "ran", "at", <job>: counts or {"error": ...}, "took"}``;
        ``ran`` is False (with ``lease_held_by``) when another process holds the lease.
        The lease is renewed between jobs and between dispatch chunks (with the
        tick's ``now`` advanced by the time spent); a tick that finds it lost (it
        ran longer than the lease and another process took over) stops there
        (``lease_lost``).
        """
        now = now or self.clock()
        started = time.monotonic()
        report: dict[str, Any] = {"holder": self.holder, "ran": False, "at": now.isoformat(timespec="milliseconds")}

        def renew() -> bool:
            at = now + dt.timedelta(seconds=time.monotonic() - started)
            return acquire_lease(self.services, self.name, self.holder, at, self.ttl)

        if not acquire_lease(self.services, self.name, self.holder, now, self.ttl):
            current = lease_holder(self.services, self.name)
            log.info("scheduler lease %r held by %s; not running jobs", self.name, current and current[0])
            report["lease_held_by"] = current[0] if current else None
            return report
        report["ran"] = True
        for position, (job_name, job) in enumerate(self.jobs()):
            if position and not renew():
                report["lease_lost"] = True
                break
            try:
                report[job_name] = job(now, renew)
            except LeaseLost as lost:
                report[job_name], report["lease_lost"] = lost.counts, True
                break
            except Exception as exc:  # one failing job never stops the others
                log.exception("scheduler job %s failed", job_name)
                report[job_name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        if report.get("lease_lost"):
            log.error("scheduler lease %r lost during a tick of %s; the remaining jobs were skipped", self.name,
                      self.holder)  # fmt: skip
        report["took"] = round(time.monotonic() - started, 3)
        log.info("scheduler tick by %s: %s", self.holder, report)
        return report

    def release(self) -> None:
        release_lease(self.services, self.name, self.holder, self.clock())

    def run(
        self,
        stop: threading.Event | None = None,
        on_tick: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; then release the lease."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                started = self.clock()
                report = self.tick(started)
                if on_tick is not None:
                    on_tick(report)
                elapsed = (self.clock() - started).total_seconds()
                stop.wait(max(0.0, self.interval - elapsed))
        finally:
            self.release()
