"""Classified intervention: referrals and their loop, guardian consent, the parent
ledger, the partner directory and resource library (imports and back office).

Core functions run on a fresh SQLite file per test (``services``, ``org``);
the back-office tests share one application over a real SQLite file per
module, CSRF on, logging in through the form.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from click.testing import CliRunner
from flask import Flask
from flask_login import login_user
from sqlalchemy import func, select

from xinshu.app import create_app
from xinshu.auth import create_user
from xinshu.cli import main
from xinshu.errors import XinshuError
from xinshu.models import (
    Case,
    CaseEvent,
    GuardianConsent,
    OrgUnit,
    ParentContact,
    Partner,
    PlanTask,
    Referral,
    Resource,
    RiskWarning,
    Student,
    User,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.referrals import (
    acknowledge_referral,
    add_parent_contact,
    import_partners,
    import_resources,
    load_yaml_list,
    record_consent,
    record_outcome,
    record_return_plan,
    refer,
)
from xinshu.services import PROJECT_ROOT

PASSWORD = "Correct horse battery 7"
CSRF_INPUT = re.compile(r'name="([a-z0-9]*-?csrf_token)" type="hidden" value="([^"]+)"')
PARTNERS_YAML = PROJECT_ROOT / "examples" / "partners" / "demo_partners.yaml"
LIBRARY_YAML = PROJECT_ROOT / "examples" / "resources" / "library.yaml"
SECRET = "孩子说最近总想消失-机密内容"


# --- building blocks ----------------------------------------------------------------


def add_class(session, school: OrgUnit) -> OrgUnit:
    grade = add_org_unit(session, f"{school.code}-g7", "七年级", "grade", school)
    return add_org_unit(session, f"{school.code}-g7-1", "七年级1班", "class", grade)


def add_case(session, school: OrgUnit, klass: OrgUnit, no: str, state: str = "intervening") -> Case:
    """A student of ``klass`` with a level-3 warning and an open case."""
    student = Student(school_id=school.id, class_id=klass.id, name=f"学生{no}", gender="F", grade_level=7,
                      school_student_no=no)  # fmt: skip
    session.add(student)
    session.flush()
    warning = RiskWarning(student_id=student.id, level=3, rule_id="t", ruleset_id="t", ruleset_version="1",
                          ruleset_digest="0" * 64, inputs=[])  # fmt: skip
    session.add(warning)
    session.flush()
    case = Case(student_id=student.id, school_id=school.id, warning_id=warning.id, level=3, state=state,
                template_id="level3-severe", template_version="1")  # fmt: skip
    session.add(case)
    session.flush()
    return case


def add_partner(session, district: OrgUnit, kind: str, name: str, active: bool = True) -> Partner:
    partner = Partner(district_id=district.id, kind=kind, name=name, department="门诊", phone="099-00000001",
                      active=active)  # fmt: skip
    session.add(partner)
    session.flush()
    return partner


def unit(session, code: str) -> OrgUnit:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


@pytest.fixture
def world(services, org):
    """Case in school S1 (district D01), partners of D01 and D02."""
    with services.db.transaction() as session:
        s1, d1, d2 = unit(session, "S1"), unit(session, "D01"), unit(session, "D02")
        case = add_case(session, s1, add_class(session, s1), "001")
        ids = {
            "case": case.id,
            "student": case.student_id,
            "hospital": add_partner(session, d1, "hospital", "一区精神卫生中心").id,
            "community": add_partner(session, d1, "community", "一区社区心理服务站").id,
            "police": add_partner(session, d1, "police", "一区派出所").id,
            "hotline": add_partner(session, d1, "hotline", "心理援助热线").id,
            "closed_hospital": add_partner(session, d1, "hospital", "已停用医院", active=False).id,
            "other_district": add_partner(session, d2, "hospital", "二区医院").id,
        }
    return ids


def events(session, case_id: int, kind: str) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.kind == kind)))


# --- the referral loop --------------------------------------------------------------


def test_loop_order_is_enforced_and_every_step_is_on_the_timeline(services, world):
    with services.db.transaction() as session:
        case = session.get(Case, world["case"])
        referral = refer(session, case, "police", world["police"], "psy", "学生遭受校外人员威胁，强制报告")
        assert (referral.status, referral.sent_by) == ("sent", "psy")
        with pytest.raises(XinshuError, match="'outcome' comes only after 'acknowledged'"):
            record_outcome(session, referral, "已出警", "psy")
        with pytest.raises(XinshuError, match="'returned' comes only after 'outcome'"):
            record_return_plan(session, referral, "返校计划", "psy")
        assert referral.status == "sent"
        acknowledge_referral(session, referral, "psy", reason="派出所已受理")
        with pytest.raises(XinshuError, match="'acknowledged' comes only after 'sent'"):
            acknowledge_referral(session, referral, "psy")
        with pytest.raises(XinshuError, match="'returned' comes only after 'outcome'"):
            record_return_plan(session, referral, "返校计划", "psy")
        with pytest.raises(XinshuError, match="请填写转介结果"):
            record_outcome(session, referral, "  ", "psy")
        record_outcome(session, referral, "已处置，学生安全", "principal")
        record_return_plan(session, referral, "下周一返校，心理教师每周随访", "psy")
        assert referral.status == "returned"
        assert referral.sent_at <= referral.acknowledged_at <= referral.outcome_at <= referral.returned_at
        for step in (acknowledge_referral, record_outcome, record_return_plan):
            args = (session, referral, "x", "psy") if step is not acknowledge_referral else (session, referral, "psy")
            with pytest.raises(XinshuError, match="comes only after"):
                step(*args)
    with services.db.sessionmaker() as session:
        timeline = events(session, world["case"], "referral")
        assert [e.actor for e in timeline] == ["psy", "psy", "principal", "psy"]
        assert [e.reason.split("：")[1].split("；")[0] for e in timeline] == [
            "已转出",
            "对方已接收",
            "已反馈结果",
            "已制定返校计划",
        ]
        assert "强制报告" in timeline[0].reason and "派出所已受理" in timeline[1].reason
        assert all(e.at is not None and e.to_state == e.from_state == "intervening" for e in timeline)
        assert session.get(Case, world["case"]).state == "intervening"  # a referral never moves the case


def test_step_times_cannot_be_in_the_future_or_before_the_previous_step(services, world):
    with services.db.transaction() as session:
        referral = refer(session, session.get(Case, world["case"]), "police", world["police"], "psy", "报告")
        with pytest.raises(XinshuError, match="记录时间不能晚于现在"):
            acknowledge_referral(session, referral, "psy", at=utcnow() + dt.timedelta(days=1))
        with pytest.raises(XinshuError, match="before the previous step"):
            acknowledge_referral(session, referral, "psy", at=referral.sent_at - dt.timedelta(days=1))
        earlier = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        acknowledge_referral(session, referral, "psy", at=earlier + dt.timedelta(seconds=1))
        assert referral.acknowledged_at.tzinfo is None


def test_hospital_referral_needs_the_guardians_granted_consent(services, world):
    with services.db.transaction() as session:
        case = session.get(Case, world["case"])
        student = session.get(Student, world["student"])
        with pytest.raises(XinshuError, match="需要监护人对“转介”的书面同意（尚未记录"):
            refer(session, case, "hospital", world["hospital"], "psy", "建议就医评估")
        with pytest.raises(XinshuError, match="监护人对“转介”的书面同意"):
            refer(session, case, "community", world["community"], "psy", "社工探访")
        record_consent(session, student, "referral", "refused", "mother", "电话拒绝，已记录", "psy", case=case)
        with pytest.raises(XinshuError, match="最近一次为：拒绝"):
            refer(session, case, "hospital", world["hospital"], "psy", "建议就医评估")
        record_consent(session, student, "assessment", "granted", "mother", "签字同意书存档 A-1", "psy")
        with pytest.raises(XinshuError, match="最近一次为：拒绝"):  # another purpose does not count
            refer(session, case, "hospital", world["hospital"], "psy", "建议就医评估")
        record_consent(session, student, "referral", "granted", "mother", "签字同意书存档 A-2", "psy", case=case)
        referral = refer(session, case, "hospital", world["hospital"], "psy", "建议就医评估")
        assert referral.status == "sent"
        record_consent(session, student, "referral", "withdrawn", "father", "父亲来电撤回", "psy", case=case)
        with pytest.raises(XinshuError, match="最近一次为：撤回"):
            refer(session, case, "hospital", world["hospital"], "psy", "再次转介")
        # Police referrals are mandatory reports (未成年人保护法 Art. 11): no consent needed.
        assert refer(session, case, "police", world["police"], "psy", "强制报告").status == "sent"


def test_partner_must_be_of_the_case_district_kind_and_active(services, world):
    with services.db.transaction() as session:
        case = session.get(Case, world["case"])
        record_consent(session, case.student, "referral", "granted", "mother", "同意书", "psy", case=case)
        with pytest.raises(XinshuError, match="不在本个案所在的区"):
            refer(session, case, "hospital", world["other_district"], "psy", "r")
        with pytest.raises(XinshuError, match="的类别是“公安联络”，不能用于医院转介"):
            refer(session, case, "hospital", world["police"], "psy", "r")
        with pytest.raises(XinshuError, match="已停用"):
            refer(session, case, "hospital", world["closed_hospital"], "psy", "r")
        with pytest.raises(XinshuError, match="unknown referral kind 'hotline'"):
            refer(session, case, "hotline", world["hotline"], "psy", "r")
        with pytest.raises(XinshuError, match="no partner"):
            refer(session, case, "hospital", 999999, "psy", "r")
        with pytest.raises(XinshuError, match="请填写理由"):
            refer(session, case, "hospital", world["hospital"], "psy", " ")
        case.state = "closed"
        with pytest.raises(XinshuError, match="not open"):
            refer(session, case, "hospital", world["hospital"], "psy", "r")
        assert session.scalar(select(func.count()).select_from(Referral)) == 0


# --- parent ledger and consent -------------------------------------------------------


def test_parent_ledger_rows_and_events_and_it_is_append_only(services, world, caplog):
    at = utcnow() - dt.timedelta(hours=3)
    with caplog.at_level(logging.DEBUG), services.db.transaction() as session:
        case = session.get(Case, world["case"])
        contact = add_parent_contact(session, case, "teacher-li", "phone", SECRET, "母亲表示会带孩子就医", at=at)
        add_parent_contact(session, case, "psy", "home_visit", "家访，了解家庭情况")
        with pytest.raises(XinshuError, match="unknown channel"):
            add_parent_contact(session, case, "psy", "email", "x")
        with pytest.raises(XinshuError, match="请填写沟通内容"):
            add_parent_contact(session, case, "psy", "phone", "")
        contact_id = contact.id
    assert SECRET not in caplog.text and "母亲表示" not in caplog.text
    with services.db.sessionmaker() as session:
        rows = session.scalars(select(ParentContact).order_by(ParentContact.id)).all()
        assert [(r.by, r.channel, r.at == at) for r in rows] == [("teacher-li", "phone", True), ("psy", "home_visit",
                                                                                                  False)]  # fmt: skip
        assert rows[0].content == SECRET and rows[0].parent_response == "母亲表示会带孩子就医"
        timeline = events(session, world["case"], "contact")
        assert [e.actor for e in timeline] == ["teacher-li", "psy"]
        assert "电话" in timeline[0].reason and SECRET not in timeline[0].reason  # the timeline names the channel only
    with services.db.sessionmaker() as session:
        session.get(ParentContact, contact_id).content = "改写"
        with pytest.raises(XinshuError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.get(ParentContact, contact_id))
        with pytest.raises(XinshuError, match="append-only"):
            session.flush()
        session.rollback()
    with services.db.sessionmaker() as session:
        assert session.get(ParentContact, contact_id).content == SECRET


def test_consent_records_and_events(services, world, caplog):
    with caplog.at_level(logging.DEBUG), services.db.transaction() as session:
        case = session.get(Case, world["case"])
        student = session.get(Student, world["student"])
        granted = record_consent(session, student, "referral", "granted", "mother", SECRET, "psy", case=case)
        record_consent(session, student, "data_sharing", "refused", "father", "口头拒绝，谈话记录在案", "principal")
        with pytest.raises(XinshuError, match="unknown decision"):
            record_consent(session, student, "referral", "maybe", "mother", "x", "psy")
        with pytest.raises(XinshuError, match="unknown guardian relation"):
            record_consent(session, student, "referral", "granted", "uncle", "x", "psy")
        with pytest.raises(XinshuError, match="请填写同意凭据"):
            record_consent(session, student, "referral", "granted", "mother", "", "psy")
        with pytest.raises(XinshuError, match="purpose"):
            record_consent(session, student, "Referral!", "granted", "mother", "x", "psy")
        other = add_case(session, unit(session, "S1"), session.get(OrgUnit, student.class_id), "002")
        with pytest.raises(XinshuError, match="is not a case of student"):
            record_consent(session, student, "referral", "granted", "mother", "x", "psy", case=other)
        granted_id = granted.id
    assert SECRET not in caplog.text
    with services.db.sessionmaker() as session:
        rows = session.scalars(select(GuardianConsent).order_by(GuardianConsent.id)).all()
        assert [(r.purpose, r.decision, r.case_id, r.recorded_by) for r in rows] == [
            ("referral", "granted", world["case"], "psy"),
            ("data_sharing", "refused", None, "principal"),
        ]
        (event,) = events(session, world["case"], "consent")  # only the one attached to the case
        assert event.actor == "psy" and "同意" in event.reason and SECRET not in event.reason
        session.get(GuardianConsent, granted_id).decision = "withdrawn"
        with pytest.raises(XinshuError, match="append-only"):
            session.flush()


# --- imports ------------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _snapshot(services) -> tuple[list, list]:
    with services.db.sessionmaker() as session:
        partners = [
            (p.id, p.district_id, p.kind, p.name, p.department, p.phone, p.address, p.notes, p.active)
            for p in session.scalars(select(Partner).order_by(Partner.id))
        ]
        resources = [
            (r.id, r.code, r.kind, r.title, r.audience, r.url, r.description)
            for r in session.scalars(select(Resource).order_by(Resource.id))
        ]
    return partners, resources


def test_cli_imports_are_idempotent(services, org, db_url):
    partners_n, resources_n = len(load_yaml_list(PARTNERS_YAML)), len(load_yaml_list(LIBRARY_YAML))
    first = _cli("partners", "import", str(PARTNERS_YAML), "--database", db_url)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f'{{"partners": {{"created": {partners_n}, "updated": 0, "unchanged": 0}}}}'
    result = _cli("resources", "import", str(LIBRARY_YAML), "--database", db_url)
    assert result.exit_code == 0, result.output
    assert f'"created": {resources_n}' in result.stdout
    before = _snapshot(services)
    assert len(before[0]) == partners_n and len(before[1]) == resources_n >= 10
    again = _cli("partners", "import", str(PARTNERS_YAML), "--database", db_url)
    assert f'"unchanged": {partners_n}' in again.stdout and '"created": 0, "updated": 0' in again.stdout
    again = _cli("resources", "import", str(LIBRARY_YAML), "--database", db_url)
    assert f'"unchanged": {resources_n}' in again.stdout and '"created": 0, "updated": 0' in again.stdout
    assert _snapshot(services) == before


def test_imports_update_in_place_and_reject_bad_files_whole(services, org, tmp_path):
    with services.db.transaction() as session:
        import_resources(session, [{"code": "a", "kind": "course", "title": "旧标题", "audience": "students"}])
    with services.db.transaction() as session:
        summary = import_resources(
            session,
            [
                {"code": "a", "kind": "course", "title": "新标题", "audience": "students"},
                {"code": "b", "kind": "parent_guidance", "title": "家长指导", "audience": "parents", "url": ""},
            ],
        )
        assert summary.as_dict() == {"created": 1, "updated": 1, "unchanged": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- {code: c, kind: course, title: 好, audience: students}\n"
        "- {code: d, kind: poster, title: x, audience: students, url: 'javascript:alert(1)'}\n",
        encoding="utf-8",
    )
    result = _cli("resources", "import", str(bad), "--database", services.db.url)
    assert result.exit_code == 1
    assert "resource 2: kind 'poster'" in result.stderr and "resource 2: url 'javascript:alert(1)'" in result.stderr
    partners = tmp_path / "partners.yaml"
    partners.write_text("- {district: S1, kind: hospital, name: 医院}\n- {district: D01, kind: clinic}\n", "utf-8")
    result = _cli("partners", "import", str(partners), "--database", services.db.url)
    assert result.exit_code == 1
    assert "partner 1: district 'S1' is not the code of a district" in result.stderr
    assert "partner 2: kind 'clinic'" in result.stderr and "partner 2: name is required" in result.stderr
    with services.db.sessionmaker() as session:
        assert [r.code for r in session.scalars(select(Resource).order_by(Resource.code))] == ["a", "b"]
        assert session.scalar(select(Resource.title).where(Resource.code == "a")) == "新标题"
        assert session.scalar(select(func.count()).select_from(Partner)) == 0
    with services.db.transaction() as session:
        assert import_partners(session, load_yaml_list(PARTNERS_YAML)).created == len(load_yaml_list(PARTNERS_YAML))


def test_templates_hand_out_resources_of_the_library(services, db_url):
    """The DB-backed check the declarations cannot make: template task codes exist in the library."""
    named = {code for t in services.declarations.templates.values() for task in t.tasks for code in task.resources}
    assert named, "the project's templates name no resources"
    assert named <= {row["code"] for row in load_yaml_list(LIBRARY_YAML)}  # the starter library covers them
    result = _cli("resources", "check", "--database", db_url)
    assert result.exit_code == 1 and "not in the library" in result.stderr
    assert _cli("resources", "import", str(LIBRARY_YAML), "--database", db_url).stderr == ""
    result = _cli("resources", "check", "--database", db_url)
    assert result.exit_code == 0 and result.stdout.startswith("ok: ")


def test_example_files_are_fictional():
    partners = load_yaml_list(PARTNERS_YAML)
    for partner in partners:
        assert re.fullmatch(r"099-0000\d{4}|12356|12355", partner["phone"]), partner
    assert {p["phone"] for p in partners if p["kind"] == "hotline"} == {"12356", "12355"}
    library = load_yaml_list(LIBRARY_YAML)
    titles = {r["title"] for r in library}
    for title in ("心理危机识别与应对指南（班主任版）", "生命教育主题班会课件", "家长如何与孩子谈论情绪",
                  "安全计划使用说明", "校园欺凌应对指引"):  # fmt: skip
        assert title in titles
    assert {r["kind"] for r in library} == {"guidance_sheet", "class_meeting", "course", "parent_guidance"}


# --- back office ------------------------------------------------------------------


def csrf_field(html: str, prefix: str = "") -> tuple[str, str]:
    for name, value in CSRF_INPUT.findall(html):
        if name == f"{prefix}-csrf_token" or (not prefix and name == "csrf_token"):
            return name, value
    raise AssertionError(f"no {prefix or 'plain'} csrf_token in page")


def login(client, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    _name, token = csrf_field(page)
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, username


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """District D01 with schools A and B, district D02 with school C; users of each; cases in A, B and C."""
    tmp = tmp_path_factory.mktemp("referrals-web")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp / 't.db'}", "SECRET_KEY": "test",
                      "WTF_CSRF_ENABLED": True})  # fmt: skip
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        d1 = add_org_unit(session, "D01", "一区", "district", city)
        d2 = add_org_unit(session, "D02", "二区", "district", city)
        schools = {name: add_org_unit(session, f"S{name}", f"{name}中学", "school", d) for name, d in
                   (("A", d1), ("B", d1), ("C", d2))}  # fmt: skip
        classes = {name: add_class(session, school) for name, school in schools.items()}
        cases = {name: add_case(session, schools[name], classes[name], f"1{name}") for name in schools}
        import_partners(session, load_yaml_list(PARTNERS_YAML))
        import_resources(session, load_yaml_list(LIBRARY_YAML))
        cases["A"].tasks.append(
            PlanTask(
                template_task_id="parent_meeting",
                title="约见监护人",
                owner_role="class_teacher",
                step="intervening",
                category="family",
                due_at=utcnow(),
                resources=["parent-talk-emotions", "no-such-resource"],
            )
        )
        # Case A's warning went unanswered to the district, case C's to the city (roles.md: district and
        # bureau administrators see only escalated students); case B stays with its school.
        cases["A"].warning.escalated_to = "district"
        cases["C"].warning.escalated_to = "city"
        police = {d.code: session.scalar(select(Partner).where(Partner.district_id == d.id, Partner.kind == "police"))
                  for d in (d1, d2)}  # fmt: skip
        for name, district in (("A", "D01"), ("B", "D01"), ("C", "D02")):
            refer(session, cases[name], "police", police[district].id, "seed", f"强制报告{name}")
        add_parent_contact(session, cases["B"], "seed", "phone", SECRET, "")
        record_consent(session, cases["B"].student, "referral", "granted", "mother", SECRET, "seed", case=cases["B"])
        users = [
            ("psy_a", "psychology_teacher", schools["A"]),
            ("psy_b", "psychology_teacher", schools["B"]),
            ("teacher_a", "class_teacher", classes["A"]),
            ("principal_a", "principal", schools["A"]),
            ("dist1", "district_admin", d1),
            ("dist2", "district_admin", d2),
            ("boss", "bureau_admin", city),
        ]
        for username, role, where in users:
            create_user(session, username, PASSWORD, role, where)
        session.add(User(username="nobody", password_hash=session.scalar(select(User.password_hash))))
        ids = {f"case_{name}": case.id for name, case in cases.items()}
        ids |= {"d1": d1.id, "d2": d2.id, "student_B": cases["B"].student_id}
    yield app, ids
    services.db.dispose()


def client_for(app: Flask, username: str):
    client = app.test_client()
    login(client, username)
    return client


def view_of(app: Flask, endpoint: str):
    return next(v for v in app.extensions["admin"][0]._views if v.endpoint == endpoint)


def rows_as(app: Flask, username: str, endpoint: str) -> list:
    view = view_of(app, endpoint)
    with app.test_request_context("/admin/"):
        session = app.extensions["xinshu"].db.session
        login_user(session.scalar(select(User).where(User.username == username)))
        count, rows = view.get_list(0, None, False, None, None)
        rows = list(rows)
        assert count == len(rows)
        return rows


def test_case_scoped_lists_never_show_another_schools_rows(site):
    app, ids = site
    assert [r.case_id for r in rows_as(app, "psy_a", "referral")] == [ids["case_A"]]
    assert [r.case_id for r in rows_as(app, "psy_b", "referral")] == [ids["case_B"]]
    assert [r.case_id for r in rows_as(app, "dist1", "referral")] == [ids["case_A"]]  # B was not escalated
    assert [r.case_id for r in rows_as(app, "dist2", "referral")] == [ids["case_C"]]  # escalated to the city
    assert [r.case_id for r in rows_as(app, "boss", "referral")] == [ids["case_C"]]
    assert rows_as(app, "psy_a", "parentcontact") == [] and rows_as(app, "psy_a", "consent") == []
    assert [r.case_id for r in rows_as(app, "psy_b", "parentcontact")] == [ids["case_B"]]
    assert [r.student_id for r in rows_as(app, "psy_b", "consent")] == [ids["student_B"]]
    for endpoint in ("referral", "parentcontact", "consent", "partner", "resource"):
        assert rows_as(app, "nobody", endpoint) == [], endpoint
    client = client_for(app, "psy_a")
    listing = client.get("/admin/referral/").get_data(as_text=True)
    assert f"个案 #{ids['case_A']}" in listing and f"个案 #{ids['case_B']}" not in listing
    assert client.get(f"/admin/casedesk/case/{ids['case_B']}/").status_code == 404  # out of scope = missing
    assert client.get("/admin/casedesk/case/999999/").status_code == 404
    desk = client.get("/admin/casedesk/").get_data(as_text=True)
    assert f"个案 #{ids['case_A']}" in desk and f"个案 #{ids['case_B']}" not in desk


def test_partner_directory_is_per_district(site):
    app, ids = site
    assert {p.district_id for p in rows_as(app, "dist1", "partner")} == {ids["d1"]}
    assert {p.district_id for p in rows_as(app, "dist2", "partner")} == {ids["d2"]}
    assert {p.district_id for p in rows_as(app, "psy_a", "partner")} == {ids["d1"]}  # the district above the school
    assert {p.district_id for p in rows_as(app, "boss", "partner")} == {ids["d1"], ids["d2"]}
    page = client_for(app, "dist1").get("/admin/partner/").get_data(as_text=True)
    assert "青川区精神卫生中心" in page and "白鹭区" not in page


def test_partner_editing_is_for_district_and_bureau_admins_of_that_district(site):
    app, ids = site
    services = app.extensions["xinshu"]
    assert client_for(app, "psy_a").get("/admin/partner/new/").status_code == 302  # can_create is False
    client = client_for(app, "dist1")
    page = client.get("/admin/partner/new/").get_data(as_text=True)
    assert "一区" in page and "二区" not in page  # only their own district is offered
    _name, token = csrf_field(page)
    form = {"kind": "family", "name": "一区家庭服务站", "department": "", "phone": "099-00000999", "address": "",
            "notes": "", "active": "y"}  # fmt: skip
    assert client.post("/admin/partner/new/", data={**form, "district": str(ids["d1"])}).status_code == 400  # no CSRF
    response = client.post("/admin/partner/new/", data={**form, "district": str(ids["d1"]), "csrf_token": token})
    assert response.status_code == 302
    client.post("/admin/partner/new/", data={**form, "name": "越界", "district": str(ids["d2"]), "csrf_token": token})
    with services.db.sessionmaker() as session:
        assert session.scalar(select(Partner.district_id).where(Partner.name == "一区家庭服务站")) == ids["d1"]
        assert session.scalar(select(Partner.id).where(Partner.name == "越界")) is None
        other = session.scalar(select(Partner.id).where(Partner.district_id == ids["d2"]))
    # A partner of another district cannot even be opened for editing.
    response = client.get(f"/admin/partner/edit/?id={other}", follow_redirects=True)
    assert response.request.path == "/admin/partner/"


def test_resources_are_read_by_all_and_edited_by_the_bureau(site):
    app, _ids = site
    assert len(rows_as(app, "teacher_a", "resource")) >= 10
    assert client_for(app, "psy_a").get("/admin/resource/new/").status_code == 302
    boss = client_for(app, "boss")
    page = boss.get("/admin/resource/new/").get_data(as_text=True)
    _name, token = csrf_field(page)
    data = {"code": "bad", "kind": "course", "title": "t", "audience": "students", "url": "javascript:alert(1)",
            "description": "", "csrf_token": token}  # fmt: skip
    boss.post("/admin/resource/new/", data=data)
    boss.post("/admin/resource/new/", data={**data, "code": "grief-support", "url": "resources/grief.pdf"})
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.scalar(select(Resource.id).where(Resource.code == "bad")) is None
        assert session.scalar(select(Resource.url).where(Resource.code == "grief-support")) == "resources/grief.pdf"


def _desk(client, case_id: int) -> str:
    response = client.get(f"/admin/casedesk/case/{case_id}/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_case_page_refers_advances_and_records_with_csrf(site):
    app, ids = site
    case_id = ids["case_A"]
    services = app.extensions["xinshu"]
    client = client_for(app, "psy_a")
    page = _desk(client, case_id)
    assert "/admin/resource/details/?id=" in page and "家长如何与孩子谈论情绪" in page  # the plan's resources
    assert "no-such-resource" in page and "资源库中无此条目" in page
    assert "12356" in page and "白鹭区" not in page  # the district's directory
    with services.db.sessionmaker() as session:
        hospital = session.scalar(select(Partner).where(Partner.district_id == ids["d1"], Partner.kind == "hospital"))
    name, token = csrf_field(page, "refer")
    refer_data = {"refer-kind": "hospital", "refer-partner": str(hospital.id), "refer-reason": "建议就医"}
    assert client.post(f"/admin/casedesk/case/{case_id}/refer", data=refer_data).status_code == 400
    refused = client.post(f"/admin/casedesk/case/{case_id}/refer", data={**refer_data, name: token})
    assert refused.status_code == 400 and "监护人" in refused.get_data(as_text=True)
    name, token = csrf_field(page, "consent")
    consent = {name: token, "consent-purpose": "referral", "consent-decision": "granted", "consent-relation": "mother",
               "consent-evidence": "签字同意书存档 2025-031"}  # fmt: skip
    assert client.post(f"/admin/casedesk/case/{case_id}/consent", data=consent).status_code == 302
    page = _desk(client, case_id)
    name, token = csrf_field(page, "refer")
    assert client.post(f"/admin/casedesk/case/{case_id}/refer", data={**refer_data, name: token}).status_code == 302
    with services.db.sessionmaker() as session:
        referral = session.scalar(select(Referral).where(Referral.case_id == case_id, Referral.kind == "hospital"))
        assert (referral.status, referral.sent_by) == ("sent", "psy_a")
    page = _desk(client, case_id)
    prefix = f"step{referral.id}"
    name, token = csrf_field(page, prefix)
    step = f"/admin/casedesk/case/{case_id}/referral/{referral.id}/step"
    assert client.post(step, data={name: token, f"{prefix}-status": "sent", f"{prefix}-text": ""}).status_code == 302
    stale = client.post(step, data={name: token, f"{prefix}-status": "sent", f"{prefix}-text": ""})
    assert stale.status_code == 400 and "已被他人更新" in stale.get_data(as_text=True)
    empty = client.post(step, data={name: token, f"{prefix}-status": "acknowledged", f"{prefix}-text": " "})
    assert empty.status_code == 400 and "请填写转介结果" in empty.get_data(as_text=True)
    data = {name: token, f"{prefix}-status": "acknowledged", f"{prefix}-text": "诊断为抑郁发作，门诊治疗"}
    assert client.post(step, data=data).status_code == 302
    data = {name: token, f"{prefix}-status": "outcome", f"{prefix}-text": "两周后返校，减轻作业量"}
    assert client.post(step, data=data).status_code == 302
    with services.db.sessionmaker() as session:
        referral = session.get(Referral, referral.id)
        assert referral.status == "returned" and referral.return_plan == "两周后返校，减轻作业量"
        timeline = events(session, case_id, "referral")
        assert [e.actor for e in timeline][-4:] == ["psy_a"] * 4
        assert [e.actor for e in events(session, case_id, "consent")] == ["psy_a"]
    # Free text is a case note: the (escalated) district admin sees that a result exists, not what it says.
    page = _desk(client, case_id)
    assert "诊断为抑郁发作" in page and f"转介 #{referral.id}（医院）：已转出；建议就医" in page  # the timeline
    district_page = _desk(client_for(app, "dist1"), case_id)
    assert "诊断为抑郁发作" not in district_page and "建议就医" not in district_page
    assert "须有查看权限或登记查看理由" in district_page and 'id="break-glass-form"' in district_page
    assert 'id="refer-form"' not in district_page and 'id="contact-form"' not in district_page


def test_parent_contacts_by_class_teacher_but_no_referrals(site):
    app, ids = site
    case_id = ids["case_A"]
    client = client_for(app, "teacher_a")
    page = _desk(client, case_id)
    assert 'id="contact-form"' in page and 'id="refer-form"' not in page and 'id="consent-form"' not in page
    name, token = csrf_field(page, "contact")
    contact = {
        name: token,
        "contact-channel": "wechat",
        "contact-at": "2025-10-20T19:30",
        "contact-content": "告知家长孩子近期情绪低落",
        "contact-parent_response": "家长表示会多陪伴",
    }
    assert client.post(f"/admin/casedesk/case/{case_id}/contact", data=contact).status_code == 302
    bad = client.post(f"/admin/casedesk/case/{case_id}/contact", data={**contact, "contact-channel": "email"})
    assert bad.status_code == 400
    refer_data = {name: token, "refer-kind": "police", "refer-partner": "1", "refer-reason": "x"}
    assert client.post(f"/admin/casedesk/case/{case_id}/refer", data=refer_data).status_code == 403
    with app.extensions["xinshu"].db.sessionmaker() as session:
        (row,) = session.scalars(select(ParentContact).where(ParentContact.case_id == case_id)).all()
        assert (row.by, row.channel, row.at) == ("teacher_a", "wechat", dt.datetime(2025, 10, 20, 11, 30))
    # The ledger is a case note: the class teacher who wrote it reads it back after a break-glass reason.
    listing = client.get("/admin/parentcontact/").get_data(as_text=True)
    assert "告知家长孩子近期情绪低落" not in listing and "（无权查看）" not in listing
    assert "须有查看权限或登记查看理由" in listing
    page = _desk(client, case_id)
    name, token = csrf_field(page)
    reason = {name: token, "reason": "家访前核对沟通记录", "next": "/admin/parentcontact/"}
    assert client.post(f"/admin/breakglass/{student_of(app, case_id)}/", data=reason).status_code == 302
    listing = client.get("/admin/parentcontact/").get_data(as_text=True)
    assert "告知家长孩子近期情绪低落" in listing and SECRET not in listing  # school B's entry is out of scope
    district = client_for(app, "dist1").get("/admin/parentcontact/").get_data(as_text=True)
    assert "告知家长孩子近期情绪低落" not in district


def student_of(app: Flask, case_id: int) -> int:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        return session.get(Case, case_id).student_id


def test_every_new_page_answers_the_bureau_admin_and_needs_login(site):
    app, _ids = site
    anonymous = app.test_client()
    boss = client_for(app, "boss")
    for endpoint in ("partner", "resource", "casedesk", "referral", "parentcontact", "consent"):
        url = view_of(app, endpoint).url.rstrip("/") + "/"
        assert anonymous.get(url).status_code == 302, url
        assert boss.get(url).status_code == 200, url
        for row in rows_as(app, "boss", endpoint) if endpoint != "casedesk" else []:
            assert boss.get(f"{url}details/?id={row.id}").status_code == 200, url
    assert anonymous.get("/admin/casedesk/case/1/").status_code == 302
