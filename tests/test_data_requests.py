"""Correction and deletion requests (J2; Minors Protection Law Art. 72): the workflow, who may
do what, what is changed or deleted (counted with SQL), the audit rows, and that an erased
student's name and numbers are in no byte of the SQLite files afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import security_summary
from sqlalchemy import func, select, text

from xinshu.auth import create_user
from xinshu.campaigns import CampaignInput, create_campaign, record_campaign_consent
from xinshu.data_requests import (
    DataRequestError,
    approve_request,
    complete_request,
    is_overdue,
    purge_residue,
    receive_request,
    reject_request,
)
from xinshu.models import (
    Case,
    CaseEvent,
    DataRequest,
    Enrolment,
    GuardianConsent,
    InboxMessage,
    Interview,
    LevelChange,
    LevelJudgement,
    Notification,
    OrgUnit,
    ParentContact,
    Partner,
    PlanTask,
    Referral,
    Response,
    RiskWarning,
    Score,
    Student,
    StudentReport,
    User,
    utcnow,
)
from xinshu.orgs import add_org_unit

PASSWORD = "Privacy-test-2025!"
NAME = "周小明"
ID_NUMBER = "110101201205050012"
STUDENT_NUMBER = "G110101201205050099"
SCHOOL_NO = "S1-000123"
CONTROL_NAME = "吴对照"


def unit(session, code: str) -> OrgUnit:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


def add_student(session, klass: OrgUnit, name: str, id_number: str, number: str, school_no: str) -> Student:
    school = klass.parent.parent
    student = Student(
        school_id=school.id,
        class_id=klass.id,
        name=name,
        gender="F",
        birth_date=dt.date(2012, 5, 5),
        id_number=id_number,
        student_number=number,
        school_student_no=school_no,
        grade_level=7,
    )
    session.add(student)
    session.flush()
    session.add(
        Enrolment(
            student_id=student.id,
            school_id=school.id,
            class_id=klass.id,
            grade_level=7,
            school_year="2025-2026",
            reason="import",
        )
    )
    return student


def add_history(session, student: Student, campaign_id: int, state: str) -> None:
    """One of everything: response + score, report, warning with history and judgement, a case
    (in ``state``) with 2 timeline entries, a task, an interview, a referral, a parent contact, a
    case consent, a notification, an inbox message, and a campaign consent."""
    response = Response(
        student_id=student.id,
        instrument_id="phq9",
        instrument_version="1",
        answers={"phq9_9": 2},
        raw_cells={"学籍号": student.student_number},
        source="test",
        dedupe_key=f"k-{student.id}",
        campaign_id=campaign_id,
    )
    response.scores.append(
        Score(
            scale="total",
            raw_score=15,
            band="moderately_severe",
            answered=9,
            valid=True,
            flags=[],
            instrument_version="1",
            instrument_digest="0" * 64,
        )
    )
    session.add(response)
    session.add(
        StudentReport(
            student_id=student.id,
            source="teacher",
            categories=["withdrawn"],
            reported_by="t",
            note=f"{student.name}近来情绪低落",
        )
    )
    session.flush()
    warning = RiskWarning(
        student_id=student.id,
        response_id=response.id,
        level=3,
        rule_id="phq9.item9",
        ruleset_id="phq9",
        ruleset_version="1",
        ruleset_digest="0" * 64,
        inputs=[],
    )
    session.add(warning)
    session.flush()
    session.add(LevelChange(warning_id=warning.id, from_level=None, to_level=3, source="rules"))
    session.add(
        LevelJudgement(
            student_id=student.id,
            warning_id=warning.id,
            level=3,
            kind="confirm",
            reason=f"访谈{student.name}后确认",
            actor="psy",
        )
    )
    case = Case(
        student_id=student.id,
        school_id=student.school_id,
        warning_id=warning.id,
        level=3,
        state=state,
        template_id="t",
        template_version="1",
    )
    case.tasks.append(
        PlanTask(
            template_task_id="x",
            title="访谈",
            owner_role="psychology_teacher",
            step="interviewing",
            category="school",
            due_at=utcnow(),
        )
    )
    case.events.append(CaseEvent(from_state=None, to_state="warned", actor="system", reason="预警"))
    case.events.append(CaseEvent(from_state="warned", to_state=state, actor="psy", reason=f"{student.name}的处置"))
    session.add(case)
    session.flush()
    partner = session.scalar(select(Partner)) or Partner(
        district_id=unit(session, "D01").id, kind="hospital", name="市精神卫生中心"
    )
    session.add(partner)
    session.flush()
    session.add(
        Interview(
            case_id=case.id,
            form_id="standard",
            form_version="1",
            answers={"notes": student.name},
            level_before=3,
            level_after=3,
            reason="确认",
            interviewer="psy",
        )
    )
    session.add(Referral(case_id=case.id, kind="hospital", partner_id=partner.id, sent_by="psy"))
    session.add(ParentContact(case_id=case.id, by="psy", channel="phone", content=f"与{student.name}的母亲通话"))
    session.add(
        GuardianConsent(
            student_id=student.id,
            case_id=case.id,
            purpose="referral",
            decision="granted",
            guardian_relation="mother",
            evidence="转介同意书",
            recorded_by="psy",
        )
    )
    key = f"n-{student.id}"
    session.add(
        Notification(
            idempotency_key=key,
            warning_id=warning.id,
            case_id=case.id,
            channel="inbox",
            role="principal",
            org_unit_id=student.school_id,
            level=3,
            payload={},
        )
    )
    session.add(
        InboxMessage(
            idempotency_key=key,
            role="principal",
            org_unit_id=student.school_id,
            subject=f"预警 #{warning.id}",
            body="请处理",
            link="/admin/",
            level=3,
        )
    )
    session.flush()


@pytest.fixture
def world(services, org):
    """S1 (grades 7 and 8) and S2; staff; the student, a control student, a campaign with history."""
    with services.db.transaction() as session:
        s1, s2 = unit(session, "S1"), unit(session, "S2")
        g7, g8 = (
            add_org_unit(session, "S1-G07", "七年级", "grade", s1),
            add_org_unit(session, "S1-G08", "八年级", "grade", s1),
        )
        c7 = add_org_unit(session, "S1-G07-C01", "七年级1班", "class", g7)
        c8 = add_org_unit(session, "S1-G08-C02", "八年级2班", "class", g8)
        c_s2 = add_org_unit(
            session, "S2-G07-C01", "七年级1班", "class", add_org_unit(session, "S2-G07", "七年级", "grade", s2)
        )
        student = add_student(session, c7, NAME, ID_NUMBER, STUDENT_NUMBER, SCHOOL_NO)
        control = add_student(session, c7, CONTROL_NAME, "110101201201010034", "G110101201201010034", "S1-000124")
        users = {
            "psy": create_user(session, "psy", PASSWORD, "psychology_teacher", s1),
            "mor": create_user(session, "mor", PASSWORD, "moral_education_director", s1),
            "principal": create_user(session, "principal", PASSWORD, "principal", s1),
            "principal_s2": create_user(session, "principal_s2", PASSWORD, "principal", s2),
            "class_teacher": create_user(session, "class_teacher", PASSWORD, "class_teacher", c7),
            "d1": create_user(session, "d1", PASSWORD, "district_admin", unit(session, "D01")),
            "d2": create_user(session, "d2", PASSWORD, "district_admin", unit(session, "D02")),
        }
        data = CampaignInput(
            "c1",
            "秋季测评",
            s1.id,
            ["phq9"],
            dt.datetime(2025, 9, 30, 16),
            dt.datetime(2025, 10, 31, 16),
            "consent",
            "",
            "筛查",
            365,
        )
        campaign = create_campaign(session, data, "bureau", {"phq9"})
        record_campaign_consent(session, campaign, student, "granted", "mother", f"{NAME}母亲签字的回执", "psy")
        record_campaign_consent(session, campaign, control, "granted", "father", "回执", "psy")
        add_history(session, student, campaign.id, "closed")
        add_history(session, control, campaign.id, "closed")
        ids = {
            "student": student.id,
            "control": control.id,
            "c7": c7.id,
            "c8": c8.id,
            "c_s2": c_s2.id,
            "campaign": campaign.id,
            **{k: u.id for k, u in users.items()},
        }
    return ids


def user(session, ids, key: str) -> User:
    return session.get(User, ids[key])


def rows(session, sql: str, **params):
    return session.execute(text(sql), params).all()


def audit_rows(session):
    return rows(
        session,
        "SELECT action, object_type, object_id, actor, detail FROM audit_event "
        "WHERE object_type IN ('data_request', 'student') ORDER BY id",
    )


# --- receipt and the due date ---------------------------------------------------------------------


def test_due_date_is_fifteen_working_days_on_the_statutory_calendar(services, world):
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        # Received Friday 2025-09-26 10:00 Beijing (02:00 UTC). Working days after it: Sun 9-28 (调休),
        # Mon 9-29, Tue 9-30 (3); 10-1..10-8 holiday; Thu 10-9, Fri 10-10, Sat 10-11 (调休) (6);
        # 10-13..10-17 (11); 10-20, 21, 22, 23 (15) -> due Thursday 2025-10-23 10:00 Beijing = 02:00 UTC.
        request = receive_request(
            session,
            student,
            "deletion",
            user(session, world, "psy"),
            relation="mother",
            channel="letter",
            received_at=dt.datetime(2025, 9, 26, 2, 0),
        )
        assert request.due_at == dt.datetime(2025, 10, 23, 2, 0)
        assert not is_overdue(request, dt.datetime(2025, 10, 23, 2, 0))
        assert is_overdue(request, dt.datetime(2025, 10, 23, 2, 1))


def test_only_school_request_roles_receive(services, world):
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        for key in ("class_teacher", "principal_s2", "d1"):
            with pytest.raises(DataRequestError, match="没有处理"):
                receive_request(
                    session, student, "deletion", user(session, world, key), relation="mother", channel="phone"
                )
        assert (
            receive_request(
                session, student, "deletion", user(session, world, "mor"), relation="self", channel="meeting"
            ).received_by
            == "mor"
        )
        with pytest.raises(DataRequestError, match="至少填写一项"):
            receive_request(session, student, "correction", "psy", relation="mother", channel="phone", changes={})
        with pytest.raises(DataRequestError, match="不能更正的字段"):
            receive_request(
                session, student, "correction", "psy", relation="mother", channel="phone", changes={"id_number": "x"}
            )
        with pytest.raises(DataRequestError, match="班级须为该学生所在学校"):
            receive_request(
                session,
                student,
                "correction",
                "psy",
                relation="mother",
                channel="phone",
                changes={"class_id": world["c_s2"]},
            )


# --- correction ---------------------------------------------------------------------------------------


def test_correction_end_to_end(services, world):
    changes = {"name": "周晓明", "gender": "M", "birth_date": "2012-06-06", "class_id": world["c8"]}
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        request = receive_request(
            session,
            student,
            "correction",
            user(session, world, "psy"),
            relation="mother",
            channel="letter",
            details="家长来信要求更正",
            changes=changes,
        )
        request_id = request.id
    with services.db.transaction() as session:
        request = session.get(DataRequest, request_id)
        for key in ("psy", "principal_s2", "d2"):
            with pytest.raises(DataRequestError):
                approve_request(session, request, user(session, world, key))
        with pytest.raises(DataRequestError, match="不能办结"):
            complete_request(session, request, user(session, world, "psy"))
        approve_request(session, request, user(session, world, "principal"), "情况属实")
        with pytest.raises(DataRequestError):
            complete_request(session, request, user(session, world, "principal_s2"))
        done = complete_request(session, request, user(session, world, "psy"))
        assert done.fields == ["name", "gender", "birth_date", "class_id"]
    with services.db.sessionmaker() as session:
        student_row = rows(
            session,
            "SELECT name, gender, birth_date, class_id, grade_level FROM student WHERE id = :i",
            i=world["student"],
        )
        # Class 八年级2班 is in grade unit 八年级: grade level 8.
        assert student_row == [("周晓明", "M", "2012-06-06", world["c8"], 8)]
        assert rows(
            session,
            "SELECT class_id, grade_level FROM enrolment WHERE student_id = :i AND ended_at IS NULL",
            i=world["student"],
        ) == [(world["c8"], 8)]
        status, result = rows(session, "SELECT status, result FROM data_request WHERE id = :i", i=request_id)[0]
        assert status == "done"
        assert "周晓明" not in result and "2012-06-06" not in result  # the values are gone once applied
        events = audit_rows(session)
    assert [(a, t, o, who) for a, t, o, who, _d in events] == [
        ("create", "data_request", str(request_id), "psy"),
        ("update", "data_request", str(request_id), "principal"),
        ("update", "student", str(world["student"]), "psy"),
        ("update", "data_request", str(request_id), "psy"),
    ]
    student_detail = json.loads(events[2][4])
    assert student_detail["fields"] == ["name", "gender", "birth_date", "class_id"]
    assert student_detail["before"] == {"class_id": world["c7"], "grade_level": 7}
    assert student_detail["after"] == {"class_id": world["c8"], "grade_level": 8}
    for _a, _t, _o, _w, detail in events:  # no personal value in any audit row
        for value in ("周晓明", NAME, "2012-06-06", "2012-05-05"):
            assert value not in detail


def test_rejection_needs_a_reason_and_drops_the_values(services, world):
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        request = receive_request(
            session, student, "correction", "psy", relation="father", channel="phone", changes={"name": "周大明"}
        )
        principal = user(session, world, "principal")
        with pytest.raises(DataRequestError, match="驳回理由"):
            reject_request(session, request, principal, "  ")
        reject_request(session, request, principal, "经核对户口簿，原姓名无误")
        assert request.result == {"fields": ["name"]}
        with pytest.raises(DataRequestError):
            approve_request(session, request, principal)
    with services.db.sessionmaker() as session:
        assert rows(session, "SELECT name FROM student WHERE id = :i", i=world["student"]) == [(NAME,)]
        detail = json.loads(audit_rows(session)[-1][4])
    assert detail["event"] == "reject" and detail["reason"] == "经核对户口簿，原姓名无误"


# --- deletion -------------------------------------------------------------------------------------------

OF_RESPONSES = "response_id IN (SELECT id FROM response WHERE student_id = :i)"
OF_WARNINGS = "warning_id IN (SELECT id FROM warning WHERE student_id = :i)"
OF_CASES = "case_id IN (SELECT id FROM case_file WHERE student_id = :i)"
#: Rows of one student per table, counted with SQL (``:i`` is the student id).
PER_STUDENT_SQL = {
    "response": "SELECT count(*) FROM response WHERE student_id = :i",
    "score": f"SELECT count(*) FROM score WHERE {OF_RESPONSES}",
    "student_report": "SELECT count(*) FROM student_report WHERE student_id = :i",
    "warning": "SELECT count(*) FROM warning WHERE student_id = :i",
    "level_change": f"SELECT count(*) FROM level_change WHERE {OF_WARNINGS}",
    "level_judgement": "SELECT count(*) FROM level_judgement WHERE student_id = :i",
    "case_file": "SELECT count(*) FROM case_file WHERE student_id = :i",
    "case_event": f"SELECT count(*) FROM case_event WHERE {OF_CASES}",
    "plan_task": f"SELECT count(*) FROM plan_task WHERE {OF_CASES}",
    "interview": f"SELECT count(*) FROM interview WHERE {OF_CASES}",
    "referral": f"SELECT count(*) FROM referral WHERE {OF_CASES}",
    "parent_contact": f"SELECT count(*) FROM parent_contact WHERE {OF_CASES}",
    "notification": f"SELECT count(*) FROM notification WHERE {OF_WARNINGS}",
    "guardian_consent": "SELECT count(*) FROM guardian_consent WHERE student_id = :i",
    "enrolment": "SELECT count(*) FROM enrolment WHERE student_id = :i",
}


def counts(session, student_id: int) -> dict[str, int]:
    return {table: session.execute(text(sql), {"i": student_id}).scalar() for table, sql in PER_STUDENT_SQL.items()}


def approved_deletion(services, world, details: str = "") -> int:
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        request = receive_request(
            session, student, "deletion", "psy", relation="mother", channel="letter", details=details
        )
        approve_request(session, request, user(session, world, "d1"), "同意删除")  # a district admin above S1
        return request.id


def test_deletion_end_to_end(services, world, db_url):
    # Before: one of each row per student (add_history), two timeline entries, two consents (campaign and case).
    one_each = {
        "response": 1,
        "score": 1,
        "student_report": 1,
        "warning": 1,
        "level_change": 1,
        "level_judgement": 1,
        "case_file": 1,
        "case_event": 2,
        "plan_task": 1,
        "interview": 1,
        "referral": 1,
        "parent_contact": 1,
        "notification": 1,
        "guardian_consent": 2,
        "enrolment": 1,
    }
    with services.db.sessionmaker() as session:
        assert counts(session, world["student"]) == one_each
    request_id = approved_deletion(services, world, details=f"{NAME}的母亲来信，身份证号{ID_NUMBER}")
    with services.db.transaction() as session:
        done = complete_request(session, session.get(DataRequest, request_id), user(session, world, "psy"))
    assert done.kept is False
    assert done.counts == {
        "scores": 1,
        "responses": 1,
        "reports": 1,
        "notifications": 1,
        "case_events": 2,
        "plan_tasks": 1,
        "interviews": 1,
        "referrals": 1,
        "parent_contacts": 1,
        "case_consents": 1,
        "level_changes": 1,
        "level_judgements": 1,
        "cases": 1,
        "warnings": 1,
    }
    with services.db.sessionmaker() as session:
        after = counts(session, world["student"])
        assert after == {**dict.fromkeys(one_each, 0), "guardian_consent": 1, "enrolment": 1}
        assert counts(session, world["control"]) == one_each  # the other student is untouched
        sid = world["student"]
        assert rows(
            session,
            "SELECT name, id_number, student_number, school_student_no, birth_date, status, active "
            "FROM student WHERE id = :i",
            i=sid,
        ) == [(f"已删除#{sid}", None, None, None, None, "erased", 0)]
        # The kept campaign consent and the request text name the pseudonym, not the child.
        assert rows(session, "SELECT evidence FROM guardian_consent WHERE student_id = :i", i=sid) == [
            (f"已删除#{sid}母亲签字的回执",)
        ]
        assert rows(session, "SELECT details FROM data_request WHERE id = :i", i=request_id) == [
            (f"已删除#{sid}的母亲来信，身份证号已删除#{sid}",)
        ]
        events = audit_rows(session)
    assert [(a, t, who) for a, t, _o, who, _d in events] == [
        ("create", "data_request", "psy"),
        ("update", "data_request", "d1"),
        ("delete", "data_request", "psy"),
    ]
    detail = json.loads(events[-1][4])
    assert detail["counts"] == done.counts and detail["student_id"] == sid and detail["kept"] is False

    # Residue, checked honestly. The erasure ran with secure_delete on, so the pages it changed hold
    # zeros where the rows were; but while the application runs (connections open), the write-ahead
    # log still holds the frames written when the student was added, name and numbers included.
    database = Path(db_url.removeprefix("sqlite:///"))

    def file_bytes() -> bytes:
        files = (database, Path(f"{database}-wal"), Path(f"{database}-shm"))
        return b"".join(p.read_bytes() for p in files if p.exists())

    assert NAME.encode() in file_bytes()  # before the purge: still in the WAL
    report = purge_residue(services.db.engine)  # VACUUM, then truncate the WAL
    assert report == {"dialect": "sqlite", "vacuumed": True, "wal_truncated": True}
    data = file_bytes()
    assert CONTROL_NAME.encode() in data  # the scan does find what is still there
    for secret in (NAME, ID_NUMBER, STUDENT_NUMBER, SCHOOL_NO):
        assert secret.encode() not in data, secret


def test_open_case_blocks_erasure_until_a_legal_exception_is_recorded(services, world):
    with services.db.transaction() as session:
        session.execute(
            text("UPDATE case_file SET state = 'intervening', closed_at = NULL WHERE student_id = :i"),
            {"i": world["student"]},
        )
    request_id = approved_deletion(services, world)
    with pytest.raises(DataRequestError, match="未结束的危机干预个案"), services.db.transaction() as session:
        complete_request(session, session.get(DataRequest, request_id), user(session, world, "psy"))
    with services.db.sessionmaker() as session:
        assert counts(session, world["student"])["response"] == 1  # nothing deleted
        assert session.get(DataRequest, request_id).status == "approved"
    exception = "危机干预个案进行中，个案记录依法保留至结案"
    with services.db.transaction() as session:
        done = complete_request(session, session.get(DataRequest, request_id), user(session, world, "psy"), exception)
    assert done.kept is True and set(done.counts) == {"scores", "responses", "reports"}
    with services.db.sessionmaker() as session:
        after = counts(session, world["student"])
        assert (after["response"], after["score"], after["student_report"]) == (0, 0, 0)
        kept = {k: after[k] for k in ("warning", "case_file", "case_event", "notification", "interview")}
        assert kept == {"warning": 1, "case_file": 1, "case_event": 2, "notification": 1, "interview": 1}
        assert rows(session, "SELECT response_id FROM warning WHERE student_id = :i", i=world["student"]) == [(None,)]
        assert session.get(DataRequest, request_id).legal_exception == exception
        detail = json.loads(audit_rows(session)[-1][4])
    assert detail["kept"] is True and detail["legal_exception"] == exception


def test_erased_student_takes_no_new_request(services, world):
    request_id = approved_deletion(services, world)
    with services.db.transaction() as session:
        complete_request(session, session.get(DataRequest, request_id), "psy")
    with pytest.raises(DataRequestError, match="已删除"), services.db.transaction() as session:
        receive_request(
            session, session.get(Student, world["student"]), "deletion", "psy", relation="mother", channel="phone"
        )


# --- back office -----------------------------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no csrf_token in page"
    return match.group(1) or match.group(2)


def login(client, username: str):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from xinshu.app import create_app

    tmp = tmp_path_factory.mktemp("requests-web")
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp / 'w.db'}",
            "SECRET_KEY": "web-test-key",
            "WTF_CSRF_ENABLED": True,
        }
    )
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "市", "city", None)
        d1, d2 = (
            add_org_unit(session, "D01", "一区", "district", city),
            add_org_unit(session, "D02", "二区", "district", city),
        )
        s1, s2 = add_org_unit(session, "S1", "一中", "school", d1), add_org_unit(session, "S2", "二中", "school", d2)
        c7 = add_org_unit(
            session, "S1-G07-C01", "七年级1班", "class", add_org_unit(session, "S1-G07", "七年级", "grade", s1)
        )
        student = add_student(session, c7, NAME, ID_NUMBER, STUDENT_NUMBER, SCHOOL_NO)
        for username, role, where in (
            ("psy", "psychology_teacher", s1),
            ("principal", "principal", s1),
            ("principal_s2", "principal", s2),
            ("d1", "district_admin", d1),
            ("class_teacher", "class_teacher", c7),
        ):
            create_user(session, username, PASSWORD, role, where)
        student_id = student.id
    yield app, student_id
    services.db.dispose()


def test_web_request_workflow_and_scope(web):
    app, student_id = web
    psy = app.test_client()
    login(psy, "psy")
    page = psy.get("/admin/datarequests/new")
    assert page.status_code == 200
    form = {
        "csrf_token": csrf_token(page.get_data(as_text=True)),
        "student": STUDENT_NUMBER,
        "kind": "deletion",
        "relation": "mother",
        "channel": "letter",
        "details": "家长来信要求删除",
        "new_class": "0",
        "new_gender": "",
    }
    created = psy.post("/admin/datarequests/new", data=form)
    assert created.status_code == 302, created.get_data(as_text=True)[:800]
    detail_url = created.headers["Location"]
    request_id = int(re.search(r"/datarequests/(\d+)/", detail_url).group(1))
    assert NAME in psy.get(detail_url).get_data(as_text=True)
    assert (
        psy.post(f"/admin/datarequests/{request_id}/approve", data={"csrf_token": form["csrf_token"]}).status_code
        == 403
    )

    d1 = app.test_client()
    login(d1, "d1")
    listing = d1.get("/admin/datarequests/").get_data(as_text=True)
    assert f"#{student_id}" in listing and NAME not in listing  # no name for the district administrator
    other = app.test_client()
    login(other, "principal_s2")
    assert other.get(detail_url).status_code == 404
    teacher = app.test_client()
    login(teacher, "class_teacher")
    assert teacher.get("/admin/datarequests/").status_code == 403

    principal = app.test_client()
    login(principal, "principal")
    token = csrf_token(principal.get(detail_url).get_data(as_text=True))
    no_token = principal.post(f"/admin/datarequests/{request_id}/approve", data={"reason": "同意"})
    security_summary.count("csrf_posts_tried")
    security_summary.count("csrf_less_accepted", no_token.status_code != 400)
    assert no_token.status_code == 400
    assert (
        principal.post(
            f"/admin/datarequests/{request_id}/approve", data={"csrf_token": token, "reason": "同意"}
        ).status_code
        == 302
    )
    done = psy.post(
        f"/admin/datarequests/{request_id}/complete", data={"csrf_token": form["csrf_token"]}, follow_redirects=True
    )
    html = done.get_data(as_text=True)
    assert "已办结" in html and NAME not in html
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(DataRequest).where(DataRequest.status == "done")) == 1
        assert session.get(Student, student_id).name == f"已删除#{student_id}"
