"""Escalation up the tree, undeliverable alerts, task reminders and the one-scheduler lease,
driven by a controllable clock (every job takes ``now``), with real receivers on 127.0.0.1.

Level 3 (``phq9_9 = 1``) has ``response_hours: 24`` in rules/levels.yaml and
level 4 (every PHQ-9 item 3) ``response_hours: 2``. With no
``ESCALATION_CHANNELS`` set, an escalation goes to the district admin through
inbox and email (what levels.yaml names for ``district_admin`` at the
district) and to the bureau admin through inbox.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from http_receiver import Receiver, free_port
from sqlalchemy import select

from xinshu.alerting import record_response
from xinshu.auth import create_user
from xinshu.cli import main
from xinshu.dispatch import MAX_ATTEMPTS, DispatchReport, backoff, dispatch_pending
from xinshu.errors import XinshuError
from xinshu.escalation import (
    REMINDER_LEAD,
    acknowledge,
    escalate_overdue,
    escalate_undeliverable,
    escalation_channels,
    remind_tasks,
    steps_due,
)
from xinshu.models import (
    Case,
    CaseEvent,
    InboxMessage,
    Notification,
    PlanTask,
    RiskWarning,
    SchedulerLease,
    Student,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.scheduler import DISPATCH_CHUNK, Scheduler, acquire_lease, lease_holder
from xinshu.services import build_services

STUDENT_NAME = "李测试"
LEVEL3 = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1}
LEVEL4 = {f"phq9_{i}": 3 for i in range(1, 10)}
SECOND = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)


class Mailbox:
    def __init__(self):
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"

    def to(self, address: str) -> list[str]:
        return [content for recipients, content in self.messages if address in recipients]


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


@pytest.fixture
def make_services(tmp_path):
    made = []

    def make(**settings):
        config = {"DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}", "XINSHU_PLUGINS": "",
                  "XINSHU_BLOCK_PLUGINS": ""} | settings  # fmt: skip
        services = build_services(config)
        services.db.create_all()
        made.append(services)
        return services

    yield make
    for services in made:
        services.db.dispose()


def enrol(services) -> dict[str, int]:
    """city C01 → district D01 → school S1 → class, staff with email, one student."""
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        school = add_org_unit(session, "S1", "一中", "school", district)
        klass = add_org_unit(session, "S1-C1", "七年级1班", "class", school)
        for username, role, unit in (("psy", "psychology_teacher", school), ("head", "principal", school),
                                     ("dist", "district_admin", district), ("city", "bureau_admin", city)):  # fmt: skip
            create_user(session, username, "pw-123456789", role, unit, email=f"{username}@test.example")
        student = Student(school_id=school.id, class_id=klass.id, name=STUDENT_NAME, gender="M", grade_level=8)
        session.add(student)
        session.flush()
        return {"city": city.id, "district": district.id, "school": school.id, "student": student.id}


def warn(services, student_id: int, answers: dict = LEVEL3) -> RiskWarning:
    with services.db.transaction() as session:
        outcome = record_response(session, services, session.get(Student, student_id), "phq9", answers, {}, "test")
        return outcome.warning


def run_job(services, job, now: dt.datetime):
    with services.db.transaction() as session:
        return job(session, services, now)


def get_warning(services, warning_id: int) -> RiskWarning:
    with services.db.sessionmaker() as session:
        return session.get(RiskWarning, warning_id)


def keys(services, prefix: str) -> list[str]:
    with services.db.sessionmaker() as session:
        stmt = select(Notification.idempotency_key).where(Notification.idempotency_key.like(f"{prefix}%"))
        return sorted(session.scalars(stmt))


def events(services, kind: str) -> list[CaseEvent]:
    with services.db.sessionmaker() as session:
        return list(session.scalars(select(CaseEvent).where(CaseEvent.kind == kind).order_by(CaseEvent.id)))


# --- escalation ---------------------------------------------------------------------------


def test_steps_due_counts_exceeded_limits():
    limit = dt.timedelta(hours=24)
    assert [steps_due(d, limit) for d in (limit - SECOND, limit, limit + SECOND, 2 * limit, 2 * limit + SECOND)] == [
        0, 0, 1, 1, 2,
    ]  # fmt: skip


def test_unacknowledged_level3_climbs_school_district_city(make_services, smtp):
    mailbox, port = smtp
    services = make_services(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, MAIL_TIMEOUT=5)
    ids = enrol(services)
    warning = warn(services, ids["student"])
    t0 = warning.created_at
    assert dispatch_pending(services).sent == 5  # the level's own notifications
    assert escalation_channels(services, "district_admin", "district") == ["inbox", "email"]
    assert escalation_channels(services, "bureau_admin", "city") == ["inbox"]

    assert run_job(services, escalate_overdue, t0 + 24 * HOUR).steps == 0  # exactly at the limit: not yet
    report = run_job(services, escalate_overdue, t0 + 24 * HOUR + SECOND)
    assert (report.escalated, report.steps, report.notifications) == (1, 1, 2)
    row = get_warning(services, warning.id)
    assert (row.escalated_to, row.escalated_at) == ("district", t0 + 24 * HOUR + SECOND)
    assert keys(services, f"warning-{warning.id}-esc-") == [
        f"warning-{warning.id}-esc-district:email:district_admin@{ids['district']}",
        f"warning-{warning.id}-esc-district:inbox:district_admin@{ids['district']}",
    ]
    assert run_job(services, escalate_overdue, t0 + 30 * HOUR).steps == 0  # the district's own 24 h run from now
    assert dispatch_pending(services, now=t0 + 24 * HOUR + SECOND).sent == 2
    (mail,) = mailbox.to("dist@test.example")[-1:]
    assert "X-Xinshu-Key: warning-" in mail and "-esc-district:email:district_admin@" in mail
    assert STUDENT_NAME not in mail
    with services.db.sessionmaker() as session:
        inbox = session.scalar(select(InboxMessage).where(InboxMessage.idempotency_key.like("%-esc-district:inbox:%")))
        assert inbox.role == "district_admin" and inbox.org_unit_id == ids["district"]
        assert "超时未确认" in inbox.subject and "一中" in inbox.subject and "24 小时" in inbox.body
        assert STUDENT_NAME not in inbox.subject + inbox.body

    assert run_job(services, escalate_overdue, t0 + 48 * HOUR + SECOND).steps == 0  # 24 h after the step: not yet
    report = run_job(services, escalate_overdue, t0 + 48 * HOUR + 2 * SECOND)
    assert (report.steps, report.notifications) == (1, 1)
    assert get_warning(services, warning.id).escalated_to == "city"
    assert keys(services, f"warning-{warning.id}-esc-city") == [
        f"warning-{warning.id}-esc-city:inbox:bureau_admin@{ids['city']}"
    ]
    assert run_job(services, escalate_overdue, t0 + 1000 * HOUR).steps == 0  # the city is the top
    reasons = [e.reason for e in events(services, "escalation")]
    assert reasons == [
        f"预警 #{warning.id}（3级）未在 24 小时内确认，升级至一区",
        f"预警 #{warning.id}（3级）未在 24 小时内确认，升级至示范市",
    ]
    assert dispatch_pending(services, now=t0 + 48 * HOUR + 2 * SECOND).as_dict() == {
        "sent": 1, "failed": 0, "dead": 0, "duplicates": 0,
    }  # fmt: skip


def test_acknowledged_warning_stops_climbing(make_services):
    services = make_services()
    ids = enrol(services)
    warning = warn(services, ids["student"])
    t0 = warning.created_at
    run_job(services, escalate_overdue, t0 + 24 * HOUR + SECOND)
    assert get_warning(services, warning.id).escalated_to == "district"
    with services.db.transaction() as session:
        row = session.get(RiskWarning, warning.id)
        assert acknowledge(session, row, "dist", t0 + 30 * HOUR) is True
        assert acknowledge(session, row, "someone-else", t0 + 31 * HOUR) is False
    row = get_warning(services, warning.id)
    assert (row.acknowledged_by, row.acknowledged_at, row.escalated_to) == ("dist", t0 + 30 * HOUR, "district")
    assert run_job(services, escalate_overdue, t0 + 1000 * HOUR).steps == 0
    assert keys(services, f"warning-{warning.id}-esc-city") == []
    (note,) = events(services, "note")
    assert note.actor == "dist" and note.reason.startswith(f"确认预警 #{warning.id}")


def test_acknowledged_in_time_never_escalates_and_closed_ones_refuse(make_services):
    services = make_services()
    ids = enrol(services)
    warning = warn(services, ids["student"])
    with services.db.transaction() as session:
        acknowledge(session, session.get(RiskWarning, warning.id), "psy", warning.created_at + 23 * HOUR)
    assert run_job(services, escalate_overdue, warning.created_at + 100 * HOUR).steps == 0
    assert get_warning(services, warning.id).escalated_to == "school"
    with services.db.transaction() as session:
        row = session.get(RiskWarning, warning.id)
        row.status = "closed"
        with pytest.raises(XinshuError, match="is closed, not open"):
            acknowledge(session, row, "psy", utcnow())


def test_a_scheduler_that_was_down_climbs_every_overdue_step_at_once(make_services):
    services = make_services()
    ids = enrol(services)
    warning = warn(services, ids["student"])
    report = run_job(services, escalate_overdue, warning.created_at + 48 * HOUR + SECOND)
    assert (report.escalated, report.steps) == (1, 2)
    assert get_warning(services, warning.id).escalated_to == "city"
    assert len(keys(services, f"warning-{warning.id}-esc-")) == 2  # district inbox, city inbox (email unconfigured)


def test_a_raise_restarts_the_clock_with_the_new_levels_limit(make_services):
    services = make_services()
    ids = enrol(services)
    warning = warn(services, ids["student"])
    with services.db.transaction() as session:
        acknowledge(session, session.get(RiskWarning, warning.id), "psy", warning.created_at + HOUR)
    raised = warn(services, ids["student"], LEVEL4)  # level 4 clears the acknowledgement
    assert raised.id == warning.id and raised.level == 4 and raised.acknowledged_at is None
    with services.db.sessionmaker() as session:
        start = max(session.scalars(select(Case.opened_at)))  # about when the raise happened
    assert run_job(services, escalate_overdue, start + 2 * HOUR - SECOND).steps == 0
    assert run_job(services, escalate_overdue, start + 2 * HOUR + 2 * SECOND).steps == 1  # level 4: 2 h
    assert keys(services, f"warning-{warning.id}-esc-district") == [
        f"warning-{warning.id}-esc-district:inbox:district_admin@{ids['district']}"
    ]


def test_escalation_channels_setting_and_webhook_delivery(make_services):
    receiver = Receiver().start()
    try:
        services = make_services(
            ESCALATION_CHANNELS="inbox, wecom, sms", WECOM_WEBHOOK_URL=receiver.url("/cgi-bin/webhook/send?key=k")
        )
        ids = enrol(services)
        warning = warn(services, ids["student"])
        assert escalation_channels(services, "district_admin", "district") == ["inbox", "wecom"]  # sms unconfigured
        now = warning.created_at + 24 * HOUR + SECOND
        run_job(services, escalate_overdue, now)
        assert dispatch_pending(services, now=now).sent == 3 + 2  # level 3: three inbox rows (no email)
        (post,) = receiver.requests
        assert (
            post.headers["X-Xinshu-Key"] == f"warning-{warning.id}-esc-district:wecom:district_admin@{ids['district']}"
        )
        assert "升级" in post.body["markdown"]["content"] and STUDENT_NAME not in post.body["markdown"]["content"]
    finally:
        receiver.stop()


def test_acknowledge_command(make_services, tmp_path):
    services = make_services()
    warning = warn(services, enrol(services)["student"])
    database = f"sqlite:///{tmp_path / 'xinshu.db'}"
    runner = CliRunner()
    result = runner.invoke(main, ["acknowledge", str(warning.id), "--by", "psy", "--database", database])
    assert result.exit_code == 0 and result.output == f"warning #{warning.id} acknowledged by psy (at school level)\n"
    result = runner.invoke(main, ["acknowledge", str(warning.id), "--by", "x", "--database", database])
    assert result.output == f"warning #{warning.id} was already acknowledged by psy\n"
    result = runner.invoke(main, ["acknowledge", "999", "--by", "x", "--database", database])
    assert result.exit_code == 1 and "no warning #999" in result.output
    assert get_warning(services, warning.id).acknowledged_by == "psy"


# --- undeliverable notifications --------------------------------------------------------------


def test_dead_notification_raises_one_alert_one_level_up(make_services):
    services = make_services(WECOM_WEBHOOK_URL=f"http://127.0.0.1:{free_port()}/send?key=k", WEBHOOK_TIMEOUT=2,
                             ESCALATION_CHANNELS="inbox,wecom")  # fmt: skip
    ids = enrol(services)
    warning = warn(services, ids["student"])
    t0 = warning.created_at + 25 * HOUR
    run_job(services, escalate_overdue, t0)  # district inbox (sent) + district wecom (robot unreachable)
    now = t0
    report = dispatch_pending(services, now=now)
    for attempt in range(1, MAX_ATTEMPTS):
        now += backoff(attempt)
        report = dispatch_pending(services, now=now)
    assert report.dead == 1
    with services.db.sessionmaker() as session:
        (dead,) = session.scalars(select(Notification).where(Notification.status == "dead"))
        assert dead.channel == "wecom" and dead.org_unit_id == ids["district"] and dead.attempts == MAX_ATTEMPTS

    report = run_job(services, escalate_undeliverable, now)
    assert report.alerts == 1
    assert keys(services, "dead-") == [f"dead-{dead.id}:inbox:bureau_admin@{ids['city']}"]  # district → city
    assert run_job(services, escalate_undeliverable, now + HOUR).alerts == 0  # once
    assert dispatch_pending(services, now=now).sent == 1
    with services.db.sessionmaker() as session:
        alert = session.scalar(select(InboxMessage).where(InboxMessage.idempotency_key.like("dead-%")))
        assert alert.role == "bureau_admin" and alert.subject.startswith("[心数] 通知无法送达")
        assert "wecom" in alert.body and f"{MAX_ATTEMPTS} 次" in alert.body and STUDENT_NAME not in alert.body
        still = session.get(Notification, dead.id)
        assert still.status == "dead"  # kept, never dropped


def test_dead_school_notification_alerts_the_district_admin(make_services):
    services = make_services()
    ids = enrol(services)
    warn(services, ids["student"])
    with services.db.transaction() as session:
        row = session.scalars(select(Notification).where(Notification.org_unit_id == ids["school"])).first()
        row.status, row.attempts, row.last_error = "dead", MAX_ATTEMPTS, "test"
    run_job(services, escalate_undeliverable, utcnow())
    assert keys(services, "dead-") == [f"dead-{row.id}:inbox:district_admin@{ids['district']}"]


# --- task reminders ------------------------------------------------------------------------------


def test_task_reminders_once_each_and_again_when_the_due_time_moves(make_services):
    services = make_services()
    ids = enrol(services)
    warn(services, ids["student"])
    with services.db.sessionmaker() as session:
        tasks = list(session.scalars(select(PlanTask).where(PlanTask.status == "open").order_by(PlanTask.id)))
    assert tasks
    first_due = min(t.due_at for t in tasks)
    now = first_due - REMINDER_LEAD - SECOND
    assert run_job(services, remind_tasks, now).reminders == 0  # nothing due within 24 h yet
    now = first_due - REMINDER_LEAD
    due_soon = [t for t in tasks if t.due_at <= now + REMINDER_LEAD]
    assert run_job(services, remind_tasks, now).reminders == len(due_soon) >= 1
    assert run_job(services, remind_tasks, now + HOUR).reminders == 0  # once
    assert dispatch_pending(services, now=now).sent >= len(due_soon)
    task = due_soon[0]
    with services.db.sessionmaker() as session:
        message = session.scalar(select(InboxMessage).where(InboxMessage.idempotency_key.like(f"task-{task.id}-%")))
        assert message.role == task.owner_role and message.org_unit_id == ids["school"]
        assert f"「{task.title}」将于" in message.subject and STUDENT_NAME not in message.subject + message.body
        assert session.get(PlanTask, task.id).reminded_at == now

    later = max(t.due_at for t in tasks) + HOUR  # every remaining task is overdue now
    assert run_job(services, remind_tasks, later).reminders == len(tasks) - len(due_soon)
    with services.db.transaction() as session:  # the due time of a reminded task moves a week later
        session.get(PlanTask, task.id).due_at = task.due_at + dt.timedelta(days=7)
    assert run_job(services, remind_tasks, task.due_at + dt.timedelta(days=6)).reminders == 1
    assert len(keys(services, f"task-{task.id}-due-")) == 2


def test_repeating_task_of_a_follow_up_case_is_a_rescreening_reminder(make_services):
    services = make_services()
    ids = enrol(services)
    warn(services, ids["student"])
    now = utcnow()
    with services.db.transaction() as session:
        case = session.scalar(select(Case))
        case.state = "follow_up"
        for task in case.tasks:
            task.status = "done"
        task = PlanTask(case=case, template_task_id="rescreen", title="复评 PHQ-9", owner_role="psychology_teacher",
                        step="follow_up", category="school", due_at=now + 20 * HOUR, every_days=14)  # fmt: skip
        session.add(task)
    assert run_job(services, remind_tasks, now).reminders == 1
    dispatch_pending(services, now=now)
    with services.db.sessionmaker() as session:
        (message,) = session.scalars(select(InboxMessage).where(InboxMessage.idempotency_key.like("task-%")))
        assert message.subject.startswith("[心数] 复评/随访提醒：") and "「复评 PHQ-9」" in message.subject


def test_closed_cases_get_no_reminders(make_services):
    services = make_services()
    warn(services, enrol(services)["student"])
    with services.db.transaction() as session:
        session.scalar(select(Case)).state = "closed"
    assert run_job(services, remind_tasks, utcnow() + 1000 * HOUR).reminders == 0


# --- the one scheduler ------------------------------------------------------------------------------


def test_two_schedulers_never_both_run_jobs(make_services):
    services = make_services()
    warn(services, enrol(services)["student"])
    t0 = utcnow()
    a = Scheduler(services, interval=60, holder="host-a:1")
    b = Scheduler(services, interval=60, holder="host-b:2")
    first = a.tick(t0)
    assert first["ran"] is True and first["dispatch"]["sent"] >= 5
    assert set(first) >= {"escalate_overdue", "remind_tasks", "escalate_undeliverable", "dispatch"}
    assert b.tick(t0) == {
        "holder": "host-b:2",
        "ran": False,
        "at": t0.isoformat(timespec="milliseconds"),
        "lease_held_by": "host-a:1",
    }
    assert b.tick(t0 + dt.timedelta(seconds=119))["ran"] is False  # a's lease: 2 intervals
    assert a.tick(t0 + dt.timedelta(seconds=60))["ran"] is True  # renewed until t0 + 180 s (+ the tick's time)
    assert b.tick(t0 + dt.timedelta(seconds=179))["ran"] is False
    assert b.tick(t0 + dt.timedelta(seconds=185))["ran"] is True  # a stopped ticking: b takes over
    assert a.tick(t0 + dt.timedelta(seconds=186))["ran"] is False
    holder, expires = lease_holder(services)
    assert holder == "host-b:2" and t0 + dt.timedelta(seconds=305) <= expires < t0 + dt.timedelta(seconds=310)
    b.clock = lambda: t0 + dt.timedelta(seconds=200)
    b.release()
    assert a.tick(t0 + dt.timedelta(seconds=200))["ran"] is True  # released: no need to wait
    ttl = dt.timedelta(seconds=10)
    assert acquire_lease(services, "other", "x", t0, ttl) and not acquire_lease(services, "other", "y", t0, ttl)


def test_a_failing_job_does_not_stop_the_others(make_services, monkeypatch):
    services = make_services()
    warn(services, enrol(services)["student"])

    def broken(session, services, now):
        raise RuntimeError("boom")

    monkeypatch.setattr("xinshu.scheduler.escalate_overdue", broken)
    report = Scheduler(services, holder="h:1").tick()
    assert report["escalate_overdue"] == {"error": "RuntimeError: boom"}
    assert report["dispatch"]["sent"] >= 5


def _slow_dispatch(chunks: int, seconds: float, during=None):
    """A stand-in for dispatch_pending: ``chunks`` full chunks of ``seconds`` each, then an empty one."""
    calls = []

    def dispatch(services, now=None, limit=1000):
        calls.append(limit)
        if len(calls) > chunks:
            return DispatchReport()
        time.sleep(seconds)
        if during is not None:
            during(len(calls))
        return DispatchReport(sent=limit)

    return dispatch, calls


def test_the_lease_is_renewed_between_dispatch_chunks(make_services, monkeypatch):
    services = make_services()
    a = Scheduler(services, interval=0.2, holder="slow:1")  # lease 0.4 s
    b = Scheduler(services, interval=0.2, holder="standby:2")
    seen = []
    dispatch, calls = _slow_dispatch(4, 0.3, during=lambda n: seen.append(b.tick(utcnow())))
    monkeypatch.setattr("xinshu.scheduler.dispatch_pending", dispatch)
    report = a.tick(utcnow())  # 4 × 0.3 s: longer than the lease, renewed after each chunk
    assert report["ran"] is True and "lease_lost" not in report and report["took"] >= 1.2
    assert report["dispatch"] == {"sent": 4 * DISPATCH_CHUNK, "failed": 0, "dead": 0, "duplicates": 0}
    assert calls == [DISPATCH_CHUNK] * 5
    assert [t["ran"] for t in seen] == [False] * 4 and {t["lease_held_by"] for t in seen} == {"slow:1"}


def test_a_tick_that_lost_its_lease_stops(make_services, monkeypatch):
    services = make_services()
    a = Scheduler(services, interval=0.2, holder="stalled:1")

    def taken_over(n):  # another process takes the expired lease while this one is stalled
        assert acquire_lease(services, "main", "other:2", utcnow() + dt.timedelta(seconds=1), dt.timedelta(hours=1))

    dispatch, calls = _slow_dispatch(3, 0.5, during=taken_over)
    monkeypatch.setattr("xinshu.scheduler.dispatch_pending", dispatch)
    report = a.tick(utcnow())
    assert report["lease_lost"] is True and report["dispatch"]["sent"] == DISPATCH_CHUNK and calls == [DISPATCH_CHUNK]
    assert lease_holder(services)[0] == "other:2"


def test_two_scheduler_processes_never_run_jobs_at_the_same_time(make_services, tmp_path):
    """Two real ``xinshu scheduler run`` processes on one database: one runs the jobs, the
    other waits; no two ticks that ran jobs overlap in time."""
    services = make_services()
    warn(services, enrol(services)["student"])  # pending notifications for whoever runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINSHU_")}
    env |= {"XINSHU_DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "xinshu.cli", "scheduler", "run", "--interval", "0.5"]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    lines: dict[int, list[dict]] = {proc.pid: [] for proc in procs}

    def read(proc):
        for line in proc.stdout:
            lines[proc.pid].append(json.loads(line))

    readers = [threading.Thread(target=read, args=(proc,), daemon=True) for proc in procs]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 90
        while min(len(ticks) for ticks in lines.values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        # stop the standby first: the holder releases the lease on SIGTERM, and a standby
        # still running would then (rightly) take over
        current = lease_holder(services)
        holder_pid = int(current[0].rsplit(":", 1)[1]) if current else None
        errors = {}
        for proc in sorted(procs, key=lambda proc: proc.pid == holder_pid):
            proc.send_signal(signal.SIGTERM)
            errors[proc.pid] = proc.communicate(timeout=60)[1]
        for reader in readers:
            reader.join(timeout=10)
    assert [proc.returncode for proc in procs] == [0, 0], errors
    assert min(len(ticks) for ticks in lines.values()) >= 5, lines
    ran = sorted(
        (dt.datetime.fromisoformat(t["at"]), t["took"], t["holder"])
        for ticks in lines.values()
        for t in ticks
        if t["ran"]
    )
    assert ran, lines
    for (at, took, holder), (next_at, _, next_holder) in itertools.pairwise(ran):
        if holder != next_holder:  # a takeover happens only after the previous holder's tick ended
            assert at + dt.timedelta(seconds=took) <= next_at + dt.timedelta(seconds=0.1), (holder, next_holder)
    runners = {t["holder"] for ticks in lines.values() for t in ticks if t["ran"]}
    waiting = [t for ticks in lines.values() for t in ticks if not t["ran"]]
    assert waiting and all(t["lease_held_by"] in runners and t["lease_held_by"] != t["holder"] for t in waiting)
    assert len(runners) == 1, runners  # normally no takeover at all while the holder lives
    failed_jobs = [
        t for ticks in lines.values() for t in ticks if any("error" in v for v in t.values() if isinstance(v, dict))
    ]
    assert not failed_jobs, json.dumps(failed_jobs, ensure_ascii=False)
    assert sum(t["dispatch"]["sent"] for ticks in lines.values() for t in ticks if t["ran"]) >= 5
    with services.db.sessionmaker() as session:
        lease = session.get(SchedulerLease, "main")
        assert lease.holder in runners and lease.expires_at <= utcnow()  # released on SIGTERM
        assert {n.status for n in session.scalars(select(Notification))} == {"sent"}
