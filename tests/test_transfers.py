"""Transfers between schools: same student row, enrolment history, cases follow, visibility flips.

Org tree (conftest ``org`` plus one school): C01 → D01 (S1, S3), D02 (S2).
学生0 of S1 has a response, a level-3 warning, an open case owned by S1's
psychology teacher and an older closed case.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from test_rosters import fictional_id, write_xlsx

from xinshu.auth import create_user
from xinshu.class_units import ClassUnits
from xinshu.cli import main
from xinshu.errors import XinshuError
from xinshu.models import (
    AuditEvent,
    Case,
    CaseEvent,
    Enrolment,
    OrgUnit,
    PlanTask,
    Response,
    RiskWarning,
    Student,
    User,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.rollover import rollover
from xinshu.rosters import import_roster
from xinshu.scoping import scope_query
from xinshu.transfers import TransferDenied, find_class, find_student, transfer_student

PASSWORD = "Xinshu-Transfer-2026"
HEADER = ["姓名", "性别", "身份证号", "年级", "班级", "校内学号"]
ID_0 = fictional_id("110101", "20130301", 401)
ID_1 = fictional_id("110101", "20130302", 403)
NOW = dt.datetime(2026, 11, 2, 2, 0)  # 2026-11-02 10:00 Beijing time: school year 2026-2027


def _unit(session, code: str) -> OrgUnit:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


@pytest.fixture
def world(services, org, tmp_path):
    """Students, history and users; returns ids."""
    with services.db.transaction() as session:
        add_org_unit(session, "S3", "三中", "school", _unit(session, "D01"))
    rows = [["学生0", "男", ID_0, "七年级", "1班", "S1-001"], ["学生1", "男", ID_1, "七年级", "1班", "S1-002"]]
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "s1.xlsx", HEADER, rows), "S1", school_year="2026-2027")
    with services.db.transaction() as session:
        s3, s2 = _unit(session, "S3"), _unit(session, "S2")
        target = ClassUnits(session, s3).get(8, 2)  # S3-G08-C02
        other = ClassUnits(session, s2).get(7, 1)  # S2-G07-C01
        ClassUnits(session, s3).get(7, 1)  # S3-G07-C01
        student = session.scalar(select(Student).where(Student.id_number == ID_0))
        ids = {"student": student.id, "target": target.id, "other": other.id, "s1": student.school_id, "s3": s3.id}
        ids.update(_history(session, student))
        for name, role, code in [("psy_a", "psychology_teacher", "S1"), ("psy_b", "psychology_teacher", "S3"),
                                 ("dist1", "district_admin", "D01"), ("dist2", "district_admin", "D02"),
                                 ("boss", "bureau_admin", "C01"), ("prin_a", "principal", "S1")]:  # fmt: skip
            create_user(session, name, PASSWORD, role, _unit(session, code))
    return ids


def _history(session, student: Student) -> dict[str, int]:
    response = Response(student_id=student.id, instrument_id="phq9", instrument_version="1", answers={}, raw_cells={},
                        source="test", dedupe_key=f"t-{student.id}")  # fmt: skip
    session.add(response)
    session.flush()
    warning = RiskWarning(student_id=student.id, response_id=response.id, level=3, rule_id="r", ruleset_id="rs",
                          ruleset_version="1", ruleset_digest="0" * 64, inputs=[])  # fmt: skip
    session.add(warning)
    session.flush()
    closed = Case(student_id=student.id, school_id=student.school_id, warning_id=warning.id, level=2, state="closed",
                  template_id="t", template_version="1", closed_at=utcnow())  # fmt: skip
    session.add(closed)
    session.flush()
    case = Case(student_id=student.id, school_id=student.school_id, warning_id=warning.id, level=3,
                state="intervening", template_id="t", template_version="1", owner="psy_a")  # fmt: skip
    case.tasks.append(PlanTask(template_task_id="x", title="跟进", owner_role="psychology_teacher", step="intervening",
                               category="school", due_at=utcnow()))  # fmt: skip
    session.add(case)
    session.flush()
    return {"warning": warning.id, "response": response.id, "case": case.id, "closed_case": closed.id}


def visible(session, model, username: str) -> list[int]:
    user = session.scalar(select(User).where(User.username == username))
    return list(session.scalars(scope_query(select(model.id), model, user)))


def _transfer(services, world, username: str, class_id: int | None = None, **kwargs):
    with services.db.transaction() as session:
        user = session.scalar(select(User).where(User.username == username))
        student = session.get(Student, world["student"])
        klass = session.get(OrgUnit, class_id or world["target"])
        kwargs.setdefault("now", NOW)
        return transfer_student(session, student, klass, user, kwargs.pop("reason", "家庭搬迁"), **kwargs)


def test_transfer_keeps_history_and_flips_visibility(services, world):
    with services.db.sessionmaker() as session:
        assert visible(session, RiskWarning, "psy_a") == [world["warning"]]
        assert visible(session, RiskWarning, "psy_b") == []
    result = _transfer(services, world, "dist1", school_student_no="S3-100")
    assert (result.student_id, result.from_school_id, result.to_school_id, result.grade_level) == (
        world["student"], world["s1"], world["s3"], 8,
    )  # fmt: skip
    assert result.cases_moved == [world["case"]]
    with services.db.sessionmaker() as session:
        # After: B's psychology teacher sees the warning, response and case; A's sees nothing.
        assert visible(session, RiskWarning, "psy_b") == [world["warning"]]
        assert visible(session, Response, "psy_b") == [world["response"]]
        assert sorted(visible(session, Case, "psy_b")) == sorted([world["case"], world["closed_case"]])
        assert visible(session, RiskWarning, "psy_a") == []
        assert visible(session, Case, "psy_a") == []
        student = session.get(Student, world["student"])
        assert (student.school_id, student.class_id, student.grade_level, student.school_student_no) == (
            world["s3"], world["target"], 8, "S3-100",
        )  # fmt: skip
        # grade 8 in 2026-2027 (the school year of the move's enrolment row) entered 初中 in 2025
        assert student.entry_year == 2025 and student.status == "enrolled"
        rows = session.scalars(select(Enrolment).where(Enrolment.student_id == student.id).order_by(Enrolment.id))
        assert [(e.school_id, e.reason, e.end_reason, e.ended_at is None, e.actor) for e in rows] == [
            (world["s1"], "import", "transfer", False, "system"),
            (world["s3"], "transfer", None, True, "dist1"),
        ]
        case, closed = session.get(Case, world["case"]), session.get(Case, world["closed_case"])
        assert (case.school_id, case.state, case.owner) == (world["s3"], "intervening", None)
        assert [t.status for t in case.tasks] == ["open"]  # the intervention goes on
        assert closed.school_id == world["s1"]  # a finished case records where it was handled
        note = session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)).one()
        assert (note.kind, note.actor, note.from_state, note.to_state) == (
            "note",
            "dist1",
            "intervening",
            "intervening",
        )
        assert "学生转学：由 一中 转至 三中" in note.reason and "psy_a" in note.reason and "家庭搬迁" in note.reason
        event = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "roster")).all()[-1]
        assert (event.action, event.actor, event.object_id) == ("update", "dist1", str(world["s3"]))
        assert event.detail["student_id"] == world["student"] and event.detail["cases_moved"] == [world["case"]]
        assert ID_0 not in json.dumps(event.detail) and "学生0" not in json.dumps(event.detail, ensure_ascii=False)


@pytest.mark.parametrize("username", ["dist2", "prin_a", "psy_a"])
def test_only_an_admin_of_both_schools_may_transfer(services, world, username):
    with pytest.raises(TransferDenied) as info:
        _transfer(services, world, username)
    assert isinstance(info.value, PermissionError)
    with services.db.sessionmaker() as session:
        assert session.get(Student, world["student"]).school_id == world["s1"]
        assert session.scalar(select(Enrolment.end_reason).where(Enrolment.student_id == world["student"])) is None


def test_bureau_admin_transfers_across_districts(services, world):
    result = _transfer(services, world, "boss", class_id=world["other"])
    assert result.grade_level == 7
    with pytest.raises(TransferDenied):  # D01's administrator does not cover S2
        _transfer(services, world, "dist1", class_id=world["target"])


def test_refusals(services, world):
    with services.db.sessionmaker() as session:
        same_school = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "S1-G07-C01"))
    with pytest.raises(XinshuError, match="学生已在该校"):
        _transfer(services, world, "dist1", class_id=same_school)
    with pytest.raises(XinshuError, match="请填写转学原因"):
        _transfer(services, world, "dist1", reason="  ")
    _transfer(services, world, "dist1", school_student_no="S3-100")
    with services.db.transaction() as session:  # another student of S1 asks for a number S3 already uses
        other = session.scalar(select(Student).where(Student.id_number == ID_1))
        user = session.scalar(select(User).where(User.username == "dist1"))
        with pytest.raises(XinshuError, match="新学校已有学生使用校内学号 S3-100"):
            transfer_student(
                session, other, find_class(session, "S3-G07-C01"), user, "搬家", school_student_no="S3-100"
            )


def test_graduated_student_is_enrolled_again(services, world):
    with services.db.transaction() as session:
        student = session.get(Student, world["student"])
        student.status, student.active = "graduated", False
    _transfer(services, world, "dist1")
    with services.db.sessionmaker() as session:
        student = session.get(Student, world["student"])
        assert (student.status, student.active, student.school_id) == ("enrolled", True, world["s3"])


def test_transfer_after_the_rollover_keeps_the_school_year(services, world):
    with services.db.transaction() as session:
        rollover(session, "S1", "2027-2028")  # 学生0: grade 7 → 8, entry year 2026
    result = _transfer(services, world, "dist1")  # into 八年级2班 in November 2026 by the calendar
    assert (result.school_year, result.grade_level) == ("2027-2028", 8)  # the student's year, not the calendar's
    with services.db.sessionmaker() as session:
        assert session.get(Student, world["student"]).entry_year == 2026


def test_find_student_and_class(services, world):
    with services.db.transaction() as session:
        session.get(Student, world["student"]).student_number = "G" + ID_0
    with services.db.sessionmaker() as session:
        assert find_student(session, " G" + ID_0).id == world["student"]
        assert find_student(session, str(world["student"])).id == world["student"]
        assert find_student(session, f"#{world['student']}").id == world["student"]
        with pytest.raises(XinshuError, match="找不到该学生") as info:
            find_student(session, "G" + ID_1)  # no such 学籍号; the message does not repeat it
        assert ID_1 not in str(info.value)
        with pytest.raises(XinshuError, match="找不到该学生"):
            find_student(session, "999999")
        with pytest.raises(XinshuError, match="找不到代码为 S3 的班级"):
            find_class(session, "S3")  # a school, not a class


def test_cli_transfer(services, world, db_url):
    args = ["transfer", str(world["student"]), "--to-class", "S3-G08-C02", "--reason", "家庭搬迁", "--database", db_url]
    denied = CliRunner().invoke(main, [*args, "--actor", "dist2"])
    assert denied.exit_code == 1 and "只有同时管辖两所学校" in denied.stderr
    unknown = CliRunner().invoke(main, [*args, "--actor", "nobody"])
    assert unknown.exit_code == 1 and "no active user 'nobody'" in unknown.stderr
    ok = CliRunner().invoke(main, [*args, "--actor", "dist1"])
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.stdout)
    assert (out["student_id"], out["to_school_id"], out["to_class_id"], out["cases_moved"]) == (
        world["student"], world["s3"], world["target"], [world["case"]],
    )  # fmt: skip
