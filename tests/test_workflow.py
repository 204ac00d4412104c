"""The six-step case workflow (xinshu.workflow), its declarations, CLI and back-office pages.

One database and one set of services per module (loading the declarations is
the slow part); each test makes its own students and cases in it.

Expected transitions and working-day due dates are written out by hand. The
2025 calendar they rely on (checked with ``chinese_calendar.is_workday``):
Sunday 09-28 is a 调休 working day, 10-01 to 10-08 are the National Day and
Mid-Autumn holiday, Saturday 10-11 is a 调休 working day, Sunday 10-12 is off.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update
from werkzeug.security import generate_password_hash

from xinshu.app import create_app
from xinshu.cli import main as cli
from xinshu.declarations.registry import load_declarations
from xinshu.errors import DeclarationsInvalid
from xinshu.judgements import judge
from xinshu.models import (
    CASE_STATES,
    Case,
    CaseEvent,
    Interview,
    LevelJudgement,
    OrgUnit,
    RiskWarning,
    RoleAssignment,
    Student,
    User,
    utcnow,
)
from xinshu.orgs import add_org_unit
from xinshu.services import PROJECT_ROOT, build_services
from xinshu.timeline import TimelineImmutable
from xinshu.workflow import (
    EVENTS,
    STATES,
    WorkflowError,
    add_task,
    add_working_days,
    advance,
    allowed_events,
    approve_plan,
    build_plan,
    complete_task,
    edit_task,
    next_workday,
    record_exit_criterion,
    record_interview,
    validate_answers,
)

UTC = dt.UTC
CST = dt.timezone(dt.timedelta(hours=8))

#: Every legal (state, event) and where it leads; every other pair is refused.
LEGAL = {
    ("monitoring", "warn"): "warned",
    ("monitoring", "close"): "closed",
    ("monitoring", "transfer"): "transferred",
    ("warned", "start_interview"): "interviewing",
    ("warned", "transfer"): "transferred",
    ("interviewing", "finish_interview"): "planning",
    ("interviewing", "transfer"): "transferred",
    ("planning", "start_intervention"): "intervening",
    ("planning", "transfer"): "transferred",
    ("intervening", "start_follow_up"): "follow_up",
    ("intervening", "transfer"): "transferred",
    ("follow_up", "relapse"): "intervening",
    ("follow_up", "watch"): "monitoring",
    ("follow_up", "close"): "closed",
    ("follow_up", "transfer"): "transferred",
}
LEVEL3_CRITERIA = ("safety_plan", "referral_outcome", "risk_reassessed", "stable_follow_up", "principal_reviewed")
LEVEL2_CRITERIA = ("risk_reassessed", "counselling_goals", "parents_informed", "stable_follow_up")
ANSWERS = {
    "suicidal_ideation": "active",
    "suicide_plan": "specific",
    "means_access": "possible",
    "past_attempt": "none",
    "self_harm_history": "past",
    "major_loss": ["parents_separated"],
    "bullying": "none",
    "family_conflict": "frequent",
    "substance_use": [],
    "family_support": "partial",
    "peer_relationships": "some",
    "help_seeking": "willing",
    "future_plans": "  想考上高中  ",
    "warning_signs": "晚上独处、反复想起父母争吵",
    "coping_strategies": "听音乐、散步",
    "contacts": "姑姑 138xxxx；班主任王老师",
    "professional_help": "12356；学校心理老师",
    "environment_safety": "家长收好药物和刀具",
    "plan_shared_with": ["student", "guardian"],
    "interview_mode": "in_person",
    "guardian_informed": False,
    "next_contact": "2025-10-09",
}


def utc(*args) -> dt.datetime:
    """A Beijing wall-clock time as naive UTC (how times are stored)."""
    return dt.datetime(*args, tzinfo=CST).astimezone(UTC).replace(tzinfo=None)


# --- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    services = build_services({"DATABASE_URL": f"sqlite:///{tmp / 'wf.db'}"})
    services.db.create_all()
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        for code in ("S1", "S2"):
            school = add_org_unit(session, code, f"{code}中学", "school", district)
            grade = add_org_unit(session, f"{code}-G07", "七年级", "grade", school)
            add_org_unit(session, f"{code}-G07-C01", "七年级1班", "class", grade)
    yield services
    services.db.dispose()


def new_student(session, school: str = "S1") -> Student:
    units = dict(session.execute(select(OrgUnit.code, OrgUnit.id)).all())
    student = Student(
        school_id=units[school], class_id=units[f"{school}-G07-C01"], name="学生", gender="F", grade_level=7
    )
    session.add(student)
    session.flush()
    return student


def make_case(session, svc, state: str, level: int = 3, ready: bool = False) -> Case:
    """A case put straight into ``state``; ``ready``: every precondition of leaving it is met."""
    student = new_student(session)
    warning = RiskWarning(
        student_id=student.id,
        level=level,
        rule_id="t",
        ruleset_id="t",
        ruleset_version="t",
        ruleset_digest="t",
        inputs=[],
    )
    session.add(warning)
    session.flush()
    template = svc.declarations.template_for(level)
    case = Case(
        student=student,
        school_id=student.school_id,
        warning=warning,
        level=level,
        state=state,
        template_id=template.id,
        template_version=template.version,
        opened_at=utcnow(),
        owner="psy",
    )
    case.tasks.extend(build_plan(template, case.opened_at))
    session.add(case)
    session.flush()
    if ready:
        session.add(
            Interview(
                case_id=case.id,
                form_id="standard",
                form_version="t",
                answers={},
                level_before=level,
                level_after=level,
                reason="访谈",
                interviewer="psy",
            )
        )
        case.plan_approved_by, case.plan_approved_at = "principal", utcnow()
        case.exit_criteria = {c.id: {"by": "psy", "at": "", "note": ""} for c in template.exit_criteria}
        session.flush()
    return case


def opened_case(session, svc, level: int = 2) -> Case:
    """A case opened the real way: a person's judgement opens the episode and the case."""
    student = new_student(session)
    judge(session, svc, student, level, "override", "班主任报告学生流露轻生念头", "psy")
    return session.scalar(select(Case).where(Case.student_id == student.id))


def state_events(case: Case) -> list[tuple]:
    return [(e.from_state, e.to_state, e.actor) for e in case.events if e.kind == "state"]


# --- the state machine ------------------------------------------------------------


def test_states_and_events_are_the_models():
    assert STATES == CASE_STATES
    assert set(EVENTS) == {event for _, event in LEGAL}


@pytest.mark.parametrize(("state", "event"), [(s, e) for s in CASE_STATES for e in EVENTS])
def test_every_transition(svc, state, event):
    """Legal pairs move the case and record who, when and why; every other pair is refused."""
    with svc.db.transaction() as session:
        case = make_case(session, svc, state, level=3, ready=True)
        target = LEGAL.get((state, event))
        assert (event in allowed_events(case)) == (target is not None)
        if target is None:
            with pytest.raises(WorkflowError, match=f"cannot {event} a case in state {state}"):
                advance(session, svc, case, event, "psy", "理由")
            assert case.state == state
            assert case.events == []
            return
        before = utcnow()
        entry = advance(session, svc, case, event, "psy", "理由")
        assert case.state == target
        assert (entry.kind, entry.from_state, entry.to_state, entry.actor, entry.reason) == (
            "state",
            state,
            target,
            "psy",
            "理由",
        )
        assert before <= entry.at <= utcnow()
        ended = target in ("closed", "transferred")
        assert (case.closed_at is not None, case.closed_reason) == (ended, "理由" if ended else None)


def test_reason_and_actor(svc):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "follow_up", level=2, ready=True)
        for event in ("transfer", "close", "relapse", "watch"):
            with pytest.raises(WorkflowError, match="请填写理由"):
                advance(session, svc, case, event, "psy", "  ")
        with pytest.raises(WorkflowError, match="actor"):
            advance(session, svc, case, "close", "", "理由")
        with pytest.raises(WorkflowError, match="unknown event"):
            advance(session, svc, case, "reopen", "psy", "理由")
        warned = make_case(session, svc, "warned", level=2)
        warned.owner = None
        entry = advance(session, svc, warned, "start_interview", "psy2")
        assert entry.reason == "开始调研访谈（负责人：psy2）"  # the event's label when no reason is given
        assert (warned.owner, warned.owner_role) == ("psy2", "psychology_teacher")  # whoever takes up the case
        assert case.state == "follow_up" and state_events(case) == []


def test_finish_interview_needs_an_interview(svc):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "warned", level=2)
        old = Interview(
            case_id=case.id,
            form_id="standard",
            form_version="t",
            answers={},
            level_before=2,
            level_after=2,
            reason="上一轮",
            interviewer="psy",
            at=utcnow() - dt.timedelta(days=30),
        )
        session.add(old)
        advance(session, svc, case, "start_interview", "psy")
        with pytest.raises(WorkflowError, match="请先记录调研访谈"):
            advance(session, svc, case, "finish_interview", "psy")
        assert case.state == "interviewing"


@pytest.mark.parametrize(("level", "needs"), [(2, False), (3, True), (4, True)])
def test_plan_approval_gate(svc, level, needs):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "planning", level=level)
        if needs:
            with pytest.raises(WorkflowError, match=f"{level} 级个案的干预方案须经校长审批"):
                advance(session, svc, case, "start_intervention", "psy")
            assert case.state == "planning"
            with pytest.raises(WorkflowError, match="no plan to approve"):
                approve_plan(session, svc, make_case(session, svc, "interviewing", level=level), "principal")
            entry = approve_plan(session, svc, case, "principal", "同意")
            assert (entry.kind, entry.actor, entry.reason) == ("plan", "principal", "校长审批通过干预方案：同意")
            assert case.plan_approved_by == "principal" and case.plan_approved_at is not None
            with pytest.raises(WorkflowError, match="already approved"):
                approve_plan(session, svc, case, "principal")
        advance(session, svc, case, "start_intervention", "psy")
        assert case.state == "intervening"


def test_close_only_with_every_exit_criterion(svc):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "follow_up", level=2)
        with pytest.raises(WorkflowError, match="尚缺：" + "、".join(LEVEL2_CRITERIA)):
            advance(session, svc, case, "close", "psy", "稳定")
        with pytest.raises(WorkflowError, match="not an exit criterion"):
            record_exit_criterion(session, svc, case, "safety_plan", "psy")
        for criterion in LEVEL2_CRITERIA[:-1]:
            entry = record_exit_criterion(session, svc, case, criterion, "psy", "复测 PHQ-9 总分 6")
            assert entry.kind == "plan" and entry.actor == "psy"
        assert case.exit_criteria["risk_reassessed"]["by"] == "psy"
        assert case.exit_criteria["risk_reassessed"]["note"] == "复测 PHQ-9 总分 6"
        with pytest.raises(WorkflowError, match="already recorded"):
            record_exit_criterion(session, svc, case, "risk_reassessed", "psy")
        with pytest.raises(WorkflowError, match=r"尚缺：stable_follow_up$"):
            advance(session, svc, case, "close", "psy", "稳定")
        record_exit_criterion(session, svc, case, "stable_follow_up", "psy")
        open_tasks = [t for t in case.tasks if t.status == "open"]
        advance(session, svc, case, "close", "psy", "四项结案条件均已满足")
        assert (case.state, case.closed_reason) == ("closed", "四项结案条件均已满足")
        assert open_tasks and all(t.status == "cancelled" for t in open_tasks)
        for change in (
            lambda: complete_task(session, svc, case, open_tasks[0].id, "psy"),
            lambda: record_exit_criterion(session, svc, case, "risk_reassessed", "psy"),
            lambda: add_task(session, svc, case, "psy", "再访", "psychology_teacher", utcnow()),
        ):
            with pytest.raises(WorkflowError, match="已结束，不能再修改"):
                change()
    with svc.db.sessionmaker() as session:
        stored = session.get(Case, case.id)
        assert stored.state == "closed" and set(stored.exit_criteria) == set(LEVEL2_CRITERIA)


def test_monitoring_goes_back_to_warned_when_the_level_rises(svc):
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        case.state = "follow_up"
        advance(session, svc, case, "watch", "psy", "干预结束，转入常规监测")
        assert case.state == "monitoring"
        judge(session, svc, case.student, 3, "adjust", "复测显示加重", "psy")
        assert (case.state, case.level) == ("warned", 3)
        assert state_events(case)[-1] == ("monitoring", "warned", "system")


# --- the interview ---------------------------------------------------------------


def test_interview_records_the_judgement_and_replans(svc):
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        assert (case.state, case.template_id) == ("warned", "level2-serious")
        level2_open = [t for t in case.tasks if t.status == "open"]
        interview = record_interview(
            session, svc, case, "standard", ANSWERS, 3, "adjust", "有具体计划，上调为严重", "psy"
        )
        judgement = session.scalar(
            select(LevelJudgement)
            .where(LevelJudgement.student_id == case.student_id)
            .order_by(LevelJudgement.id.desc())
        )
        assert (judgement.level, judgement.kind, judgement.reason, judgement.actor) == (
            3,
            "adjust",
            "有具体计划，上调为严重",
            "psy",
        )
        assert (interview.form_id, interview.form_version, interview.level_before, interview.level_after) == (
            "standard",
            "2026.1",
            2,
            3,
        )
        assert interview.answers["future_plans"] == "想考上高中"
        assert "substance_use" not in interview.answers  # empty answers are left out
        assert interview.answers["guardian_informed"] is False
        assert (case.state, case.level, case.template_id) == ("planning", 3, "level3-severe")
        assert session.get(RiskWarning, case.warning_id).level == 3
        interview_task = next(t for t in level2_open if t.template_task_id == "interview")
        assert (interview_task.status, interview_task.done_by) == ("done", "psy")
        assert all(t.status == "cancelled" for t in level2_open if t is not interview_task)
        level3_ids = {t.template_task_id for t in case.tasks if t.status == "open"}
        assert level3_ids == {
            "principal_informed",
            "parent_meeting",
            "plan",
            "referral_offer",
            "counselling",
            "follow_up",
        }
        kinds = [(e.kind, e.from_state, e.to_state) for e in case.events]
        assert kinds[0] == ("state", None, "warned")
        assert ("state", "warned", "interviewing") in kinds
        assert kinds[-1] == ("state", "interviewing", "planning")
        assert {"interview", "task", "plan"} <= {kind for kind, _, _ in kinds}
        with pytest.raises(WorkflowError, match="须经校长审批"):
            advance(session, svc, case, "start_intervention", "psy")
        with pytest.raises(WorkflowError, match="recorded in warned or interviewing"):
            record_interview(session, svc, case, "standard", ANSWERS, 3, "confirm", "再次访谈", "psy")


def test_interview_confirm_keeps_the_plan(svc):
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        tasks = {t.id for t in case.tasks}
        record_interview(session, svc, case, "standard", ANSWERS, 2, "confirm", "维持较重", "psy")
        assert (case.state, case.level, case.template_id) == ("planning", 2, "level2-serious")
        assert {t.id for t in case.tasks} == tasks
        advance(session, svc, case, "start_intervention", "psy")  # level 2: no approval needed


def test_interview_answers_are_checked(svc):
    form = svc.declarations.interview_forms["standard"]
    bad = dict(ANSWERS, suicide_plan="maybe", next_contact="2025-13-01", guardian_informed="yes", nosuch="x")
    del bad["warning_signs"]
    with pytest.raises(WorkflowError) as caught:
        validate_answers(form, bad)
    message = str(caught.value)
    for part in (
        "访谈记录不完整：",
        "没有字段 nosuch",
        "自杀计划：选项无效",
        "下次约谈日期：应为日期（YYYY-MM-DD）",
        "已告知监护人访谈情况：应为“是”或“否”",
        "1. 预警信号（危机可能来临时的想法、情绪、处境）：必填",
    ):
        assert part in message
    with pytest.raises(WorkflowError, match="重大丧失（可多选）：选项无效"):
        validate_answers(form, dict(ANSWERS, major_loss="bereavement"))
    with pytest.raises(WorkflowError, match="同一选项选了两次"):
        validate_answers(form, dict(ANSWERS, major_loss=["bereavement", "bereavement"]))
    assert validate_answers(form, dict(ANSWERS, next_contact=dt.date(2025, 10, 9)))["next_contact"] == "2025-10-09"
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        with pytest.raises(WorkflowError, match="访谈记录不完整"):
            record_interview(session, svc, case, "standard", bad, 2, "confirm", "理由", "psy")
        with pytest.raises(WorkflowError, match="须保持当前等级 2"):
            record_interview(session, svc, case, "standard", ANSWERS, 3, "confirm", "理由", "psy")
        with pytest.raises(WorkflowError, match="confirms or adjusts"):
            record_interview(session, svc, case, "standard", ANSWERS, 3, "override", "理由", "psy")
        with pytest.raises(WorkflowError, match="no interview form"):
            record_interview(session, svc, case, "nosuch", ANSWERS, 2, "confirm", "理由", "psy")
        with pytest.raises(WorkflowError, match="请填写理由"):
            record_interview(session, svc, case, "standard", ANSWERS, 2, "confirm", " ", "psy")
        assert case.state == "warned"  # nothing moved


# --- the timeline -------------------------------------------------------------------


def test_timeline_cannot_be_edited_or_deleted(svc):
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        case_id, event_id = case.id, case.events[0].id
    attempts = [
        lambda s: setattr(s.get(CaseEvent, event_id), "reason", "改写"),
        lambda s: setattr(s.get(CaseEvent, event_id), "at", utcnow()),
        lambda s: s.delete(s.get(CaseEvent, event_id)),
        lambda s: s.delete(s.get(Case, case_id)),
        lambda s: s.execute(update(CaseEvent).where(CaseEvent.id == event_id).values(reason="改写")),
        lambda s: s.execute(delete(CaseEvent).where(CaseEvent.case_id == case_id)),
    ]
    for attempt in attempts:
        with svc.db.sessionmaker() as session:
            with pytest.raises(TimelineImmutable):
                attempt(session)
                session.flush()
            session.rollback()
    with svc.db.sessionmaker() as session:
        entry = session.get(CaseEvent, event_id)
        assert entry is not None and entry.reason.startswith("预警 #")
        session.get(CaseEvent, event_id).reason = entry.reason  # no net change: allowed
        session.flush()


# --- plans and working days --------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (utc(2025, 9, 26, 16, 0), 0, utc(2025, 9, 26, 16, 0)),
        (utc(2025, 9, 26, 16, 0), 1, utc(2025, 9, 28, 16, 0)),  # Saturday off, Sunday 09-28 is 调休 work
        (utc(2025, 9, 26, 16, 0), 2, utc(2025, 9, 29, 16, 0)),
        (utc(2025, 9, 26, 16, 0), 3, utc(2025, 9, 30, 16, 0)),
        (utc(2025, 9, 26, 16, 0), 4, utc(2025, 10, 9, 16, 0)),  # 10-01..10-08 off
        (utc(2025, 9, 26, 16, 0), 6, utc(2025, 10, 11, 16, 0)),  # Saturday 10-11 is 调休 work
        (utc(2025, 9, 26, 16, 0), 7, utc(2025, 10, 13, 16, 0)),  # Sunday 10-12 off
        (utc(2025, 10, 3, 10, 0), 1, utc(2025, 10, 9, 10, 0)),  # opened during the holiday
        (utc(2025, 9, 30, 23, 30), 1, utc(2025, 10, 9, 23, 30)),  # Beijing date, not the UTC date, counts
        (utc(2025, 9, 27, 1, 30), 1, utc(2025, 9, 28, 1, 30)),  # Friday 17:30 UTC is Saturday in Beijing
        (utc(2027, 1, 8, 9, 0), 1, utc(2027, 1, 11, 9, 0)),  # no 2027 data yet: Monday to Friday
    ],
)
def test_working_days(start, days, due):
    assert add_working_days(start, days) == due


def test_next_workday():
    assert next_workday(utc(2025, 10, 1, 9, 0)) == utc(2025, 10, 9, 9, 0)
    assert next_workday(utc(2025, 9, 28, 9, 0)) == utc(2025, 9, 28, 9, 0)
    assert next_workday(utc(2025, 10, 12, 9, 0)) == utc(2025, 10, 13, 9, 0)


def test_build_plan_around_national_day(svc):
    start = utc(2025, 9, 26, 16, 0)  # 08:00 UTC
    level2 = {t.template_task_id: t for t in build_plan(svc.declarations.templates["level2-serious"], start)}
    assert {key: task.due_at for key, task in level2.items()} == {
        "interview": dt.datetime(2025, 9, 29, 8, 0),  # 2 working days: 09-28 (Sun), 09-29
        "parent_contact": dt.datetime(2025, 9, 30, 8, 0),
        "plan": dt.datetime(2025, 10, 10, 8, 0),  # 09-28, 29, 30, 10-09, 10-10
        "counselling": dt.datetime(2025, 10, 10, 8, 0),
        "follow_up": dt.datetime(2025, 10, 16, 8, 0),  # ... 10-11 (Sat), 10-13, 14, 15, 16
    }
    assert (level2["counselling"].every_days, level2["follow_up"].every_days, level2["plan"].every_days) == (
        7,
        14,
        None,
    )
    assert level2["interview"].resources == ["crisis-assessment-psychology"]
    assert all(t.status == "open" and t.case is None for t in level2.values())
    level4 = {t.template_task_id: t.due_at for t in build_plan(svc.declarations.templates["level4-very-severe"], start)}
    assert level4["safety"] == dt.datetime(2025, 9, 26, 10, 0)  # 2 calendar hours: a crisis does not wait
    assert level4["follow_up"] == dt.datetime(2025, 9, 29, 8, 0)  # 72 calendar hours
    assert level4["return_to_school"] == dt.datetime(2025, 10, 16, 8, 0)


def test_opened_case_gets_working_day_plan(svc):
    with svc.db.transaction() as session:
        case = opened_case(session, svc, level=2)
        expected = {
            t.template_task_id: t.due_at
            for t in build_plan(svc.declarations.templates["level2-serious"], case.opened_at)
        }
        assert {t.template_task_id: t.due_at for t in case.tasks} == expected


def test_repeating_task_and_plan_edits(svc):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "planning", level=3)
        approve_plan(session, svc, case, "principal")
        counselling = next(t for t in case.tasks if t.template_task_id == "counselling")
        following = complete_task(session, svc, case, counselling.id, "psy", "第一次辅导")
        assert (counselling.status, counselling.done_by) == ("done", "psy")
        assert following.due_at == next_workday(counselling.done_at + dt.timedelta(days=7))
        assert (following.every_days, following.template_task_id, following.status) == (7, "counselling", "open")
        assert case.events[-1].kind == "task" and "下次截止" in case.events[-1].reason
        with pytest.raises(WorkflowError, match="not open"):
            complete_task(session, svc, case, counselling.id, "psy")
        plan = next(t for t in case.tasks if t.template_task_id == "plan")
        due = utc(2025, 10, 10, 17, 0)
        entry = edit_task(
            session,
            svc,
            case,
            plan.id,
            "psy",
            "家长周五才能到校",
            title="与家长共同制定方案",
            due_at=due,
            owner_role="class_teacher",
        )
        assert (plan.title, plan.due_at, plan.owner_role) == ("与家长共同制定方案", due, "class_teacher")
        assert entry.kind == "plan" and "2025-10-10 17:00" in entry.reason and "家长周五才能到校" in entry.reason
        assert case.plan_approved_by is None and "重新审批" in entry.reason  # the plan changed after approval
        with pytest.raises(WorkflowError, match="nothing to change"):
            edit_task(session, svc, case, plan.id, "psy", title="与家长共同制定方案")
        with pytest.raises(WorkflowError, match="unknown role"):
            edit_task(session, svc, case, plan.id, "psy", owner_role="janitor")
        with pytest.raises(WorkflowError, match="only open tasks"):
            edit_task(session, svc, case, counselling.id, "psy", title="x")
        later = utcnow().replace(second=0, microsecond=0) + dt.timedelta(days=3)  # a new task is due in the future
        task = add_task(
            session, svc, case, "psy", "同伴支持小组", "class_teacher", later, every_days=14, reason="一对一"
        )
        assert (task.template_task_id, task.every_days, task.step) == ("custom", 14, "intervening")
        assert case.events[-1].kind == "plan" and "同伴支持小组" in case.events[-1].reason


# --- declarations -----------------------------------------------------------------


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "decl"
    (root / "rules").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "rules" / "levels.yaml", root / "rules" / "levels.yaml")
    shutil.copytree(PROJECT_ROOT / "rules" / "interventions", root / "rules" / "interventions")
    shutil.copytree(PROJECT_ROOT / "rules" / "interviews", root / "rules" / "interviews")
    return root


def _load(svc, root: Path):
    return load_declarations([root], svc.scorer_classes, svc.channel_classes)


def test_project_declarations(svc):
    decls = svc.declarations
    form = decls.interview_forms["standard"]
    assert [s for s, _ in form.sections()] == ["risk_factors", "protective_factors", "safety_plan", "notes"]
    assert any("Stanley" in source for source in form.sources)
    for template in decls.templates.values():
        assert template.category == "general" and template.exit_criteria
    assert [c.id for c in decls.templates["level3-severe"].exit_criteria] == list(LEVEL3_CRITERIA)


def test_template_category_matching(svc, tmp_path):
    root = _root(tmp_path)
    text = (root / "rules" / "interventions" / "level2.yaml").read_text("utf-8")
    bullying = text.replace("id: level2-serious", "id: level2-bullying").replace(
        "category: general", "category: bullying"
    )
    (root / "rules" / "interventions" / "level2_bullying.yaml").write_text(bullying, "utf-8")
    decls = _load(svc, root)
    assert decls.template_for(2, "bullying").id == "level2-bullying"
    assert decls.template_for(2, "loss").id == "level2-serious"
    assert decls.template_for(2).id == "level2-serious"
    assert decls.categories_for(2) == ["general", "bullying"]
    (root / "rules" / "interventions" / "level2_copy.yaml").write_text(
        text.replace("id: level2-serious", "id: level2-copy"), "utf-8"
    )
    with pytest.raises(DeclarationsInvalid, match="level 2 already has general template 'level2-serious'"):
        _load(svc, root)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("    due_working_days: 2\n", "    due_working_days: 2\n    due_hours: 4\n", "is valid under each of"),
        ("    due_working_days: 2\n", "", "'due_hours' is a required property"),
        ("    every_days: 7\n", "    every_days: 0\n", "less than the minimum of 1"),
        ("  - id: counselling_goals\n", "  - id: risk_reassessed\n", "duplicate exit criterion id 'risk_reassessed'"),
        ("category: general", "category: exams", "is not one of"),
    ],
)
def test_template_errors(svc, tmp_path, old, new, message):
    root = _root(tmp_path)
    path = root / "rules" / "interventions" / "level2.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")
    with pytest.raises(DeclarationsInvalid, match=re.escape(message)):
        _load(svc, root)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    type: textarea\n    label: {zh: 其他危险因素",
            "    type: choice\n    label: {zh: 其他危险因素",
            "a choice field needs options",
        ),
        (
            "  - id: next_contact\n    section: notes\n    type: date\n",
            "  - id: next_contact\n    section: notes\n    type: date\n    options: [{id: a, label: {zh: a}}, "
            "{id: b, label: {zh: b}}]\n",
            "a date field takes no options",
        ),
        ("  - id: notes\n", "  - id: contacts\n", "duplicate field id 'contacts'"),
        ("    type: bool\n", "    type: boolean\n", "is not one of"),
        ("    section: notes\n    type: bool\n", "    section: misc\n    type: bool\n", "is not one of"),
    ],
)
def test_interview_form_errors(svc, tmp_path, old, new, message):
    root = _root(tmp_path)
    path = root / "rules" / "interviews" / "standard.yaml"
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")
    with pytest.raises(DeclarationsInvalid, match=re.escape(message)):
        _load(svc, root)


# --- command line --------------------------------------------------------------------


def test_cli_round_trip(svc, tmp_path, monkeypatch):
    url = svc.db.url
    with svc.db.transaction() as session:
        case_id = opened_case(session, svc, level=3).id
    runner = CliRunner()

    def run(*args, ok=True):
        result = runner.invoke(cli, ["case", *map(str, args), "--database", url])
        assert (result.exit_code == 0) == ok, result.output
        return json.loads(result.stdout) if ok else result.stderr

    shown = run("show", case_id)  # built from scratch, like any CLI call
    assert (shown["state"], shown["level"], shown["next"]) == ("warned", 3, {"start_interview": None, "transfer": None})
    monkeypatch.setattr("xinshu.services.build_services", lambda *a, **k: svc)  # the rest: skip reloading
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(ANSWERS, ensure_ascii=False), "utf-8")
    shown = run(
        "interview",
        case_id,
        "--answers",
        answers,
        "--level",
        3,
        "--kind",
        "confirm",
        "--reason",
        "维持严重",
        "--by",
        "psy",
    )
    assert shown["state"] == "planning"
    assert shown["next"]["start_intervention"] == "3 级个案的干预方案须经校长审批后才能开始干预"
    assert "须经校长审批" in run("advance", case_id, "start_intervention", "--by", "psy", ok=False)
    assert run("approve", case_id, "--by", "principal")["plan_approved_by"] == "principal"
    run("advance", case_id, "start_intervention", "--by", "psy")
    task = next(t for t in shown["tasks"] if t["title"].startswith("报告校长"))
    shown = run("task-done", case_id, task["id"], "--by", "psy", "--note", "已当面报告")
    assert next(t for t in shown["tasks"] if t["id"] == task["id"])["status"] == "done"
    shown = run("advance", case_id, "start_follow_up", "--by", "psy")
    assert "尚缺：" + "、".join(LEVEL3_CRITERIA) in run("close", case_id, "--by", "psy", "--reason", "稳定", ok=False)
    for criterion in LEVEL3_CRITERIA:
        shown = run("exit", case_id, criterion, "--by", "psy", "--note", "见记录")
    assert all(c["recorded"]["by"] == "psy" for c in shown["exit_criteria"])
    shown = run("close", case_id, "--by", "psy", "--reason", "结案条件均已满足")
    assert (shown["state"], shown["closed_reason"]) == ("closed", "结案条件均已满足")
    assert shown["timeline"][-1]["kind"] == "state" and shown["timeline"][-1]["to"] == "closed"
    assert "cannot transfer a case in state closed" in run(
        "transfer", case_id, "--by", "psy", "--reason", "转学", ok=False
    )
    assert "no case #999999" in run("show", 999999, ok=False)


# --- back office ------------------------------------------------------------------------

PASSWORD = "Correct horse battery 7"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """The app with a level-3 case in school S1 (escalated to the city), one in S2, and five users."""
    tmp = tmp_path_factory.mktemp("workflow-web")
    app = create_app(
        {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp / 'web.db'}", "SECRET_KEY": "test", "WTF_CSRF_ENABLED": True}
    )
    services = app.extensions["xinshu"]
    cheap = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1")
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        units = {}
        for code in ("S1", "S2"):
            units[code] = add_org_unit(session, code, f"{code}中学", "school", district)
            grade = add_org_unit(session, f"{code}-G07", "七年级", "grade", units[code])
            add_org_unit(session, f"{code}-G07-C01", "七年级1班", "class", grade)
        cases = {code: opened_case(session, services, level=3) if code == "S1" else None for code in ("S1",)}
        cases["S1"].warning.escalated_to = "city"  # unanswered up to the city: the bureau admin follows it
        student = new_student(session, "S2")
        judge(session, services, student, 3, "override", "报告", "psy2")
        cases["S2"] = session.scalar(select(Case).where(Case.student_id == student.id))
        for name, role, unit in (
            ("psy", "psychology_teacher", units["S1"]),
            ("head", "principal", units["S1"]),
            ("klass", "class_teacher", units["S1"]),
            ("boss", "bureau_admin", city),
            ("psy2", "psychology_teacher", units["S2"]),
        ):
            user = User(username=name, password_hash=cheap)
            user.roles.append(RoleAssignment(role=role, org_unit=unit))
            session.add(user)
        ids = {code: case.id for code, case in cases.items()}
    yield app, ids
    services.db.dispose()


def client_for(app, username: str):
    client = app.test_client()
    page = client.get("/login")
    token = _token(page.get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, username
    return client


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html)
    assert match, "no csrf_token"
    return match.group(1)


def post(client, url: str, page_url: str, **data):
    token = _token(client.get(page_url).get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, **data})


def test_case_pages(web):
    app, ids = web
    case_url = f"/admin/caseflow/case/{ids['S1']}/"
    psy, head, boss, klass, psy2 = (client_for(app, n) for n in ("psy", "head", "boss", "klass", "psy2"))

    assert f"个案 #{ids['S1']}" in psy.get("/admin/caseflow/").get_data(as_text=True)
    assert f"个案 #{ids['S1']}" not in psy2.get("/admin/caseflow/").get_data(as_text=True)
    assert psy2.get(case_url).status_code == 404  # out of scope looks like missing
    assert psy.get("/admin/caseflow/case/999999/").status_code == 404

    page = psy.get(case_url).get_data(as_text=True)
    assert 'value="start_interview"' in page and 'value="transfer"' in page and "审批通过方案" not in page
    read_only = boss.get(case_url).get_data(as_text=True)
    assert 'value="start_interview"' not in read_only and "处置记录" in read_only
    assert post(boss, f"{case_url}advance", case_url, event="start_interview").status_code == 403
    assert psy.post(f"{case_url}advance", data={"event": "start_interview"}).status_code == 400  # no CSRF token

    form_page = psy.get(f"{case_url}interview").get_data(as_text=True)
    assert "自杀意念" in form_page and "预警信号" in form_page and "家庭支持" in form_page
    fields = {f"f_{k}": v for k, v in ANSWERS.items() if not isinstance(v, bool | list)}
    fields.update(f_major_loss=["parents_separated"], f_plan_shared_with=["student"], f_guardian_informed="no")
    missing = dict(fields, f_warning_signs="")
    response = post(
        psy, f"{case_url}interview", f"{case_url}interview", level="3", kind="confirm", reason="维持", **missing
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and "预警信号（危机可能来临时的想法、情绪、处境）：必填" in body
    response = post(
        psy,
        f"{case_url}interview",
        f"{case_url}interview",
        level="3",
        kind="confirm",
        category="general",
        reason="维持严重",
        **fields,
    )
    assert response.status_code == 302
    page = psy.get(case_url).get_data(as_text=True)
    assert "制定方案" in page and "父母离异或分居" in page and "须经校长审批" in page

    response = post(psy, f"{case_url}advance", case_url, event="start_intervention")
    assert response.status_code == 302
    assert "须经校长审批" in psy.get(case_url).get_data(as_text=True)  # flashed
    assert post(psy, f"{case_url}approve", case_url).status_code == 403
    assert "审批通过方案" in head.get(case_url).get_data(as_text=True)
    assert post(head, f"{case_url}approve", case_url, reason="同意").status_code == 302
    assert post(psy, f"{case_url}advance", case_url, event="start_intervention").status_code == 302

    with app.extensions["xinshu"].db.sessionmaker() as session:
        case = session.get(Case, ids["S1"])
        assert (case.state, case.plan_approved_by) == ("intervening", "head")
        meeting = next(t for t in case.tasks if t.template_task_id == "parent_meeting" and t.status == "open")
        plan = next(t for t in case.tasks if t.template_task_id == "referral_offer")
    done_url = f"{case_url}task/{meeting.id}/done"
    assert post(klass, done_url, case_url).status_code == 302  # the task's owner role may mark it done
    assert post(klass, f"{case_url}task/{plan.id}/done", case_url).status_code == 403
    edit_url = f"{case_url}task/{plan.id}/edit"
    assert (
        post(
            psy,
            edit_url,
            edit_url,
            title="转介市精神卫生中心",
            due_at="2025-10-09T09:00",
            owner_role="principal",
            reason="家长同意",
        ).status_code
        == 302
    )
    assert (
        post(
            psy,
            f"{case_url}task/add",
            case_url,
            title="同伴支持",
            owner_role="class_teacher",
            due_at=f"{dt.date.today() + dt.timedelta(days=10)}T16:00",
            step="intervening",
            category="school",
            every_days="7",
        ).status_code
        == 302
    )
    assert post(psy, f"{case_url}exit", case_url, criterion="safety_plan", note="三方签字").status_code == 302
    page = psy.get(case_url).get_data(as_text=True)
    assert "转介市精神卫生中心" in page and "2025-10-09 09:00" in page and "同伴支持" in page and "三方签字" in page
    with app.extensions["xinshu"].db.sessionmaker() as session:
        case = session.get(Case, ids["S1"])
        assert next(t for t in case.tasks if t.id == meeting.id).done_by == "klass"
        assert next(t for t in case.tasks if t.id == plan.id).due_at == dt.datetime(2025, 10, 9, 1, 0)
        assert set(case.exit_criteria) == {"safety_plan"}
        assert [e.actor for e in case.events if e.kind in ("plan", "task")][-4:] == ["klass", "psy", "psy", "psy"]
    assert post(psy, f"{case_url}advance", case_url, event="transfer", reason="").status_code == 302
    assert "请填写理由" in psy.get(case_url).get_data(as_text=True)
    assert post(psy, f"{case_url}advance", case_url, event="transfer", reason="转学至外市").status_code == 302
    page = psy.get(case_url).get_data(as_text=True)
    assert "不能再变更" in page and 'value="close"' not in page and "转学至外市" in page


# --- new-user findings: the added task's values are checked --------------------------------------


def test_add_task_checks_interval_due_time_and_title(svc):
    with svc.db.transaction() as session:
        case = make_case(session, svc, "intervening", level=2)
        future = utcnow().replace(second=0, microsecond=0) + dt.timedelta(days=2)

        def add(**changes):
            values = {"title": "同伴支持", "due_at": future, "every_days": None, **changes}
            return add_task(session, svc, case, "psy", values["title"], "class_teacher", values["due_at"],
                            every_days=values["every_days"])  # fmt: skip

        for days in (0, 366, 3_000_000, 100_000_000_000):
            with pytest.raises(WorkflowError, match="重复间隔应为 1 至 365 天"):
                add(every_days=days)
        with pytest.raises(WorkflowError, match="截止时间不能早于现在"):
            add(due_at=utcnow() - dt.timedelta(minutes=5))
        with pytest.raises(WorkflowError, match="任务名称不能超过 255 个字符"):
            add(title="长" * 256)
        yearly = add(title="长" * 255, every_days=365)
        # done now, the next one is due 365 days later, moved to a working day
        following = complete_task(session, svc, case, yearly.id, "psy")
        assert following.due_at == next_workday(yearly.done_at + dt.timedelta(days=365))
        with pytest.raises(WorkflowError, match="任务名称不能超过 255 个字符"):
            edit_task(session, svc, case, following.id, "psy", title="长" * 256)
        # a task stored with a huge interval before the check: done, without a next occurrence
        legacy = add()
        legacy.every_days = 3_000_000
        assert complete_task(session, svc, case, legacy.id, "psy") is None
        assert legacy.status == "done" and "重复间隔 3000000 天无效" in case.events[-1].reason


@pytest.mark.parametrize(
    ("every_days", "title", "due_days", "message"),
    [
        ("3000000", "同伴支持", 3, "重复间隔应为 1 至 365 天"),
        ("100000000000", "同伴支持", 3, "重复间隔应为 1 至 365 天"),
        ("0", "同伴支持", 3, "重复间隔应为 1 至 365 天"),
        ("٣", "同伴支持", 3, "重复间隔应为 1 至 365 天"),  # an Arabic-Indic digit is not a number of days here
        ("7", "长" * 256, 3, "任务名称不能超过 255 个字符"),
        ("7", "同伴支持", -1, "截止时间不能早于现在"),
    ],
)
def test_add_task_page_refuses_bad_values(web, every_days, title, due_days, message):
    app, ids = web
    case_url = f"/admin/caseflow/case/{ids['S2']}/"
    psy2 = client_for(app, "psy2")
    with app.extensions["xinshu"].db.sessionmaker() as session:
        before = len(session.get(Case, ids["S2"]).tasks)
    due = f"{dt.date.today() + dt.timedelta(days=due_days)}T09:00"
    response = post(psy2, f"{case_url}task/add", case_url, title=title, owner_role="class_teacher", due_at=due,
                    step="intervening", category="school", every_days=every_days)  # fmt: skip
    assert response.status_code == 302
    assert f"未能保存：{message}" in psy2.get(case_url).get_data(as_text=True)
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert len(session.get(Case, ids["S2"]).tasks) == before
