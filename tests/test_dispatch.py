"""Outbox delivery with a real SMTP receiver (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from xinshu.alerting import record_response
from xinshu.auth import create_user
from xinshu.dispatch import MAX_ATTEMPTS, backoff, dispatch_pending
from xinshu.models import InboxMessage, Notification, OrgUnit, Student, utcnow
from xinshu.orgs import add_org_unit
from xinshu.services import build_services


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mail_services(db_url):
    port = _free_port()
    svc = build_services({"DATABASE_URL": db_url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_TIMEOUT": 2})
    svc.db.create_all()
    yield svc, port
    svc.db.dispose()


def _setup(services) -> int:
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        school = add_org_unit(session, "S1", "一中", "school", district)
        klass = add_org_unit(session, "S1-C1", "七年级1班", "class", school)
        create_user(session, "psy", "pw-123456789", "psychology_teacher", school, email="psy@school.test")
        student = Student(school_id=school.id, class_id=klass.id, name="张测试", gender="F", grade_level=7)
        session.add(student)
        session.flush()
        answers = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1}
        outcome = record_response(session, services, student, "phq9", answers, {}, "test")
        assert outcome.warning.level == 3 and outcome.case is not None
        return outcome.warning.id


def test_email_delivered_retried_and_dead_lettered(mail_services):
    services, port = mail_services
    warning_id = _setup(services)
    with services.db.sessionmaker() as session:
        rows = session.scalars(select(Notification).where(Notification.warning_id == warning_id)).all()
        # level 3 in rules/levels.yaml: psychology teacher (inbox, email), principal (inbox, email), district (inbox)
        assert sorted((n.channel, n.role) for n in rows) == [
            ("email", "principal"), ("email", "psychology_teacher"),
            ("inbox", "district_admin"), ("inbox", "principal"), ("inbox", "psychology_teacher"),
        ]  # fmt: skip

    # receiver down: inbox rows go through, email rows fail and are retried later
    now = utcnow()
    report = dispatch_pending(services, now=now)
    assert (report.sent, report.failed) == (3, 2)

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert dispatch_pending(services, now=now).sent == 0  # not due yet: backoff
        report = dispatch_pending(services, now=now + backoff(1))
        assert (report.sent, report.failed) == (1, 1)  # the school has no principal with an email
        later = now + backoff(1)
        for attempt in range(3, MAX_ATTEMPTS + 1):
            later += backoff(attempt - 1)
            report = dispatch_pending(services, now=later)
        assert report.dead == 1
    finally:
        controller.stop()

    assert len(mailbox.messages) == 1
    recipients, content = mailbox.messages[0]
    assert recipients == ["psy@school.test"]
    assert f"X-Xinshu-Key: warning-{warning_id}-L3:email:psychology_teacher@" in content
    assert "张测试" not in content
    with services.db.sessionmaker() as session:
        dead = session.scalar(select(Notification).where(Notification.status == "dead"))
        assert dead.role == "principal" and dead.attempts == MAX_ATTEMPTS and "no active principal" in dead.last_error
        assert session.query(InboxMessage).count() == 3


def test_redelivery_after_a_crash_is_recorded_once(services, org):
    """A row left pending after its send (crash before marking) is sent again with the same key."""
    with services.db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "S1"))
        klass = add_org_unit(session, "S1-C1", "七年级1班", "class", school)
        student = Student(school_id=school.id, class_id=klass.id, name="李测试", gender="M", grade_level=7)
        session.add(student)
        session.flush()
        answers = {f"phq9_{i}": 3 for i in range(1, 10)}
        record_response(session, services, student, "phq9", answers, {}, "test")
    assert dispatch_pending(services).sent == 4  # level 4: four inbox targets
    with services.db.transaction() as session:  # simulate the crash: delivered but not marked
        for row in session.scalars(select(Notification)):
            row.status, row.sent_at = "pending", None
    report = dispatch_pending(services)
    assert (report.sent, report.duplicates) == (4, 4)
    with services.db.sessionmaker() as session:
        assert session.query(InboxMessage).count() == 4


def test_backoff_doubles_and_caps():
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 8)] == [30, 60, 120, 3600]
    assert backoff(20) == dt.timedelta(hours=1)
