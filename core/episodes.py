"""Warning episodes: the dynamic four-level warning of one student.

Every new data point (a response, a teacher or parent report, a judgement)
re-evaluates the student with every alert ruleset over everything known
(:func:`reevaluate`). A student has at most one open episode (a
:class:`~xinshu.models.RiskWarning` with status ``open``):

* no episode and a level → open one, open a case at or above the case
  threshold, notify the level's recipients;
* a higher level → raise it (history row, case raised, recipients of the new
  level notified once; the idempotency key carries the level);
* a lower level → lower it, but never below the level a person confirmed;
* no rule matches → nothing changes (a person closes an episode).

Everything happens in the caller's transaction, so the response, the episode,
its history and the outbox rows commit together (security.md H1).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.facts_db import gather_facts
from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    CaseEvent,
    LevelChange,
    LevelJudgement,
    Notification,
    OrgUnit,
    Response,
    RiskWarning,
    Student,
    utcnow,
)
from xinshu.plugin_manager import notify_observers
from xinshu.rules import Decision, Engine
from xinshu.services import Services
from xinshu.workflow import advance, build_plan


@dataclass
class Change:
    """What a re-evaluation did to a student's episode."""

    warning: RiskWarning | None = None
    opened: bool = False
    raised: bool = False
    lowered: bool = False
    case: Case | None = None
    case_opened: bool = False
    notifications: int = 0


def engine_for(services: Services) -> Engine:
    """The compiled active alert rules (cached per declaration set)."""
    decls = services.declarations
    cached = getattr(services, "_engine", None)
    if cached is None or cached[0] is not decls:
        cached = (decls, Engine(list(decls.rulesets.values())))
        services._engine = cached
    return cached[1]


def reevaluate(session: Session, services: Services, student: Student, response: Response | None = None) -> Change:
    """Evaluate every rule on everything known about ``student`` and update the episode."""
    session.flush()
    facts = gather_facts(session, services.declarations, [student.id])
    decision = engine_for(services).evaluate(facts).decision(0)
    return apply_decision(session, services, student, decision, response)


def latest_judgement(session: Session, student_id: int) -> LevelJudgement | None:
    """The latest person's judgement on the student's open episode, if any
    (a judgement ends with its episode)."""
    episode = open_episode(session, student_id)
    if episode is None:
        return None
    stmt = (
        select(LevelJudgement)
        .where(LevelJudgement.warning_id == episode.id)
        .order_by(LevelJudgement.at.desc(), LevelJudgement.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def target_level(rule_level: int, judgement: LevelJudgement | None) -> int:
    """The level an episode should have: the rules' level, except that after a
    person's judgement it stays at the judged level unless the rules now say
    more than they did when the person judged (and never goes below it)."""
    if judgement is None:
        return rule_level
    if rule_level > judgement.rule_level:
        return max(rule_level, judgement.level)
    return judgement.level


def open_episode(session: Session, student_id: int) -> RiskWarning | None:
    return session.scalar(select(RiskWarning).where(RiskWarning.student_id == student_id, RiskWarning.status == "open"))


def apply_decision(
    session: Session, services: Services, student: Student, decision: Decision, response: Response | None = None
) -> Change:
    """Open, raise or lower the student's episode according to ``decision``."""
    change = Change()
    if decision.level is None:
        return change
    target = target_level(decision.level, latest_judgement(session, student.id))
    episode = open_episode(session, student.id)
    inputs = [
        {"rule_id": f.rule_id, "level": f.level, "inputs": f.inputs, "ruleset": f.ruleset} for f in decision.fired
    ]
    ruleset = _ruleset_of(services, decision)
    if episode is None:
        episode = RiskWarning(
            student_id=student.id, response=response, level=target, rule_id=decision.rule_id,
            ruleset_id=ruleset.id, ruleset_version=ruleset.version, ruleset_digest=ruleset.digest, inputs=inputs,
        )  # fmt: skip
        session.add(episode)
        session.flush()
        change.opened = True
    elif target == episode.level:
        return change
    else:
        change.raised, change.lowered = target > episode.level, target < episode.level
        if change.raised:
            episode.response, episode.inputs, episode.rule_id = response or episode.response, inputs, decision.rule_id
            episode.ruleset_id, episode.ruleset_version, episode.ruleset_digest = (
                ruleset.id, ruleset.version, ruleset.digest,
            )  # fmt: skip
            episode.acknowledged_at = None
    history = LevelChange(
        warning_id=episode.id, from_level=None if change.opened else episode.level, to_level=target,
        source="rules", rule_id=decision.rule_id, ruleset_version=ruleset.version, inputs=inputs,
    )  # fmt: skip
    session.add(history)
    episode.level = target
    change.warning = episode
    if change.lowered:
        return change
    if target >= services.declarations.levels.case_threshold:
        change.case, change.case_opened = open_or_raise_case(session, services, student, episode)
    change.notifications = queue_notifications(session, services, student, episode, change.case)
    notify_observers(services.pm, "warning_raised", warning=episode, session=session)
    return change


def _ruleset_of(services: Services, decision: Decision):
    top = next(f for f in decision.fired if f.rule_id == decision.rule_id)
    return services.declarations.rulesets[top.ruleset]


def open_or_raise_case(
    session: Session, services: Services, student: Student, warning: RiskWarning
) -> tuple[Case, bool]:
    """Open a case with its plan, or raise the level of the open one; ``(case, opened)``.

    The plan is made from the level's general template with working-day
    deadlines (:func:`xinshu.workflow.build_plan`). A case waiting in
    ``monitoring`` whose level rises goes back to ``warned``.
    """
    case = session.scalar(select(Case).where(Case.student_id == student.id, Case.state.in_(OPEN_CASE_STATES)))
    if case is not None:
        if warning.level > case.level:
            reason = f"等级 {case.level} → {warning.level}（规则 {warning.rule_id}）"
            session.add(CaseEvent(case=case, from_state=case.state, to_state=case.state, actor="system", reason=reason))
            case.level = warning.level
            case.warning_id = warning.id
            if case.state == "monitoring":
                advance(session, services, case, "warn", "system", reason)
        return case, False
    template = services.declarations.template_for(warning.level)
    now = utcnow()
    case = Case(
        student_id=student.id, school_id=student.school_id, warning_id=warning.id, level=warning.level,
        state="warned", template_id=template.id, template_version=template.version, opened_at=now,
    )  # fmt: skip
    session.add(case)
    case.tasks.extend(build_plan(template, now))
    reason = f"预警 #{warning.id}，等级 {warning.level}（规则 {warning.rule_id}）"
    session.add(CaseEvent(case=case, from_state=None, to_state="warned", actor="system", reason=reason))
    session.flush()
    return case, True


def queue_notifications(
    session: Session, services: Services, student: Student, warning: RiskWarning, case: Case | None
) -> int:
    """One outbox row per (role, org unit, configured channel) of the warning's level.

    The idempotency key names the warning and its level, so each level of an
    episode is announced once, however often the student is re-evaluated.
    """
    level = services.declarations.levels.get(warning.level)
    school = session.get(OrgUnit, student.school_id)
    units = {"school": school, "district": school.parent, "city": school.parent.parent if school.parent else None}
    configured = services.configured_channels()
    count = 0
    for target in level.notify:
        unit = units.get(target.at)
        for channel in target.channels if unit is not None else ():
            if channel not in configured:
                continue
            key = f"warning-{warning.id}-L{warning.level}:{channel}:{target.role}@{unit.id}"
            if session.scalar(select(Notification.id).where(Notification.idempotency_key == key)) is not None:
                continue
            notification = Notification(
                idempotency_key=key, warning_id=warning.id, case_id=case.id if case else None, channel=channel,
                role=target.role, org_unit_id=unit.id, level=warning.level,
                payload=notification_payload(services, warning, case, school, level.name["zh"]),
            )  # fmt: skip
            session.add(notification)
            count += 1
    session.flush()
    return count


def notification_payload(
    services: Services, warning: RiskWarning, case: Case | None, school: OrgUnit, name: str
) -> dict:
    """Subject, body and link: no name, ID number or answer (security.md H6)."""
    base = str(services.config.get("PUBLIC_URL", "http://127.0.0.1:5000")).rstrip("/")
    if case is not None:
        link, ref = f"{base}/admin/case/details/?id={case.id}", f"个案 #{case.id}"
    else:
        link, ref = f"{base}/admin/warning/details/?id={warning.id}", f"预警 #{warning.id}"
    subject = f"[心数] {name}预警 {ref}（{school.name}）"
    body = f"{school.name}：{ref}，预警等级 {warning.level}（{name}）。请登录系统查看并在时限内处理。"
    return {"subject": subject, "body": body, "link": link}
