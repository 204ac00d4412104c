"""The retention job (I3, J4): per-campaign and default periods for responses, the audit floor of
183 days, delivered messages, students with an open case held, dry runs, the audit row, the
command line, and erasures re-applied after a restore.

Ages are set by hand relative to now; the expected survivors are listed by hand.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import DatabaseError

from xinshu.campaigns import CampaignInput, create_campaign
from xinshu.models import (
    AuditEvent,
    Case,
    DataRequest,
    InboxMessage,
    Notification,
    OrgUnit,
    Response,
    RiskWarning,
    Score,
    Student,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.retention import RetentionError, RetentionPolicy, run_retention

DAY = dt.timedelta(days=1)


def add_response(session, student: Student, age_days: float, campaign_id: int | None, tag: str) -> Response:
    response = Response(
        student_id=student.id,
        instrument_id="phq9",
        instrument_version="1",
        answers={},
        raw_cells={},
        source="test",
        dedupe_key=tag,
        campaign_id=campaign_id,
        submitted_at=utcnow() - age_days * DAY,
    )
    for scale in ("total", "item9"):
        response.scores.append(
            Score(
                scale=scale,
                raw_score=1,
                band="low",
                answered=9,
                valid=True,
                flags=[],
                instrument_version="1",
                instrument_digest="0" * 64,
            )
        )
    session.add(response)
    session.flush()
    return response


@pytest.fixture
def world(services, org):
    """Students A (no case), B (open case), C; a 30-day campaign; responses, audit rows, messages."""
    now = utcnow()
    with services.db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "S1"))
        klass = add_org_unit(
            session, "S1-C1", "七年级1班", "class", add_org_unit(session, "S1-G7", "七年级", "grade", school)
        )
        students = {}
        for key in ("a", "b", "c"):
            students[key] = Student(
                school_id=school.id,
                class_id=klass.id,
                name=f"学生{key}",
                gender="F",
                grade_level=7,
                student_number=f"N-{key}",
            )
            session.add(students[key])
        session.flush()
        data = CampaignInput(
            "short",
            "短期测评",
            school.id,
            ["phq9"],
            now - 60 * DAY,
            now + DAY,
            "consent",
            "",
            "筛查",
            retention_days=30,
        )
        campaign = create_campaign(session, data, "tester", None)
        r = {
            "a29": add_response(session, students["a"], 29, campaign.id, "a29"),
            "a31": add_response(session, students["a"], 31, campaign.id, "a31"),
            "b31": add_response(session, students["b"], 31, campaign.id, "b31"),
            "c1094": add_response(session, students["c"], 1094, None, "c1094"),
            "c1096": add_response(session, students["c"], 1096, None, "c1096"),
        }
        warning = RiskWarning(
            student_id=students["a"].id,
            response_id=r["a31"].id,
            level=2,
            rule_id="x",
            ruleset_id="x",
            ruleset_version="1",
            ruleset_digest="0" * 64,
            inputs=[],
        )
        b_warning = RiskWarning(
            student_id=students["b"].id,
            response_id=r["b31"].id,
            level=3,
            rule_id="x",
            ruleset_id="x",
            ruleset_version="1",
            ruleset_digest="0" * 64,
            inputs=[],
        )
        session.add_all([warning, b_warning])
        session.flush()
        session.add(
            Case(
                student_id=students["b"].id,
                school_id=school.id,
                warning_id=b_warning.id,
                level=3,
                state="intervening",
                template_id="t",
                template_version="1",
            )
        )
        for age in (179, 181, 400):
            session.add(
                AuditEvent(at=now - age * DAY, action="read", object_type="student", object_id=str(age), actor="old")
            )
        for key, status, age in (
            ("sent366", "sent", 366),
            ("sent364", "sent", 364),
            ("dead400", "dead", 400),
            ("pending400", "pending", 400),
        ):
            sent_at = now - age * DAY if status == "sent" else None
            session.add(
                Notification(
                    idempotency_key=key,
                    warning_id=warning.id,
                    channel="inbox",
                    role="principal",
                    org_unit_id=school.id,
                    level=2,
                    payload={},
                    status=status,
                    created_at=now - age * DAY,
                    sent_at=sent_at,
                )
            )
        for key, age in (("inbox366", 366), ("inbox364", 364)):
            session.add(
                InboxMessage(
                    idempotency_key=key,
                    role="principal",
                    org_unit_id=school.id,
                    subject="s",
                    body="b",
                    link="/",
                    level=2,
                    created_at=now - age * DAY,
                )
            )
        ids = {k: v.id for k, v in r.items()}
        ids.update({f"student_{k}": s.id for k, s in students.items()}, warning=warning.id, campaign=campaign.id)
    return ids


def snapshot(services) -> dict:
    with services.db.sessionmaker() as session:
        return {
            "responses": sorted(session.scalars(select(Response.dedupe_key))),
            "scores": session.scalar(text("SELECT count(*) FROM score")),
            "audit_old": sorted(session.scalars(select(AuditEvent.object_id).where(AuditEvent.actor == "old"))),
            "notifications": sorted(session.scalars(select(Notification.idempotency_key))),
            "inbox": sorted(session.scalars(select(InboxMessage.idempotency_key))),
        }


EXPECTED_COUNTS = {
    # a31 (campaign, 31 > 30 days) and c1096 (no campaign, 1096 > 1095) go; b31 is held (open case).
    "responses_deleted": 2,
    "scores_deleted": 4,
    "responses_held": 1,
    "audit_deleted": 1,  # the 400-day row (365-day default)
    "notifications_deleted": 1,  # sent 366 days ago; dead and pending rows never go
    "inbox_deleted": 1,
    "reerased": 0,
    "reerase_held": 0,
}


def test_dry_run_counts_and_deletes_nothing(services, world):
    before = snapshot(services)
    with services.db.transaction() as session:
        report = run_retention(session, RetentionPolicy(), dry_run=True)
    assert {k: getattr(report, k) for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert report.by_campaign == {"short": 1, "": 1}
    assert snapshot(services) == before
    with services.db.sessionmaker() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "retention"))
    assert event.detail["dry_run"] is True and event.detail["responses_deleted"] == 2


def test_run_deletes_what_is_past_its_period(services, world):
    with services.db.transaction() as session:
        report = run_retention(session, RetentionPolicy(), actor="cron")
    assert {k: getattr(report, k) for k in EXPECTED_COUNTS} == EXPECTED_COUNTS
    assert snapshot(services) == {
        "responses": ["a29", "b31", "c1094"],
        "scores": 6,
        "audit_old": ["179", "181"],
        "notifications": ["dead400", "pending400", "sent364"],
        "inbox": ["inbox364"],
    }
    with services.db.sessionmaker() as session:
        # The warning stays, without its deleted response.
        assert session.get(RiskWarning, world["warning"]).response_id is None
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "retention")))
    assert len(events) == 1 and events[0].actor == "cron"
    assert {k: events[0].detail[k] for k in EXPECTED_COUNTS} == EXPECTED_COUNTS


def test_held_responses_go_once_the_case_is_closed(services, world):
    with services.db.transaction() as session:
        run_retention(session, RetentionPolicy())
        case = session.scalar(select(Case).where(Case.student_id == world["student_b"]))
        case.state, case.closed_at = "closed", utcnow()
    with services.db.transaction() as session:
        report = run_retention(session, RetentionPolicy())
    assert (report.responses_deleted, report.responses_held) == (1, 0)
    assert snapshot(services)["responses"] == ["a29", "c1094"]


def test_audit_floor_is_183_days(services, world, monkeypatch):
    with pytest.raises(RetentionError, match="183"):
        RetentionPolicy(audit_days=182)
    monkeypatch.setenv("XINSHU_RETENTION_AUDIT_DAYS", "100")
    with pytest.raises(RetentionError, match="183"):
        RetentionPolicy.from_config({})
    monkeypatch.setenv("XINSHU_RETENTION_AUDIT_DAYS", "a year")
    with pytest.raises(RetentionError, match="whole number"):
        RetentionPolicy.from_config({})
    policy = RetentionPolicy.from_config({"RETENTION_AUDIT_DAYS": "183"})  # the config wins over the environment
    assert policy.audit_days == 183
    with services.db.transaction() as session:
        assert run_retention(session, policy).audit_deleted == 1  # 179 and 181 days are younger than 183
    assert snapshot(services)["audit_old"] == ["179", "181"]
    # And the database itself refuses to delete a row younger than 183 days (the trigger).
    with pytest.raises(DatabaseError, match="kept at least 183 days"), services.db.transaction() as session:
        session.execute(text("DELETE FROM audit_event WHERE object_id = '181' AND actor = 'old'"))


def test_cli_retention_run(services, world, db_url, monkeypatch):
    from xinshu.cli import main

    monkeypatch.setenv("XINSHU_RETENTION_RESPONSE_DAYS", "1093")  # now c1094 is past its period too
    result = CliRunner().invoke(main, ["retention", "run", "--dry-run", "--database", db_url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["dry_run"], report["responses_deleted"], report["policy"]["response_days"]) == (True, 3, 1093)
    assert len(snapshot(services)["responses"]) == 5
    result = CliRunner().invoke(main, ["retention", "run", "--database", db_url])
    assert json.loads(result.output)["responses_deleted"] == 3
    assert snapshot(services)["responses"] == ["a29", "b31"]


def test_erasure_undone_by_a_restore_is_reapplied(services, world):
    # A completed deletion request whose student came back from a backup (not erased, with a response).
    with services.db.transaction() as session:
        student = session.get(Student, world["student_c"])
        session.add(
            DataRequest(
                student_id=student.id,
                kind="deletion",
                status="done",
                received_by="psy",
                completed_by="psy",
                completed_at=utcnow(),
            )
        )
    with services.db.transaction() as session:
        report = run_retention(session, RetentionPolicy())
    assert report.reerased == 1
    with services.db.sessionmaker() as session:
        student = session.get(Student, world["student_c"])
        assert (student.name, student.status, student.student_number) == (f"已删除#{student.id}", "erased", None)
        assert session.scalar(text("SELECT count(*) FROM response WHERE student_id = :i"), {"i": student.id}) == 0
    with services.db.transaction() as session:
        assert run_retention(session, RetentionPolicy()).reerased == 0  # once is enough
