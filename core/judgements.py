"""People's input to the warning: teacher and parent reports, and the level a
psychology teacher confirms, adjusts or overrides after the interview.

Each call records who and why, then re-evaluates the student
(:func:`xinshu.episodes.reevaluate`) in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from xinshu.declarations.validate import load_schema
from xinshu.episodes import Change, engine_for, open_episode, open_or_raise_case, queue_notifications, reevaluate
from xinshu.errors import XinshuError
from xinshu.facts_db import gather_facts
from xinshu.models import LevelChange, LevelJudgement, RiskWarning, Student, StudentReport, utcnow
from xinshu.services import Services

REPORT_SOURCES = ("teacher", "parent")
JUDGEMENT_KINDS = ("confirm", "adjust", "override")


def add_report(
    session: Session,
    services: Services,
    student: Student,
    source: str,
    categories: Sequence[str],
    reported_by: str,
    note: str = "",
) -> tuple[StudentReport, Change]:
    """Record a class teacher's quick report or a parent's report, then re-evaluate.

    :raises XinshuError: unknown source or category, or no category.
    """
    known = report_categories()
    if source not in REPORT_SOURCES:
        raise XinshuError(f"unknown report source {source!r}")
    unknown = [c for c in categories if c not in known]
    if not categories or unknown:
        raise XinshuError(f"report categories must be among {', '.join(known)}; got {', '.join(unknown) or 'none'}")
    report = StudentReport(
        student_id=student.id, source=source, categories=list(categories), note=note, reported_by=reported_by
    )
    session.add(report)
    session.flush()
    return report, reevaluate(session, services, student)


def judge(
    session: Session, services: Services, student: Student, level: int, kind: str, reason: str, actor: str
) -> LevelJudgement:
    """A person confirms, adjusts or overrides the student's level, with a reason.

    The open episode takes that level at once (raised, lowered or kept), and
    the judgement is recorded with the level the rules gave at that moment.

    :raises XinshuError: no reason, an unknown kind, or a level outside 1–4.
    """
    if not reason or not reason.strip():
        raise XinshuError("a reason is required to confirm, adjust or override a level")
    if kind not in JUDGEMENT_KINDS or not 1 <= level <= 4:
        raise XinshuError(f"kind must be one of {', '.join(JUDGEMENT_KINDS)} and level 1–4")
    facts = gather_facts(session, services.declarations, [student.id])
    rule_level = int(engine_for(services).evaluate(facts).level[0])
    episode = open_episode(session, student.id)
    if kind == "confirm" and episode is not None and level != episode.level:
        raise XinshuError("confirm keeps the current level; use adjust or override to change it")
    judgement = LevelJudgement(
        student_id=student.id, warning_id=episode.id if episode else None, level=level,
        rule_level=rule_level, kind=kind, reason=reason.strip(), actor=actor,
    )  # fmt: skip
    session.add(judgement)
    opened = episode is None
    if opened:
        episode = RiskWarning(
            student_id=student.id, level=level, rule_id=f"person:{kind}", ruleset_id="person",
            ruleset_version="-", ruleset_digest="-", inputs=[{"rule_id": f"person:{kind}", "level": level,
            "inputs": {"reason": reason.strip(), "actor": actor}, "ruleset": "person"}],
        )  # fmt: skip
        session.add(episode)
        session.flush()
        judgement.warning_id = episode.id
    change = LevelChange(
        warning_id=episode.id, from_level=None if opened else episode.level, to_level=level, source="person",
        rule_id=f"person:{kind}", reason=reason.strip(), actor=actor,
    )  # fmt: skip
    session.add(change)
    raised = opened or level > episode.level
    episode.level = level
    if kind == "confirm" or episode.acknowledged_at is None:
        episode.acknowledged_at, episode.acknowledged_by = utcnow(), actor
    session.flush()
    if raised:
        case = None
        if level >= services.declarations.levels.case_threshold:
            case, _ = open_or_raise_case(session, services, student, episode)
        queue_notifications(session, services, student, episode, case)
    return judgement


def report_categories() -> tuple[str, ...]:
    """The report categories the rules schema allows."""
    return tuple(load_schema("common")["$defs"]["report_category"]["enum"])
