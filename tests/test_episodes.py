"""The dynamic warning episode of one student, on a real SQLite file.

Answers are PHQ-9 item values 1–9 (0–3 each); every total, band and level
below is added up by hand from rules/alerts/phq9.yaml and reports.yaml:

* bands 0–4 minimal, 5–9 mild, 10–14 moderate, 15–19 moderately severe (2),
  20–27 severe (3); total ≥ 11 → 1; item 9 ≥ 1 → 3; item 9 ≥ 2 with a severe
  total → 4; total up by ≥ 5 (or two bands) since the previous response → 2;
* a teacher's or parent's ``self_harm_talk`` report → 3.

Only the inbox channel is configured here (no MAIL_SERVER), so a level's
notifications are its inbox recipients in rules/levels.yaml:
level 2: psychology_teacher, moral_education_director, class_teacher at school;
level 3: psychology_teacher, principal at school, district_admin at district;
level 4: the level-3 three plus bureau_admin at city.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from independent import phq9_level, phq9_rows
from sqlalchemy import func, select

from xinshu.alerting import record_response
from xinshu.answers import import_answers
from xinshu.episodes import reevaluate
from xinshu.errors import XinshuError
from xinshu.judgements import add_report, judge
from xinshu.models import (
    Case,
    LevelChange,
    LevelJudgement,
    Notification,
    OrgUnit,
    RiskWarning,
    Student,
    StudentReport,
)
from xinshu.orgs import add_org_unit

L2_ROLES = [("psychology_teacher", "S1"), ("moral_education_director", "S1"), ("class_teacher", "S1")]
L3_ROLES = [("psychology_teacher", "S1"), ("principal", "S1"), ("district_admin", "D01")]
L4_ROLES = [*L3_ROLES, ("bureau_admin", "C01")]


@pytest.fixture
def klass(services, org) -> dict[str, int]:
    """A class in school S1; the ids of the org units by code."""
    assert services.configured_channels() == {"inbox"}
    with services.db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "S1"))
        grade = add_org_unit(session, "S1-G07", "七年级", "grade", school)
        add_org_unit(session, "S1-G07-C01", "七年级1班", "class", grade)
        return dict(session.execute(select(OrgUnit.code, OrgUnit.id)).all())


def _student(services, units: dict[str, int], name: str) -> int:
    with services.db.transaction() as session:
        student = Student(
            school_id=units["S1"], class_id=units["S1-G07-C01"], name=name, gender="F", grade_level=7
        )  # fmt: skip
        session.add(student)
        session.flush()
        return student.id


def _answers(*values: int) -> dict[str, float]:
    assert len(values) == 9
    return {f"phq9_{i}": v for i, v in enumerate(values, start=1)}


def _respond(services, student_id: int, *values: int) -> dict:
    with services.db.transaction() as session:
        outcome = record_response(
            session, services, session.get(Student, student_id), "phq9", _answers(*values), {}, "test"
        )  # fmt: skip
        assert not outcome.duplicate
        return {
            "warning": outcome.warning.id if outcome.warning else None,
            "notifications": outcome.notifications,
        }


def _state(services, student_id: int) -> dict:
    """The student's warnings, level history and notification keys."""
    with services.db.sessionmaker() as session:
        warnings = session.scalars(select(RiskWarning).where(RiskWarning.student_id == student_id)).all()
        ids = [w.id for w in warnings]
        changes = session.scalars(
            select(LevelChange).where(LevelChange.warning_id.in_(ids)).order_by(LevelChange.id)
        ).all()
        keys = session.scalars(
            select(Notification.idempotency_key).where(Notification.warning_id.in_(ids)).order_by(Notification.id)
        ).all()
        return {
            "warnings": [(w.id, w.level, w.status, w.rule_id) for w in warnings],
            "changes": [(c.from_level, c.to_level, c.source, c.rule_id, c.reason, c.actor) for c in changes],
            "keys": list(keys),
        }


def _keys(warning_id: int, level: int, roles, units) -> list[str]:
    return [f"warning-{warning_id}-L{level}:inbox:{role}@{units[at]}" for role, at in roles]


def test_one_open_episode_raised_and_lowered(services, klass):
    sid = _student(services, klass, "甲")
    # 2+2+2+2+2+2+2+1+0 = 15: moderately severe → level 2 (and ≥ 11 → 1)
    first = _respond(services, sid, 2, 2, 2, 2, 2, 2, 2, 1, 0)
    wid = first["warning"]
    assert wid is not None and first["notifications"] == 3
    state = _state(services, sid)
    assert state["warnings"] == [(wid, 2, "open", "phq9.moderately_severe")]
    assert state["changes"] == [(None, 2, "rules", "phq9.moderately_severe", "", "system")]
    assert state["keys"] == _keys(wid, 2, L2_ROLES, klass)

    # 16, still moderately severe (+1 since last time): same level → nothing new
    second = _respond(services, sid, 2, 2, 2, 2, 2, 2, 2, 2, 0)
    assert second == {"warning": None, "notifications": 0}
    assert _state(services, sid) == state

    # 16 with item 9 = 1 → level 3 (phq9.item9 is the first level-3 rule): the same episode is raised
    third = _respond(services, sid, 2, 2, 2, 2, 2, 2, 2, 1, 1)
    assert third == {"warning": wid, "notifications": 3}
    raised = _state(services, sid)
    assert raised["warnings"] == [(wid, 3, "open", "phq9.item9")]
    assert raised["changes"][1:] == [(2, 3, "rules", "phq9.item9", "", "system")]
    assert raised["keys"] == state["keys"] + _keys(wid, 3, L3_ROLES, klass)
    assert all("-L3:" in key for key in raised["keys"][3:])

    # 2+2+2+1+1+1+1+2+0 = 12, item 9 = 0: moderate, ≥ 11 → level 1: lowered, nobody notified
    fourth = _respond(services, sid, 2, 2, 2, 1, 1, 1, 1, 2, 0)
    assert fourth == {"warning": None, "notifications": 0}
    lowered = _state(services, sid)
    assert [(w[0], w[1], w[2]) for w in lowered["warnings"]] == [(wid, 1, "open")]
    assert lowered["changes"][2:] == [(3, 1, "rules", "phq9.adolescent_cutoff", "", "system")]
    assert lowered["keys"] == raised["keys"]

    # 16 (+4 since last time: no worsening) with item 9 = 1 → 3 again: raised, but level 3 was announced already
    _respond(services, sid, 2, 2, 2, 2, 2, 2, 1, 2, 1)
    again = _state(services, sid)
    assert again["changes"][3:] == [(1, 3, "rules", "phq9.item9", "", "system")]
    assert again["keys"] == raised["keys"]
    with services.db.sessionmaker() as session:
        cases = session.scalars(select(Case).where(Case.student_id == sid)).all()
        assert [(c.level, c.warning_id) for c in cases] == [(3, wid)]


def test_a_judgement_holds_until_the_rules_say_more(services, klass):
    sid = _student(services, klass, "乙")
    # 1+1+1+1+0+0+0+0+1 = 5 (mild) with item 9 = 1 → level 3
    wid = _respond(services, sid, 1, 1, 1, 1, 0, 0, 0, 0, 1)["warning"]
    before = _state(services, sid)
    assert before["warnings"] == [(wid, 3, "open", "phq9.item9")]

    with services.db.transaction() as session:
        student = session.get(Student, sid)
        for reason in ("", "   "):
            with pytest.raises(XinshuError, match="reason"):
                judge(session, services, student, 2, "override", reason, "psy")
        assert session.scalar(select(func.count()).select_from(LevelJudgement)) == 0
        judgement = judge(session, services, student, 2, "override", " 面谈后评估为较重 ", "psy")
        assert (judgement.level, judgement.rule_level, judgement.warning_id) == (2, 3, wid)
    judged = _state(services, sid)
    assert judged["warnings"] == [(wid, 2, "open", "phq9.item9")]
    assert judged["changes"][-1] == (3, 2, "person", "person:override", "面谈后评估为较重", "psy")
    assert judged["keys"] == before["keys"]  # lowering by a person notifies nobody

    # 1+1+1+1+1+0+0+0+1 = 6 with item 9 = 1: the rules say 3, as when judged → stays 2
    assert _respond(services, sid, 1, 1, 1, 1, 1, 0, 0, 0, 1) == {"warning": None, "notifications": 0}
    assert _state(services, sid) == judged

    # 3+3+3+3+3+3+2+0+2 = 22 (severe) with item 9 = 2 → level 4, more than when judged → raised
    assert _respond(services, sid, 3, 3, 3, 3, 3, 3, 2, 0, 2) == {"warning": wid, "notifications": 4}
    raised = _state(services, sid)
    assert raised["warnings"] == [(wid, 4, "open", "phq9.item9_frequent_and_severe")]
    assert raised["changes"][-1] == (2, 4, "rules", "phq9.item9_frequent_and_severe", "", "system")
    assert raised["keys"] == judged["keys"] + _keys(wid, 4, L4_ROLES, klass)


def test_a_judgement_below_the_rules_is_never_undercut(services, klass):
    sid = _student(services, klass, "丙")
    # 2+2+2+1+1+1+1+0+1 = 11 with item 9 = 1 → 3
    wid = _respond(services, sid, 2, 2, 2, 1, 1, 1, 1, 0, 1)["warning"]
    with services.db.transaction() as session:
        judge(session, services, session.get(Student, sid), 2, "adjust", "家校沟通后降为较重", "psy")
    # 2+2+2+1+1+1+1+1+0 = 11 (no change since last time), item 9 = 0: only the cut-off, level 1
    # → the judged 2 holds (never below a judgement)
    assert _respond(services, sid, 2, 2, 2, 1, 1, 1, 1, 1, 0) == {"warning": None, "notifications": 0}
    assert _state(services, sid)["warnings"] == [(wid, 2, "open", "phq9.item9")]


def test_a_judgement_on_a_closed_episode_does_not_carry_over(services, klass):
    sid = _student(services, klass, "丁")
    wid = _respond(services, sid, 2, 2, 2, 1, 1, 1, 1, 0, 1)["warning"]  # 11, item 9 = 1 → 3
    with services.db.transaction() as session:
        judge(session, services, session.get(Student, sid), 4, "adjust", "面谈发现具体计划", "psy")
        session.get(RiskWarning, wid).status = "closed"
    # 11 again, item 9 = 0 → level 1 (cut-off only): a new episode at the rules' level
    new = _respond(services, sid, 2, 2, 2, 1, 1, 1, 1, 1, 0)["warning"]
    assert new != wid
    with services.db.sessionmaker() as session:
        assert session.get(RiskWarning, new).level == 1


def test_a_judgement_that_opens_an_episode_opens_a_case_and_notifies(services, klass):
    sid = _student(services, klass, "壬")
    with services.db.transaction() as session:
        judgement = judge(session, services, session.get(Student, sid), 4, "adjust", "面谈发现具体计划", "psy")
        assert judgement.rule_level == 0
        wid = judgement.warning_id
    state = _state(services, sid)
    assert state["warnings"] == [(wid, 4, "open", "person:adjust")]
    assert state["changes"] == [(None, 4, "person", "person:adjust", "面谈发现具体计划", "psy")]
    assert state["keys"] == _keys(wid, 4, L4_ROLES, klass)
    with services.db.sessionmaker() as session:
        assert [c.level for c in session.scalars(select(Case).where(Case.student_id == sid))] == [4]


def test_a_teacher_report_of_self_harm_talk_opens_a_level_3_episode(services, klass):
    sid = _student(services, klass, "戊")
    with services.db.transaction() as session:
        student = session.get(Student, sid)
        with pytest.raises(XinshuError):
            add_report(session, services, student, "teacher", ["gossip"], "班主任王老师")
        with pytest.raises(XinshuError):
            add_report(session, services, student, "neighbour", ["self_harm_talk"], "邻居")
        report, change = add_report(session, services, student, "teacher", ["self_harm_talk"], "班主任王老师", "课间")
        assert change.opened and change.case_opened and change.notifications == 3
        wid = change.warning.id
        assert change.warning.inputs == [
            {
                "rule_id": "reports.self_harm_talk",
                "level": 3,
                "inputs": {"teacher:self_harm_talk": True, "parent:self_harm_talk": None},
                "ruleset": "reports",
            }
        ]
        assert (change.warning.ruleset_id, change.warning.response_id) == ("reports", None)
        assert (report.source, report.categories, report.status) == ("teacher", ["self_harm_talk"], "open")
    state = _state(services, sid)
    assert state["warnings"] == [(wid, 3, "open", "reports.self_harm_talk")]
    assert state["changes"] == [(None, 3, "rules", "reports.self_harm_talk", "", "system")]
    assert state["keys"] == _keys(wid, 3, L3_ROLES, klass)
    with services.db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(StudentReport)) == 1


def test_two_teacher_concerns_and_a_parent_report(services, klass):
    sid = _student(services, klass, "己")
    with services.db.transaction() as session:
        student = session.get(Student, sid)
        # withdrawal alone: reports.any_concern → 1
        _r, change = add_report(session, services, student, "teacher", ["withdrawal"], "班主任")
        assert change.opened and change.warning.level == 1 and change.warning.rule_id == "reports.any_concern"
        # + bullying (another group of reports.two_concerns) → 2
        _r, change = add_report(session, services, student, "teacher", ["bullying"], "班主任")
        assert change.raised and change.warning.level == 2 and change.warning.rule_id == "reports.two_concerns"
        # + a parent's self-harm talk → 3
        _r, change = add_report(session, services, student, "parent", ["self_harm_talk"], "家长（班主任代录）")
        assert change.raised and change.warning.level == 3 and change.warning.rule_id == "reports.self_harm_talk"
    assert [c[:2] for c in _state(services, sid)["changes"]] == [(None, 1), (1, 2), (2, 3)]


def test_worsened_by_five_points_warns_and_by_four_does_not(services, klass):
    five, four = _student(services, klass, "庚"), _student(services, klass, "辛")
    # 1+1+1+1+1+0+0+0+0 = 5 (mild, band index 1): no rule
    assert _respond(services, five, 1, 1, 1, 1, 1, 0, 0, 0, 0) == {"warning": None, "notifications": 0}
    assert _respond(services, four, 1, 1, 1, 1, 1, 0, 0, 0, 0) == {"warning": None, "notifications": 0}
    # 2+2+2+1+1+1+1+0+0 = 10 (moderate, index 2): +5 → phq9.worsened (2); below the cut-off of 11
    wid = _respond(services, five, 2, 2, 2, 1, 1, 1, 1, 0, 0)["warning"]
    assert wid is not None
    with services.db.sessionmaker() as session:
        warning = session.get(RiskWarning, wid)
        assert (warning.level, warning.rule_id) == (2, "phq9.worsened")
        assert warning.inputs == [
            {
                "rule_id": "phq9.worsened",
                "level": 2,
                "inputs": {
                    "phq9:scale:total": 10.0,
                    "phq9:prev:scale:total": 5.0,
                    "phq9:bandindex:total": 2.0,
                    "phq9:prev:bandindex:total": 1.0,
                },
                "ruleset": "phq9",
            }
        ]
    # 2+2+1+1+1+1+1+0+0 = 9 (still mild): +4 → nothing
    assert _respond(services, four, 2, 2, 1, 1, 1, 1, 1, 0, 0) == {"warning": None, "notifications": 0}
    assert _state(services, four)["warnings"] == []


# --- the real NHANES answers, imported twice -------------------------------------------------------------------------

SUBSET_ROWS = 1000  # the first 1000 rows of DPQ_J.csv (918 answered): every level occurs, and it takes a few seconds


def _subset(shared_data: Path, tmp_path: Path) -> Path:
    source = shared_data / "nhanes_phq9" / "DPQ_J.csv"
    lines = source.read_text("utf-8").splitlines(keepends=True)
    path = tmp_path / "DPQ_J_first1000.csv"
    path.write_text("".join(lines[: SUBSET_ROWS + 1]), "utf-8")
    return path


def _counts(services) -> dict[str, int]:
    with services.db.sessionmaker() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (RiskWarning, LevelChange, Notification, Case)
        }


def test_importing_the_same_nhanes_file_twice_adds_nothing(shared_data, services, klass, tmp_path):
    path = _subset(shared_data, tmp_path)
    with path.open(newline="") as handle:
        seqns = [str(int(float(r["SEQN"]))) for r in csv.DictReader(handle)]
    answered = phq9_rows(path)
    expected = {lv: sum(phq9_level(r) == lv for r in answered) for lv in (1, 2, 3, 4)}
    assert len(seqns) == SUBSET_ROWS and len(answered) == 918
    with services.db.transaction() as session:
        session.add_all(
            Student(school_id=klass["S1"], class_id=klass["S1-G07-C01"], name=f"学生{i}", gender="F",
                    grade_level=7, school_student_no=seqn)
            for i, seqn in enumerate(seqns)
        )  # fmt: skip
        first = import_answers(session, services, path, "phq9", "nhanes_dpq")
    assert (first.recorded, first.warnings) == (918, sum(expected.values()))
    assert first.levels == {lv: n for lv, n in expected.items() if n}
    before = _counts(services)
    assert before["RiskWarning"] == before["LevelChange"] == sum(expected.values())
    assert before["Notification"] == first.notifications > 0

    with services.db.transaction() as session:
        second = import_answers(session, services, path, "phq9", "nhanes_dpq")
    assert (second.recorded, second.duplicates, second.warnings, second.notifications) == (0, 918, 0, 0)
    assert second.already_imported
    assert _counts(services) == before

    # re-evaluating every warned student again changes nothing either
    with services.db.transaction() as session:
        warned = session.scalars(select(Student).join(RiskWarning, RiskWarning.student_id == Student.id)).all()
        changes = [reevaluate(session, services, student) for student in warned]
    assert len(warned) == sum(expected.values())
    assert not any(c.opened or c.raised or c.lowered or c.notifications for c in changes)
    assert _counts(services) == before
