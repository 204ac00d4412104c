"""Campaigns: the answer gate (J1, K2), guardian consent, the guardian notice (J5), the
de-identified research export, and the back-office pages.

Expected values are worked out by hand in comments (window bounds in UTC, ages on a
Beijing date, HMAC pseudonyms computed here with hmac/hashlib), never read back from
the code under test.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import time

import pytest
import security_summary
from click.testing import CliRunner
from openpyxl import load_workbook
from sqlalchemy import func, select, text

from xinshu.answers import import_answers
from xinshu.auth import create_user
from xinshu.campaigns import (
    CampaignError,
    CampaignInput,
    answer_allowed,
    consent_notice,
    create_campaign,
    notice_text,
    parse_local_bound,
    record_campaign_consent,
    update_campaign,
)
from xinshu.errors import ImportRejected, XinshuError
from xinshu.models import AuditEvent, Campaign, ImportBatch, OrgUnit, Response, Score, Student
from xinshu.orgs import add_org_unit

BJ = dt.timezone(dt.timedelta(hours=8))
HEADER = "学籍号,第1题,第2题,第3题,第4题,第5题,第6题,第7题,第8题,第9题\n"
ZEROS = ",0,0,0,0,0,0,0,0,0\n"
STATUTE = "市教育局〔2025〕12号通知"
PASSWORD = "Privacy-test-2025!"
NOTICE_HEADINGS = (
    "处理目的",
    "法律依据",
    "收集的信息",
    "存储地点",
    "保存期限",
    "安全措施",
    "拒绝的后果",
    "更正和删除的途径",
    "投诉渠道",
    "拒绝选项",
)


# --- helpers ---------------------------------------------------------------------------


def add_class(session, school_code: str, suffix: str = "1") -> OrgUnit:
    school = session.scalar(select(OrgUnit).where(OrgUnit.code == school_code))
    grade = session.scalar(select(OrgUnit).where(OrgUnit.code == f"{school_code}-G07"))
    if grade is None:
        grade = add_org_unit(session, f"{school_code}-G07", "七年级", "grade", school)
    return add_org_unit(session, f"{school_code}-G07-C{suffix}", f"七年级{suffix}班", "class", grade)


def add_student(session, klass: OrgUnit, number: str, name: str, birth: dt.date | None, **extra) -> Student:
    school_id = int(klass.path.strip("/").split("/")[2])
    student = Student(
        school_id=school_id,
        class_id=klass.id,
        name=name,
        gender="F",
        birth_date=birth,
        student_number=number,
        grade_level=7,
        **extra,
    )
    session.add(student)
    session.flush()
    return student


def campaign_input(session, unit_code: str, basis: str = "consent", **extra) -> CampaignInput:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == unit_code))
    values = {
        "code": "2025-autumn",
        "name": "2025年秋季心理测评",
        "org_unit_id": unit.id,
        "instruments": ["phq9"],
        "opens_at": parse_local_bound("2025-10-01", end=False),
        "closes_at": parse_local_bound("2025-10-31", end=True),
        "legal_basis": basis,
        "legal_basis_ref": STATUTE if basis == "statutory_duty" else "",
        "purpose": "筛查学生抑郁风险，及早提供心理支持",
        "retention_days": 365,
    }
    values.update(extra)
    return CampaignInput(**values)


def answers_file(tmp_path, numbers, name="phq9.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(n + ZEROS for n in numbers), "utf-8")
    return path


def count(session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where))


@pytest.fixture
def world(services, org):
    """S1 with one class; students: under 14 (born 2013-05-01), 14+ (born 2010-01-01), birth date
    unknown, one who left; S2 with one student. A consent campaign on S1."""
    with services.db.transaction() as session:
        c1, c2 = add_class(session, "S1"), add_class(session, "S2")
        ids = {
            "young": add_student(session, c1, "L0001", "王小一", dt.date(2013, 5, 1)).id,
            "older": add_student(session, c1, "L0002", "王小二", dt.date(2010, 1, 1)).id,
            "unknown": add_student(session, c1, "L0003", "王小三", None).id,
            "left": add_student(session, c1, "L0004", "王小四", dt.date(2013, 1, 1), status="left", active=False).id,
            "other_school": add_student(session, c2, "L0005", "李小五", dt.date(2013, 1, 1)).id,
        }
        ids["campaign"] = create_campaign(session, campaign_input(session, "S1"), "tester", {"phq9"}).id
    return ids


IN_WINDOW = dt.datetime(2025, 10, 15, 10, 0, tzinfo=BJ)


# --- J1: the consent gate ----------------------------------------------------------------


def test_under_14_without_consent_is_refused_and_nothing_is_stored(services, world, tmp_path):
    path = answers_file(tmp_path, ["L0001", "L0002"])
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        import_answers(session, services, path, "phq9", "phq9_sheet", campaign=campaign, at=IN_WINDOW)
    # Row 2 (the header is row 1) is the 12-year-old (born 2013-05-01, answering 2025-10-15); row 3 is 15.
    assert [str(e) for e in info.value.errors] == [
        f"第2行 列“学籍号”: 学生 #{world['young']} 未满14周岁，本次测评以同意为依据，须先登记监护人同意"
    ]
    with services.db.sessionmaker() as session:
        assert count(session, Response) == 0
        assert count(session, ImportBatch) == 0


def test_granted_consent_lets_the_answers_in_with_the_campaign(services, world, tmp_path):
    with services.db.transaction() as session:
        campaign, young = session.get(Campaign, world["campaign"]), session.get(Student, world["young"])
        record_campaign_consent(
            session,
            campaign,
            young,
            "granted",
            "mother",
            "纸质回执存德育处",
            "tester",
            at=dt.datetime(2025, 10, 2, 9, 0, tzinfo=BJ),
        )
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        result = import_answers(
            session,
            services,
            answers_file(tmp_path, ["L0001", "L0002"]),
            "phq9",
            "phq9_sheet",
            campaign=campaign,
            at=IN_WINDOW,
        )
    assert result.recorded == 2
    with services.db.sessionmaker() as session:
        rows = session.execute(text("SELECT student_id, campaign_id FROM response ORDER BY student_id")).all()
    assert rows == [(world["young"], world["campaign"]), (world["older"], world["campaign"])]


def test_consent_recorded_after_the_answer_time_does_not_count(services, world):
    with services.db.transaction() as session:
        campaign, young = session.get(Campaign, world["campaign"]), session.get(Student, world["young"])
        record_campaign_consent(
            session,
            campaign,
            young,
            "granted",
            "father",
            "回执",
            "tester",
            at=dt.datetime(2025, 10, 20, 9, 0, tzinfo=BJ),
        )
        assert answer_allowed(session, campaign, young, IN_WINDOW).code == "no_consent"  # 10-15 < 10-20
        assert answer_allowed(session, campaign, young, dt.datetime(2025, 10, 21, tzinfo=BJ)).allowed


def test_withdrawal_and_refusal_end_the_consent(services, world):
    with services.db.transaction() as session:
        campaign, young = session.get(Campaign, world["campaign"]), session.get(Student, world["young"])
        at = dt.datetime(2025, 10, 2, 9, 0, tzinfo=BJ)
        record_campaign_consent(session, campaign, young, "granted", "mother", "回执", "tester", at=at)
        assert answer_allowed(session, campaign, young, IN_WINDOW).allowed
        record_campaign_consent(
            session, campaign, young, "withdrawn", "mother", "电话撤回记录", "tester", at=at + dt.timedelta(days=3)
        )
        decision = answer_allowed(session, campaign, young, IN_WINDOW)
        assert (decision.allowed, decision.code) == (False, "consent_withdrawn")
        assert "撤回" in decision.message
        record_campaign_consent(
            session, campaign, young, "refused", "father", "回执", "tester", at=at + dt.timedelta(days=4)
        )
        assert answer_allowed(session, campaign, young, IN_WINDOW).code == "consent_refused"


def test_unknown_birth_date_counts_as_under_14(services, world):
    with services.db.sessionmaker() as session:
        campaign, unknown = session.get(Campaign, world["campaign"]), session.get(Student, world["unknown"])
        decision = answer_allowed(session, campaign, unknown, IN_WINDOW)
    assert (decision.allowed, decision.under_14) == (False, True)
    assert "出生日期未知" in decision.message


def test_fourteenth_birthday_on_the_beijing_date(services, world):
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        student = session.get(Student, world["older"])
        student.birth_date = dt.date(2011, 10, 31)
        # 2025-10-30 16:30 UTC is 2025-10-31 00:30 in Beijing: the 14th birthday, no consent needed.
        assert answer_allowed(session, campaign, student, dt.datetime(2025, 10, 30, 16, 30)).allowed
        # 2025-10-30 15:30 UTC is 23:30 on 10-30 in Beijing: still 13.
        assert answer_allowed(session, campaign, student, dt.datetime(2025, 10, 30, 15, 30)).code == "no_consent"


def test_student_who_left_or_in_another_school_is_refused(services, world):
    with services.db.sessionmaker() as session:
        campaign = session.get(Campaign, world["campaign"])
        left = answer_allowed(session, campaign, session.get(Student, world["left"]), IN_WINDOW)
        other = answer_allowed(session, campaign, session.get(Student, world["other_school"]), IN_WINDOW)
    assert (left.allowed, left.code) == (False, "not_enrolled")
    assert (other.allowed, other.code) == (False, "out_of_scope")


def test_statutory_duty_stores_the_basis_without_consent(services, world, tmp_path):
    with services.db.transaction() as session:
        data = campaign_input(session, "C01", "statutory_duty", code="city-2025")
        campaign = create_campaign(session, data, "tester", {"phq9"})
        decision = answer_allowed(session, campaign, session.get(Student, world["young"]), IN_WINDOW)
        assert decision.allowed and decision.basis_ref == STATUTE and STATUTE in decision.message
        import_answers(
            session,
            services,
            answers_file(tmp_path, ["L0001", "L0005"]),
            "phq9",
            "phq9_sheet",
            campaign=campaign,
            at=IN_WINDOW,
        )
        city_id = campaign.id
    with services.db.sessionmaker() as session:
        rows = session.execute(
            text(
                "SELECT r.student_id, c.legal_basis, c.legal_basis_ref FROM response r "
                "JOIN campaign c ON c.id = r.campaign_id ORDER BY r.student_id"
            )
        ).all()
        assert session.scalar(select(Response.campaign_id).limit(1)) == city_id
    assert rows == [(world["young"], "statutory_duty", STATUTE), (world["other_school"], "statutory_duty", STATUTE)]


def test_cli_import_with_campaign_shows_the_statutory_basis(services, world, db_url, tmp_path):
    from xinshu.cli import main

    with services.db.transaction() as session:
        window = {"opens_at": dt.datetime(2020, 1, 1), "closes_at": dt.datetime(2099, 1, 1)}
        create_campaign(session, campaign_input(session, "S1", "statutory_duty", code="open", **window), "t", None)
    path = answers_file(tmp_path, ["L0001"])
    args = [
        "import-answers",
        str(path),
        "--instrument",
        "phq9",
        "--profile",
        "phq9_sheet",
        "--campaign",
        "open",
        "--database",
        db_url,
        "--no-dispatch",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["recorded"] == 1
    assert summary["campaign"] == {"code": "open", "legal_basis": "statutory_duty", "legal_basis_ref": STATUTE}
    refused = CliRunner().invoke(main, [*args[:7], "2025-autumn", *args[8:]])  # outside its window now
    assert refused.exit_code == 1
    assert "已于 2025-10-31 24:00（北京时间）结束" in refused.output


def test_instrument_outside_the_campaign_is_rejected(services, world, tmp_path):
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        campaign.instruments = ["gad7"]
    with pytest.raises(XinshuError, match="不包含量表 phq9"), services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        import_answers(
            session, services, answers_file(tmp_path, ["L0002"]), "phq9", "phq9_sheet", campaign=campaign, at=IN_WINDOW
        )


# --- K2: the window closes at 24:00 Beijing time, whatever the server's TZ ----------------


@pytest.fixture(params=["UTC", "Asia/Shanghai"])
def server_tz(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    # The process-local clock really is in that zone now.
    assert time.strftime("%z", time.localtime(0)) == {"UTC": "+0000", "Asia/Shanghai": "+0800"}[request.param]
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_window_closes_at_midnight_beijing(services, world, server_tz, tmp_path):
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        campaign.legal_basis, campaign.legal_basis_ref = "statutory_duty", STATUTE  # isolate the window
        # "2025-10-31" closes at 2025-11-01 00:00 +08:00 = 2025-10-31 16:00 UTC; opens 2025-10-01 00:00 +08:00.
        assert campaign.closes_at == dt.datetime(2025, 10, 31, 16, 0)
        assert campaign.opens_at == dt.datetime(2025, 9, 30, 16, 0)
        student = session.get(Student, world["young"])
        last = dt.datetime(2025, 10, 31, 23, 59, 59, tzinfo=BJ)
        first_after = dt.datetime(2025, 11, 1, 0, 0, 0, tzinfo=BJ)
        assert answer_allowed(session, campaign, student, last).allowed
        late = answer_allowed(session, campaign, student, first_after)
        assert (late.allowed, late.code) == (False, "closed")
        assert "2025-10-31 24:00" in late.message
        # The same instants as naive UTC.
        assert answer_allowed(session, campaign, student, dt.datetime(2025, 10, 31, 15, 59, 59)).allowed
        assert not answer_allowed(session, campaign, student, dt.datetime(2025, 10, 31, 16, 0, 0)).allowed
        assert answer_allowed(session, campaign, student, dt.datetime(2025, 9, 30, 15, 59, 59)).code == "not_open"
        path = answers_file(tmp_path, ["L0001"])
        assert import_answers(session, services, path, "phq9", "phq9_sheet", campaign=campaign, at=last).recorded == 1
    with pytest.raises(ImportRejected, match="已于 2025-10-31 24:00"), services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        import_answers(
            session,
            services,
            answers_file(tmp_path, ["L0002"], "b.csv"),
            "phq9",
            "phq9_sheet",
            campaign=campaign,
            at=first_after,
        )


def test_cli_campaign_add_stores_the_beijing_window(services, org, db_url, server_tz):
    from xinshu.cli import main

    args = [
        "campaign",
        "add",
        "c-k2",
        "K2测评",
        "--org",
        "S1",
        "--instrument",
        "phq9",
        "--opens",
        "2025-10-01",
        "--closes",
        "2025-10-31",
        "--basis",
        "consent",
        "--purpose",
        "筛查",
        "--by",
        "tester",
        "--database",
        db_url,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["closes"] == "2025-10-31 24:00"
    with services.db.sessionmaker() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.code == "c-k2"))
        assert (campaign.opens_at, campaign.closes_at) == (dt.datetime(2025, 9, 30, 16), dt.datetime(2025, 10, 31, 16))


# --- campaigns: validation, editing, audit -----------------------------------------------


def test_statutory_duty_needs_its_documented_basis(services, org):
    with services.db.transaction() as session:
        data = campaign_input(session, "S1", "statutory_duty", legal_basis_ref="  ")
        with pytest.raises(CampaignError, match="文件依据"):
            create_campaign(session, data, "tester", {"phq9"})
        with pytest.raises(CampaignError, match="结束时间必须晚于开始时间"):
            create_campaign(session, campaign_input(session, "S1", closes_at=dt.datetime(2025, 1, 1)), "t", None)
        with pytest.raises(CampaignError, match="未知的量表"):
            create_campaign(session, campaign_input(session, "S1", instruments=["nope"]), "t", {"phq9"})


def test_district_admin_manages_only_own_district(services, org):
    with services.db.transaction() as session:
        d1 = session.scalar(select(OrgUnit).where(OrgUnit.code == "D01"))
        admin = create_user(session, "d1admin", PASSWORD, "district_admin", d1)
        campaign = create_campaign(session, campaign_input(session, "S1", code="d1"), admin, {"phq9"})
        assert campaign.created_by == "d1admin"
        with pytest.raises(CampaignError, match="本人所辖范围"):
            create_campaign(session, campaign_input(session, "S2", code="d2"), admin, {"phq9"})
        with pytest.raises(CampaignError, match="本人所辖范围"):
            create_campaign(session, campaign_input(session, "C01", code="city"), admin, {"phq9"})


def test_edit_is_audited_and_basis_frozen_once_answers_exist(services, world, tmp_path):
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        data = campaign_input(session, "S1", retention_days=30, purpose="新的目的")
        assert update_campaign(session, campaign, data, "tester", {"phq9"}) == ["purpose", "retention_days"]
        import_answers(
            session, services, answers_file(tmp_path, ["L0002"]), "phq9", "phq9_sheet", campaign=campaign, at=IN_WINDOW
        )
    with services.db.transaction() as session:
        campaign = session.get(Campaign, world["campaign"])
        changed = campaign_input(session, "S1", "statutory_duty", retention_days=30, purpose="新的目的")
        with pytest.raises(CampaignError, match="不能修改面向单位或法律依据"):
            update_campaign(session, campaign, changed, "tester", {"phq9"})
    with services.db.sessionmaker() as session:
        rows = session.execute(
            text("SELECT action, detail FROM audit_event WHERE object_type = 'campaign' ORDER BY id")
        ).all()
    assert [r[0] for r in rows] == ["create", "update"]
    detail = json.loads(rows[1][1])
    assert detail["fields"] == ["purpose", "retention_days"]
    assert (detail["before"]["retention_days"], detail["after"]["retention_days"]) == (365, 30)


def test_consent_records_are_audited_without_names(services, world):
    with services.db.transaction() as session:
        campaign, young = session.get(Campaign, world["campaign"]), session.get(Student, world["young"])
        consent = record_campaign_consent(session, campaign, young, "granted", "mother", "回执存档", "tester")
        with pytest.raises(CampaignError, match="不在本测评活动的范围内"):
            record_campaign_consent(
                session, campaign, session.get(Student, world["other_school"]), "granted", "mother", "回执", "tester"
            )
    with services.db.sessionmaker() as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.object_type == "guardian_consent"))
    assert (event.action, event.object_id) == ("create", str(consent.id))
    assert event.detail == {
        "campaign_id": world["campaign"],
        "student_id": world["young"],
        "decision": "granted",
        "relation": "mother",
    }


# --- J5: the guardian notice ----------------------------------------------------------------


def test_notice_has_every_heading_and_a_refusal_option(services, world):
    with services.db.sessionmaker() as session:
        campaign = session.get(Campaign, world["campaign"])
        sections = consent_notice(
            campaign,
            {"phq9": "患者健康问卷（PHQ-9）"},
            {
                "PRIVACY_STORAGE_LOCATION": "市教育局机房",
                "PRIVACY_CONTACT": "德育处 0000",
                "PRIVACY_OFFICER": "张校长",
                "PRIVACY_COMPLAINTS": "区教育局",
            },
        )
        body = notice_text(campaign, sections)
    assert [s.heading for s in sections if s.heading in NOTICE_HEADINGS] == list(NOTICE_HEADINGS)
    by_id = {s.id: s.text for s in sections}
    assert by_id["purpose"] == "筛查学生抑郁风险，及早提供心理支持"
    assert "患者健康问卷（PHQ-9）" in by_id["data"]
    assert by_id["storage"] == "市教育局机房"
    assert "365天" in by_id["retention"] and "2025-10-31 24:00" in by_id["retention"]
    assert "不同意" in by_id["option"] and "德育处 0000" in by_id["rights"]
    assert "不影响" in by_id["refusal"]
    for heading in NOTICE_HEADINGS:
        assert heading in body


# --- the de-identified research export ---------------------------------------------------------

ID_18 = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
MOBILE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")
KEY = "research-key-2025"


def identifier_hits(content: str, names: list[str]) -> int:
    """18-digit ID numbers, 11-digit mobile numbers and roster names found in an export (counted
    into the security summary, figure 7)."""
    hits = len(ID_18.findall(content)) + len(MOBILE.findall(content)) + sum(content.count(n) for n in names)
    security_summary.count("deidentified_hits", hits)
    return hits


def expected_pseudonym(student_id: int) -> str:
    # HMAC-SHA256 of "xinshu-student:<id>" under the export key, first 20 hex digits.
    return hmac.new(KEY.encode(), f"xinshu-student:{student_id}".encode(), hashlib.sha256).hexdigest()[:20]


@pytest.fixture
def exported(services, world, tmp_path):
    """Two students with ID numbers answered the S1 campaign; returns their ids."""
    with services.db.transaction() as session:
        for key, id_number in (("older", "110101201001011234"), ("young", "11010120130501002X")):
            session.get(Student, world[key]).id_number = id_number
        campaign, young = session.get(Campaign, world["campaign"]), session.get(Student, world["young"])
        record_campaign_consent(
            session, campaign, young, "granted", "mother", "回执", "t", at=dt.datetime(2025, 10, 2, tzinfo=BJ)
        )
        import_answers(
            session,
            services,
            answers_file(tmp_path, ["L0001", "L0002"]),
            "phq9",
            "phq9_sheet",
            campaign=campaign,
            at=IN_WINDOW,
        )
        session.execute(text("UPDATE response SET submitted_at = '2025-10-15 16:30:00.000000'"))
    return world


def test_research_export_csv_has_no_identifiers_and_stable_pseudonyms(
    services, exported, db_url, tmp_path, monkeypatch
):
    from xinshu.cli import main

    monkeypatch.setenv("XINSHU_PSEUDONYM_KEY", KEY)
    outputs = []
    for name in ("a.csv", "b.csv"):
        out = tmp_path / name
        result = CliRunner().invoke(
            main,
            [
                "export",
                "research",
                "--campaign",
                "2025-autumn",
                "-o",
                str(out),
                "--by",
                "researcher",
                "--database",
                db_url,
            ],
        )
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    content = outputs[0].decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == [
        "学生代号",
        "学校代码",
        "年级",
        "性别",
        "量表",
        "分量表",
        "原始分",
        "T分",
        "百分位",
        "等级",
        "提交日期",
    ]
    with services.db.sessionmaker() as session:
        scores = session.scalar(select(func.count()).select_from(Score))
        names = list(session.scalars(select(Student.name)))
    assert len(rows) - 1 == scores > 0
    pseudonyms = {row[0] for row in rows[1:]}
    assert pseudonyms == {expected_pseudonym(exported["young"]), expected_pseudonym(exported["older"])}
    assert {row[1] for row in rows[1:]} == {"S1"}
    # Submitted 2025-10-15 16:30 UTC = 2025-10-16 00:30 in Beijing: the Beijing date.
    assert {row[10] for row in rows[1:]} == {"2025-10-16"}
    assert identifier_hits(content, names) == 0
    assert "2013-05-01" not in content and "L0001" not in content
    with services.db.sessionmaker() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id)))
    assert [(e.actor, e.object_type, e.object_id) for e in events] == [
        ("researcher", "campaign", str(exported["campaign"]))
    ] * 2
    assert events[0].detail["deidentified"] is True and events[0].detail["rows"] == scores


def test_research_export_xlsx(services, exported, tmp_path, monkeypatch):
    from xinshu.campaigns import write_research_export

    buffer = io.BytesIO()
    with services.db.transaction() as session:
        campaign = session.get(Campaign, exported["campaign"])
        rows = write_research_export(session, campaign, buffer, "xlsx", KEY, "tester")
    sheet = load_workbook(io.BytesIO(buffer.getvalue()), read_only=True).active
    values = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert len(values) - 1 == rows
    assert values[0][0] == "学生代号"
    assert {v[0] for v in values[1:]} == {expected_pseudonym(exported["young"]), expected_pseudonym(exported["older"])}
    flat = " ".join(str(c) for row in values for c in row)
    with services.db.sessionmaker() as session:
        assert identifier_hits(flat, list(session.scalars(select(Student.name)))) == 0


def test_research_export_needs_a_key(services, exported, db_url, tmp_path, monkeypatch):
    from xinshu.cli import main

    monkeypatch.delenv("XINSHU_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("XINSHU_SECRET_KEY", raising=False)
    out = tmp_path / "x.csv"
    result = CliRunner().invoke(
        main, ["export", "research", "--campaign", "2025-autumn", "-o", str(out), "--database", db_url]
    )
    assert result.exit_code == 1 and "XINSHU_PSEUDONYM_KEY" in result.output
    assert not out.exists()


# --- back office ----------------------------------------------------------------------------------

CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no csrf_token in page"
    return match.group(1) or match.group(2)


def login(client, username: str):
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """An app on a SQLite file: city C → districts D1, D2 → schools A (D1), B (D2); users."""
    from xinshu.app import create_app

    tmp = tmp_path_factory.mktemp("privacy-web")
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp / 'w.db'}",
            "SECRET_KEY": "web-test-key",
            "PSEUDONYM_KEY": KEY,
            "WTF_CSRF_ENABLED": True,
        }
    )
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "C", "市", "city", None)
        d1, d2 = (
            add_org_unit(session, "D1", "一区", "district", city),
            add_org_unit(session, "D2", "二区", "district", city),
        )
        add_org_unit(session, "A", "甲校", "school", d1)
        add_org_unit(session, "B", "乙校", "school", d2)
        ka, kb = add_class(session, "A"), add_class(session, "B")
        ids = {
            "a": add_student(session, ka, "WA1", "赵甲", dt.date(2013, 3, 3)).id,
            "b": add_student(session, kb, "WB1", "钱乙", dt.date(2013, 3, 3)).id,
        }
        for username, role, unit in (
            ("boss", "bureau_admin", city),
            ("d1", "district_admin", d1),
            ("d2", "district_admin", d2),
            ("psy_a", "psychology_teacher", ka.parent.parent),
            ("psy_b", "psychology_teacher", kb.parent.parent),
        ):
            create_user(session, username, PASSWORD, role, unit)
    yield app, ids
    services.db.dispose()


def test_web_campaign_create_list_notice_and_scope(web):
    app, _ids = web
    boss = app.test_client()
    login(boss, "boss")
    page = boss.get("/admin/campaigns/new")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    unit_id = re.search(r'<option value="(\d+)">乙校（B）</option>', html).group(1)
    form = {
        "csrf_token": csrf_token(html),
        "code": "web-b",
        "name": "乙校测评",
        "org_unit": unit_id,
        "instruments": "phq9",
        "opens": "2025-10-01",
        "closes": "2025-10-31",
        "legal_basis": "statutory_duty",
        "legal_basis_ref": "",
        "purpose": "筛查",
        "retention_days": "90",
    }
    missing_ref = boss.post("/admin/campaigns/new", data=form)
    assert missing_ref.status_code == 400 and "文件依据" in missing_ref.get_data(as_text=True)
    created = boss.post("/admin/campaigns/new", data={**form, "legal_basis_ref": STATUTE})
    assert created.status_code == 302
    with app.extensions["xinshu"].db.sessionmaker() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.code == "web-b"))
        assert campaign.closes_at == dt.datetime(2025, 10, 31, 16) and campaign.created_by == "boss"
    listing = boss.get("/admin/campaigns/").get_data(as_text=True)
    assert "乙校测评" in listing and "2025-10-31 24:00" in listing
    notice = boss.get(f"/admin/campaigns/{campaign.id}/notice").get_data(as_text=True)
    for heading in NOTICE_HEADINGS:
        assert heading in notice
    assert 'id="notice-choice"' in notice and STATUTE in notice
    # A district administrator of the other district sees nothing of it; school B's staff see it.
    d1 = app.test_client()
    login(d1, "d1")
    assert "乙校测评" not in d1.get("/admin/campaigns/").get_data(as_text=True)
    assert d1.get(f"/admin/campaigns/{campaign.id}/notice").status_code == 404
    assert d1.get(f"/admin/campaigns/{campaign.id}/edit").status_code == 404
    psy_b = app.test_client()
    login(psy_b, "psy_b")
    assert "乙校测评" in psy_b.get("/admin/campaigns/").get_data(as_text=True)
    assert psy_b.get(f"/admin/campaigns/{campaign.id}/edit").status_code == 403
    assert psy_b.get("/admin/campaigns/new").status_code == 403
    # No CSRF token, no change.
    no_token = boss.post("/admin/campaigns/new", data={**form, "csrf_token": "", "code": "x"})
    security_summary.count("csrf_posts_tried")
    security_summary.count("csrf_less_accepted", no_token.status_code != 400)
    assert no_token.status_code == 400


def test_web_consent_recording_by_school_staff(web):
    app, ids = web
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        data = campaign_input(session, "C", code="web-city")
        campaign_id = create_campaign(session, data, "boss", {"phq9"}).id
    psy = app.test_client()
    login(psy, "psy_a")
    page = psy.get(f"/admin/campaigns/{campaign_id}/consents")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "赵甲" in html and "钱乙" not in html
    form = {
        "csrf_token": csrf_token(html),
        "student": "WA1",
        "decision": "granted",
        "relation": "mother",
        "evidence": "回执存档",
        "at": "",
    }
    assert psy.post(f"/admin/campaigns/{campaign_id}/consents", data=form).status_code == 302
    other = psy.post(f"/admin/campaigns/{campaign_id}/consents", data={**form, "student": "WB1"})
    assert other.status_code == 400  # school B's student is not psy_a's
    with services.db.sessionmaker() as session:
        rows = session.execute(text("SELECT student_id, decision, recorded_by FROM guardian_consent")).all()
    assert rows == [(ids["a"], "granted", "psy_a")]
    # The district administrator sees counts per school, no names, no form.
    d1 = app.test_client()
    login(d1, "d1")
    counts = d1.get(f"/admin/campaigns/{campaign_id}/consents").get_data(as_text=True)
    assert "甲校" in counts and "赵甲" not in counts and 'id="consent-form"' not in counts


def test_web_research_export_limited_to_the_district(web):
    app, ids = web
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.code == "web-city"))
        if campaign is None:
            campaign = create_campaign(session, campaign_input(session, "C", code="web-city"), "boss", {"phq9"})
        for sid in (ids["a"], ids["b"]):
            response = Response(
                student_id=sid,
                instrument_id="phq9",
                instrument_version="1",
                answers={},
                raw_cells={},
                source="test",
                dedupe_key=f"web-{sid}",
                campaign_id=campaign.id,
            )
            response.scores.append(
                Score(
                    scale="total",
                    raw_score=3,
                    band="minimal",
                    answered=9,
                    valid=True,
                    flags=[],
                    instrument_version="1",
                    instrument_digest="0" * 64,
                )
            )
            session.add(response)
        campaign_id = campaign.id
    d1 = app.test_client()
    login(d1, "d1")
    page = d1.get("/admin/research_export/")
    assert page.status_code == 200
    form = {"csrf_token": csrf_token(page.get_data(as_text=True)), "campaign": str(campaign_id), "fmt": "csv"}
    download = d1.post("/admin/research_export/", data=form)
    assert download.status_code == 200
    content = download.get_data().decode("utf-8-sig")
    assert identifier_hits(content, ["赵甲", "钱乙"]) == 0
    rows = list(csv.reader(io.StringIO(content)))
    assert [r[0] for r in rows[1:]] == [expected_pseudonym(ids["a"])]  # district 1 holds school A only
    psy = app.test_client()
    login(psy, "psy_a")
    assert psy.get("/admin/research_export/").status_code == 403
