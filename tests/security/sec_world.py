"""The seeded world of the security suite (tests/security): one real application over a real
SQLite file, an org tree, students with warnings, cases and case records, and one user per role.

Org tree (codes in brackets)::

    示范市 [city]
    ├── 一区 [d1]
    │   ├── school A [sa] ── 七年级 [sa-7] ── 七年级1班 [sa-7-1], 七年级2班 [sa-7-2]
    │   └── school B [sb] ── 七年级 [sb-7] ── 七年级1班 [sb-7-1]
    └── 二区 [d2]
        └── school C [sc] ── 七年级 [sc-7] ── 七年级1班 [sc-7-1]

Students (:data:`STUDENTS`): a warning of the given level and escalation state
(``escalated_to`` school / district / city), a response with a score, and from
level 2 an open case with a plan task, a timeline note, an interview, a referral,
a parent contact and a guardian consent. ``a4`` has no warning at all.

Users (:data:`USERS`): the bureau administrator ``boss`` (city), the district
administrator ``dist1`` (district 1), the principal, moral-education director and
psychology teacher of school A, the class teacher of A's class 1, the psychology
teacher of school B and ``nobody`` without any assignment; plus three accounts that
are only *targets* of user management (never logged in by the sweep).

Who may see which student individually is written out by hand in
:data:`STUDENT_VIS` (and the tables after it) from ``docs/security.md (roles table)``; tests
compare the application against those tables, never against values read back
from the code under test.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from xinshu.app import create_app
from xinshu.auth import create_user, hash_password
from xinshu.models import (
    AuditEvent,
    Base,
    Campaign,
    Case,
    CaseEvent,
    DataRequest,
    DeclarationVersion,
    GuardianConsent,
    InboxMessage,
    Interview,
    Notification,
    ParentContact,
    Partner,
    PlanTask,
    Referral,
    Resource,
    Response,
    RiskWarning,
    RoleAssignment,
    Score,
    Student,
    User,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.services import PROJECT_ROOT

#: Meets the password policy: 18 characters, lower, upper, digit and other.
PASSWORD = "Xinshu-Sweep-2025!"
#: A long random-looking secret key; it must never appear in a page or a log line.
SECRET_KEY = "sec-suite-9f1c2b7e4d6a8035-key-do-not-leak"

ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
MOBILE = re.compile(r"(?<![0-9])1[3-9]\d{9}(?![0-9])")
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')

#: Org units: code -> (name, kind, parent code).
UNITS: dict[str, tuple[str, str, str | None]] = {
    "city": ("示范市", "city", None),
    "d1": ("一区", "district", "city"),
    "d2": ("二区", "district", "city"),
    "sa": ("甲校", "school", "d1"),
    "sb": ("乙校", "school", "d1"),
    "sc": ("丙校", "school", "d2"),
    "sa-7": ("七年级", "grade", "sa"),
    "sb-7": ("七年级", "grade", "sb"),
    "sc-7": ("七年级", "grade", "sc"),
    "sa-7-1": ("七年级1班", "class", "sa-7"),
    "sa-7-2": ("七年级2班", "class", "sa-7"),
    "sb-7-1": ("七年级1班", "class", "sb-7"),
    "sc-7-1": ("七年级1班", "class", "sc-7"),
}
SCHOOL_OF_CLASS = {"sa-7-1": "sa", "sa-7-2": "sa", "sb-7-1": "sb", "sc-7-1": "sc"}


@dataclass(frozen=True)
class StudentSpec:
    """One seeded student: class, name, warning level (None: no warning) and escalation."""

    class_code: str
    name: str
    level: int | None
    escalated_to: str | None
    id_number: str
    number: str  # the school's own student number (looks like a mobile number on purpose)


STUDENTS: dict[str, StudentSpec] = {
    "a1": StudentSpec("sa-7-1", "甲一同学", 3, "school", "110101200801011234", "13800000001"),
    "a2": StudentSpec("sa-7-1", "甲二同学", 2, "district", "110101200802021236", "13800000002"),
    "a3": StudentSpec("sa-7-2", "甲三同学", 4, "city", "110101200803031238", "13800000003"),
    "a4": StudentSpec("sa-7-2", "甲四同学", None, None, "11010120080404123X", "13800000004"),
    "b1": StudentSpec("sb-7-1", "乙一同学", 3, "school", "110101200805051231", "13800000005"),
    "b2": StudentSpec("sb-7-1", "乙二同学", 4, "city", "110101200806061233", "13800000006"),
    "c1": StudentSpec("sc-7-1", "丙一同学", 3, "city", "110101200807071235", "13800000007"),
    "c2": StudentSpec("sc-7-1", "丙二同学", 2, "school", "110101200808081237", "13800000008"),
}

#: Logged-in users of the sweep: username -> (role, org unit code); None: no assignment.
USERS: dict[str, tuple[str, str] | None] = {
    "boss": ("bureau_admin", "city"),
    "dist1": ("district_admin", "d1"),
    "principal_a": ("principal", "sa"),
    "med_a": ("moral_education_director", "sa"),
    "psy_a": ("psychology_teacher", "sa"),
    "ct_a1": ("class_teacher", "sa-7-1"),
    "psy_b": ("psychology_teacher", "sb"),
    "nobody": None,
}
#: Accounts that are only targets of user management: username -> role assignments.
TARGETS: dict[str, list[tuple[str, str]]] = {
    "target_d1": [("psychology_teacher", "sa"), ("class_teacher", "sa-7-2")],
    "target_d2": [("psychology_teacher", "sc")],
    "target_norole": [],
}

A_STAFF = ("principal_a", "med_a", "psy_a")
SCHOOL_A = {"a1", "a2", "a3", "a4"}

# --- who sees what, by hand from docs/security.md (roles table) -----------------------------------------------

#: Students each user may see individually (identity): school roles their school or class;
#: the district admin students of district 1 escalated to the district or the city; the bureau
#: students escalated to the city; nobody without an assignment.
STUDENT_VIS: dict[str, set[str]] = {
    "boss": {"a3", "b2", "c1"},
    "dist1": {"a2", "a3", "b2"},
    "principal_a": set(SCHOOL_A),
    "med_a": set(SCHOOL_A),
    "psy_a": set(SCHOOL_A),
    "ct_a1": {"a1", "a2"},
    "psy_b": {"b1", "b2"},
    "nobody": set(),
    "anonymous": set(),
}
#: Students whose results (scores) each user may see: as above, but never the class teacher.
RESULT_VIS: dict[str, set[str]] = {**STUDENT_VIS, "ct_a1": set()}
#: Students whose warning level, warnings and cases each user may see (class teacher included).
LEVEL_VIS: dict[str, set[str]] = dict(STUDENT_VIS)
#: Schools whose outbox and inbox messages each user sees (messages are addressed to a school).
SCHOOL_MSG_VIS: dict[str, set[str]] = {
    "boss": {"sa", "sb", "sc"},
    "dist1": {"sa", "sb"},
    "principal_a": {"sa"},
    "med_a": {"sa"},
    "psy_a": {"sa"},
    "ct_a1": set(),
    "psy_b": {"sb"},
    "nobody": set(),
    "anonymous": set(),
}


def students_with_warning() -> list[str]:
    return [key for key, spec in STUDENTS.items() if spec.level is not None]


def students_with_case() -> list[str]:
    return [key for key, spec in STUDENTS.items() if spec.level is not None and spec.level >= 2]


# --- declarations ----------------------------------------------------------------------------

LEVELS = """\
kind: levels
version: "t1"
case_threshold: 2
levels:
  - {level: 1, key: general, name: {zh: 一般}, colour: "#2f80ed", response_hours: 72,
     notify: [{role: class_teacher, at: school, channels: [inbox]}]}
  - {level: 2, key: serious, name: {zh: 较重}, colour: "#f2c94c", response_hours: 48,
     notify: [{role: psychology_teacher, at: school, channels: [inbox]}]}
  - {level: 3, key: severe, name: {zh: 严重}, colour: "#f2994a", response_hours: 24,
     notify: [{role: principal, at: school, channels: [inbox]}]}
  - {level: 4, key: very_severe, name: {zh: 非常严重}, colour: "#eb5757", response_hours: 2,
     notify: [{role: principal, at: school, channels: [inbox]}]}
"""
TEMPLATE = """\
kind: intervention
id: plan-t
version: "t1"
title: {zh: 测试方案}
levels: [2, 3, 4]
tasks:
  - {id: interview, title: {zh: 访谈学生}, owner_role: psychology_teacher, due_hours: 24, step: interviewing}
"""
INSTRUMENT = """\
kind: instrument
id: tiny
version: "t1"
title: {zh: "%(title)s"}
source: test
licence: {status: public_domain, statement: test}
response_options:
  - {value: 0, label: {zh: 否}}
  - {value: 1, label: {zh: 是}}
items: [{id: tiny_1, text: {zh: "%(item)s"}}, {id: tiny_2, text: {zh: 第二题}}]
scales:
  - id: total
    title: {zh: 总分}
    method: sum
    items: [tiny_1, tiny_2]
    missing: {min_answered: 2, prorate: none}
    bands:
      source: test
      ranges:
        - {id: low, min: 0, max: 1, label: {zh: 低}}
        - {id: high, min: 2, max: 2, label: {zh: 高}}
"""
RULES = """\
kind: alert_rules
id: tiny
version: "t1"
instrument: tiny
rules:
  - {id: tiny.high, level: 3, when: {scale: total, gte: 2}, explain: {zh: "%(explain)s"}}
"""
#: The explanation of the rule when no hostile text is asked for (a marker of "results" on a page).
RULE_EXPLAIN = "规则说明RXP"


def write_declarations(
    root: Path, *, explain: str = RULE_EXPLAIN, item: str = "第一题", title: str = "测试量表"
) -> Path:
    """A small valid declaration set (one instrument, its rules, levels, a template, the
    project's interview form) under ``root``; ``explain``, ``item`` and ``title`` may be hostile."""
    for folder in ("instruments", "rules/alerts", "rules/interventions", "rules/interviews"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def quoted(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"')

    (root / "instruments" / "tiny.yaml").write_text(
        INSTRUMENT % {"title": quoted(title), "item": quoted(item)}, encoding="utf-8"
    )
    (root / "rules" / "alerts" / "tiny.yaml").write_text(RULES % {"explain": quoted(explain)}, encoding="utf-8")
    (root / "rules" / "levels.yaml").write_text(LEVELS, encoding="utf-8")
    (root / "rules" / "interventions" / "plan.yaml").write_text(TEMPLATE, encoding="utf-8")
    shutil.copy(PROJECT_ROOT / "rules" / "interviews" / "standard.yaml", root / "rules" / "interviews")
    return root


# --- texts seeded into case records (markers of "results or case" on a page) ------------------

CASE_NOTE = "个案备注CNX"
INTERVIEW_NOTE = "访谈记录INX"
CONTACT_TEXT = "家校沟通内容PCX，家长电话13912345678"
OUTCOME_TEXT = "转介结果ROX"
EVIDENCE_TEXT = "同意书存档EVX"
SCORE_TEXT = "total=2/high"  # how a score of 2 in band high is shown (raw score / band)
FREE_TEXT = "自由作答FTX"  # a free-text answer of the interview form (instrument answers are numbers)
#: Texts that show only where a student's results or case records are shown (the rule
#: explanation is not one: the declarations page lists it as part of the rules).
RESULT_MARKERS = (SCORE_TEXT, "scale:total", CASE_NOTE, INTERVIEW_NOTE, "家校沟通内容PCX", OUTCOME_TEXT, EVIDENCE_TEXT,
                  FREE_TEXT)  # fmt: skip


@dataclass
class World:
    """The application and the ids of what it holds (keys as in :data:`STUDENTS` etc.)."""

    app: Flask
    root: Path
    ids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    @property
    def services(self):
        return self.app.extensions["xinshu"]

    def student_id(self, key: str) -> int:
        return self.ids[f"student:{key}"]


def app_config(tmp: Path, **extra: Any) -> dict[str, Any]:
    """Test configuration: a SQLite file under ``tmp``, CSRF on, the small declaration set."""
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp / 'sec.db'}",
        "SECRET_KEY": SECRET_KEY,
        "DECLARATION_ROOT": str(write_declarations(tmp / "decl", **extra.pop("declarations", {}))),
        "WTF_CSRF_ENABLED": True,
    }
    config.update(extra)
    return config


def build_world(
    tmp: Path,
    *,
    names: Mapping[str, str] | None = None,
    unit_names: Mapping[str, str] | None = None,
    texts: Mapping[str, str] | None = None,
    declarations: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> World:
    """Create the app and seed the world (see the module docstring).

    :param names: student names replacing those of :data:`STUDENTS` (by key).
    :param unit_names: org-unit names replacing those of :data:`UNITS` (by code).
    :param texts: replacements of the case-record texts (keys ``case_note``, ``interview_note``,
        ``contact``, ``outcome``, ``evidence``, ``free_text``, ``partner``, ``resource``,
        ``campaign``, ``request``, ``inbox``, ``display_name``).
    :param declarations: keyword arguments of :func:`write_declarations`.
    """
    texts = dict(texts or {})
    app = create_app(app_config(tmp, declarations=dict(declarations or {}), **dict(config or {})))
    world = World(app=app, root=tmp)
    services = world.services
    with services.db.transaction() as session:
        units = {}
        for code, (name, kind, parent) in UNITS.items():
            name = (unit_names or {}).get(code, name)
            units[code] = add_org_unit(session, code, name, kind, units[parent] if parent else None)
            world.ids[f"unit:{code}"] = units[code].id
        partners = {
            "p1": Partner(district_id=units["d1"].id, kind="hospital", name=texts.get("partner", "一区医院"),
                          phone="010-66668888"),
            "p2": Partner(district_id=units["d2"].id, kind="hospital", name="二区医院", phone="010-66669999"),
        }  # fmt: skip
        session.add_all(partners.values())
        resource = Resource(code="r1", kind="guide", title=texts.get("resource", "指导手册"), audience="teachers")
        session.add(resource)
        session.flush()
        world.ids |= {"partner:p1": partners["p1"].id, "partner:p2": partners["p2"].id, "resource:r1": resource.id}
        campaigns = _add_campaigns(session, units, texts.get("campaign"))
        world.ids |= {f"campaign:{key}": c.id for key, c in campaigns.items()}
        for key, spec in STUDENTS.items():
            name = (names or {}).get(key, spec.name)
            world.names[key] = name
            _add_student(session, world, units, key, spec, name, partners, campaigns["city"], texts)
        _add_requests(session, world, texts.get("request"))
        _add_users(session, world, units, texts.get("display_name"))
        version = DeclarationVersion(kind="alert_rules", relpath="rules/alerts/tiny.yaml",
                                     content=RULES % {"explain": "旧版本"}, sha256="0" * 64, status="superseded",
                                     author="boss")  # fmt: skip
        session.add(version)
        session.flush()
        world.ids["version:v1"] = version.id
    return world


def _add_campaigns(session, units, name: str | None) -> dict[str, Campaign]:
    now = utcnow()
    campaigns = {
        "city": Campaign(code="camp-city", name=name or "全市筛查", org_unit_id=units["city"].id, instruments=["tiny"],
                         opens_at=now.replace(year=now.year - 1), closes_at=now.replace(year=now.year + 1),
                         legal_basis="statutory_duty", legal_basis_ref="教思政厅函〔2021〕10号",
                         purpose=name or "心理健康筛查", created_by="boss"),
        "sc": Campaign(code="camp-sc", name="丙校筛查", org_unit_id=units["sc"].id, instruments=["tiny"],
                       opens_at=now.replace(year=now.year - 1), closes_at=now.replace(year=now.year + 1),
                       legal_basis="consent", purpose="丙校心理健康筛查", created_by="boss"),
    }  # fmt: skip
    session.add_all(campaigns.values())
    session.flush()
    return campaigns


def _add_student(session, world: World, units, key: str, spec: StudentSpec, name: str, partners, campaign, texts):
    """The student and, with a warning, the response, warning, case and case records."""
    klass = units[spec.class_code]
    school = units[SCHOOL_OF_CLASS[spec.class_code]]
    student = Student(school_id=school.id, class_id=klass.id, name=name, gender="F", id_number=spec.id_number,
                      student_number=f"G{spec.id_number}", school_student_no=spec.number, grade_level=7,
                      entry_year=2025)  # fmt: skip
    session.add(student)
    session.flush()
    world.ids[f"student:{key}"] = student.id
    if spec.level is None:
        return
    response = Response(student_id=student.id, instrument_id="tiny", instrument_version="t1",
                        answers={"tiny_1": 1, "tiny_2": 1},
                        raw_cells={"身份证号": spec.id_number}, source="test", dedupe_key=f"key-{key}",
                        campaign_id=campaign.id)  # fmt: skip
    response.scores.append(Score(scale="total", raw_score=2, band="high", answered=2, valid=True, flags=[],
                                 instrument_version="t1", instrument_digest="0" * 64))  # fmt: skip
    session.add(response)
    session.flush()
    warning = RiskWarning(student_id=student.id, response_id=response.id, level=spec.level, rule_id="tiny.high",
                          ruleset_id="tiny", ruleset_version="t1", ruleset_digest="0" * 64,
                          inputs=[{"rule_id": "tiny.high", "level": spec.level, "inputs": {"scale:total": 2}}],
                          escalated_to=spec.escalated_to)  # fmt: skip
    session.add(warning)
    session.flush()
    world.ids |= {f"response:{key}": response.id, f"warning:{key}": warning.id}
    message_key = f"n-{key}"
    payload = {"subject": "预警", "link": f"/admin/warning/details/?id={warning.id}"}
    session.add(Notification(idempotency_key=message_key, warning_id=warning.id, channel="inbox", role="principal",
                             org_unit_id=school.id, level=spec.level, payload=payload))  # fmt: skip
    session.add(InboxMessage(idempotency_key=message_key, role="principal", org_unit_id=school.id,
                             subject=texts.get("inbox", f"预警 #{warning.id}"), body="请处理",
                             link=f"/admin/warning/details/?id={warning.id}", level=spec.level))  # fmt: skip
    session.flush()
    world.ids[f"notification:{key}"] = session.scalar(
        select(Notification.id).where(Notification.idempotency_key == message_key)
    )
    world.ids[f"inbox:{key}"] = session.scalar(
        select(InboxMessage.id).where(InboxMessage.idempotency_key == message_key)
    )
    if spec.level < 2:
        return
    case = Case(student_id=student.id, school_id=school.id, warning_id=warning.id, level=spec.level,
                template_id="plan-t", template_version="t1", owner="psy", state="warned")  # fmt: skip
    case.tasks.append(PlanTask(template_task_id="interview", title="访谈学生", owner_role="psychology_teacher",
                               step="interviewing", category="school", due_at=utcnow()))  # fmt: skip
    case.events.append(CaseEvent(from_state=None, to_state="warned", kind="note", actor="psy",
                                 reason=texts.get("case_note", CASE_NOTE)))  # fmt: skip
    session.add(case)
    session.flush()
    partner = partners["p1" if spec.class_code.startswith(("sa", "sb")) else "p2"]
    referral = Referral(case_id=case.id, kind="hospital", partner_id=partner.id, sent_by="psy", status="outcome",
                        outcome=texts.get("outcome", OUTCOME_TEXT))  # fmt: skip
    contact = ParentContact(case_id=case.id, by="psy", channel="phone", content=texts.get("contact", CONTACT_TEXT))
    consent = GuardianConsent(student_id=student.id, case_id=case.id, purpose="referral", decision="granted",
                              guardian_relation="mother", evidence=texts.get("evidence", EVIDENCE_TEXT),
                              recorded_by="psy")  # fmt: skip
    interview = Interview(case_id=case.id, form_id="standard", form_version="2026.1",
                          answers={"notes": texts.get("interview_note", INTERVIEW_NOTE),
                                   "other_risks": texts.get("free_text", FREE_TEXT)}, level_before=spec.level,
                          level_after=spec.level, reason="维持等级", interviewer="psy")  # fmt: skip
    session.add_all([referral, contact, consent, interview])
    session.flush()
    world.ids |= {
        f"case:{key}": case.id,
        f"task:{key}": case.tasks[0].id,
        f"referral:{key}": referral.id,
        f"contact:{key}": contact.id,
        f"consent:{key}": consent.id,
    }


def _add_requests(session, world: World, details: str | None) -> None:
    for key in ("a1", "c1"):
        request = DataRequest(student_id=world.student_id(key), kind="correction", received_by="psy",
                              details=details or "更正姓名", requester_relation="mother", channel="visit",
                              due_at=utcnow())  # fmt: skip
        session.add(request)
        session.flush()
        world.ids[f"request:{key}"] = request.id


def _add_users(session, world: World, units, display_name: str | None) -> None:
    for username, held in USERS.items():
        if held is None:
            user = User(username=username, password_hash=hash_password(PASSWORD))
            session.add(user)
            session.flush()
        else:
            user = create_user(session, username, PASSWORD, held[0], units[held[1]], display_name=display_name or "")
        world.ids[f"user:{username}"] = user.id
    for username, roles in TARGETS.items():
        user = User(username=username, password_hash=hash_password(PASSWORD))
        for role, code in roles:
            user.roles.append(RoleAssignment(role=role, org_unit=units[code]))
        session.add(user)
        session.flush()
        world.ids[f"user:{username}"] = user.id
        for n, assignment in enumerate(user.roles):
            world.ids[f"assignment:{username}:{n}"] = assignment.id


# --- clients -------------------------------------------------------------------------------


def body_text(response) -> str:
    """The whole body as text (a streamed body is read to the end); BOM and bad bytes tolerated."""
    return response.get_data().decode("utf-8-sig", "replace")


def csrf_token(page: str) -> str:
    match = CSRF_INPUT.search(page)
    assert match, "no csrf_token in page"
    return match.group(1) or match.group(2)


def login(app: Flask, username: str):
    """A test client logged in as ``username`` through the login form (CSRF token included)."""
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, (username, response.status_code)
    return client


def session_token(client) -> str:
    """The CSRF token of ``client``'s session (from a page with a form and no student data)."""
    return csrf_token(client.get("/admin/breakglass/").get_data(as_text=True))


# --- the database --------------------------------------------------------------------------


def table_counts(app: Flask) -> dict[str, int]:
    """Row count of every table (state comparison before/after a request)."""
    with app.extensions["xinshu"].db.sessionmaker() as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table)) for table in Base.metadata.sorted_tables
        }


def audit_rows_after(app: Flask, last_id: int) -> list[AuditEvent]:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id)))


def last_audit_id(app: Flask) -> int:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        return int(session.scalar(select(func.max(AuditEvent.id))) or 0)


def rows_of_students(app: Flask, student_ids: Iterable[int]) -> dict[str, list[tuple]]:
    """Every row belonging to these students (student-owned and case-owned tables, scores), as tuples.

    Used to prove that requests by a user changed nothing of students outside their scope.
    """
    ids = sorted(student_ids)
    if not ids:
        return {}
    tables = Base.metadata.tables
    cases = select(tables["case_file"].c.id).where(tables["case_file"].c.student_id.in_(ids))
    responses = select(tables["response"].c.id).where(tables["response"].c.student_id.in_(ids))
    snapshot: dict[str, list[tuple]] = {}
    with app.extensions["xinshu"].db.sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            columns = table.c
            if table.name == "student":
                where = columns.id.in_(ids)
            elif "student_id" in columns:
                where = columns.student_id.in_(ids)
            elif "case_id" in columns:
                where = columns.case_id.in_(cases)
            elif table.name == "score":
                where = columns.response_id.in_(responses)
            else:
                continue
            rows = session.execute(table.select().where(where).order_by(columns.id)).all()
            snapshot[table.name] = [tuple(row) for row in rows]
    return snapshot


def account_rows(app: Flask, usernames: Iterable[str]) -> dict[str, tuple]:
    """The managed fields and role assignments of these accounts (not login bookkeeping)."""
    out = {}
    with app.extensions["xinshu"].db.sessionmaker() as session:
        for username in sorted(usernames):
            user = session.scalar(select(User).where(User.username == username))
            roles = tuple(sorted((a.role, a.org_unit_id) for a in user.roles))
            out[username] = (user.password_hash, user.active, user.expires_on, user.display_name, user.email, roles)
    return out


def escaped(value: str) -> str:
    """``value`` as Jinja's autoescape writes it."""
    return html.escape(value, quote=True).replace("&#x27;", "&#39;")
