"""From one set of answers to a warning, a case and queued notifications.

:func:`record_response` is the whole step 1→2 (数据监测 → 发出预警) of the
loop, in the caller's transaction, so that the response, its scores, the
warning, the case with its plan and the outbox rows commit together or not
at all (security.md H1).

De-duplication: a response whose instrument, student and answers are the same
as a stored one is not stored again; a student has at most one open warning
at a time (a higher level raises it, a lower or equal one adds nothing) and at
most one open case; each notification has a stable idempotency key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    CaseEvent,
    Notification,
    OrgUnit,
    PlanTask,
    Response,
    RiskWarning,
    Score,
    Student,
    utcnow,
)
from xinshu.plugin_manager import notify_observers
from xinshu.rules import Decision, evaluate
from xinshu.scoring import ScoreResult, score_response
from xinshu.services import Services


@dataclass
class Outcome:
    """What recording one response did."""

    response: Response | None
    result: ScoreResult | None
    warning: RiskWarning | None = None
    case: Case | None = None
    notifications: int = 0
    duplicate: bool = False
    case_opened: bool = False


def dedupe_key(instrument_id: str, student_id: int, answers: Mapping[str, Any]) -> str:
    """SHA-256 over instrument, student and the canonical answers."""
    canonical = json.dumps({"i": instrument_id, "s": student_id, "a": answers}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_response(
    session: Session,
    services: Services,
    student: Student,
    instrument_id: str,
    answers: Mapping[str, float | None],
    raw_cells: Mapping[str, Any],
    source: str,
    batch_id: int | None = None,
    seconds: float | None = None,
) -> Outcome:
    """Store, score and evaluate one response (no commit).

    :param answers: item id -> value (``None`` missing), already checked.
    :param raw_cells: the cells as they were in the file, kept verbatim.
    :param seconds: completion time in seconds, when known (validity check).
    :raises AnswerError: an answer outside the item's options.
    """
    decls = services.declarations
    instrument = decls.instruments[instrument_id]
    key = dedupe_key(instrument_id, student.id, answers)
    if session.scalar(select(Response.id).where(Response.dedupe_key == key)) is not None:
        return Outcome(None, None, duplicate=True)
    result = score_response(instrument, answers, services.scorers(), seconds)
    norms = {s.id: n for s in instrument.scales if (n := decls.active_norm(instrument.id, s.id)) is not None}
    if norms:
        district = student.school.parent
        result = result.with_norms(norms, student.grade_level, student.gender, district.code if district else None)
    response = Response(
        student=student,
        instrument_id=instrument_id,
        instrument_version=instrument.version,
        answers=dict(answers),
        raw_cells=dict(raw_cells),
        source=source,
        batch_id=batch_id,
        dedupe_key=key,
        status="scored" if result.protocol_valid else "retest",
        duration_seconds=seconds,
    )
    session.add(response)
    for scale in result.scales.values():
        session.add(_score_row(response, scale, result))
    session.flush()
    outcome = Outcome(response, result)
    ruleset = decls.ruleset_for(instrument_id)
    if ruleset is not None:
        decision = evaluate(ruleset, result)
        if decision.level is not None:
            _warn(session, services, student, response, ruleset, decision, outcome)
    return outcome


def _score_row(response: Response, scale, result: ScoreResult) -> Score:
    return Score(
        response=response,
        scale=scale.scale,
        raw_score=scale.raw,
        band=scale.band,
        answered=scale.answered,
        valid=scale.valid,
        flags=list(result.flags),
        t_score=scale.t,
        percentile=scale.percentile,
        norm_set_id=scale.norm_set,
        norm_set_version=scale.norm_version,
        instrument_version=result.instrument_version,
        instrument_digest=result.instrument_digest,
    )


def _warn(session, services, student, response, ruleset, decision: Decision, outcome: Outcome) -> None:
    current = session.scalar(
        select(RiskWarning).where(RiskWarning.student_id == student.id, RiskWarning.status == "open")
    )
    if current is not None and current.level >= decision.level:
        return
    if current is not None:
        current.status = "superseded"
    warning = RiskWarning(
        student_id=student.id,
        response=response,
        level=decision.level,
        rule_id=decision.rule_id,
        ruleset_id=ruleset.id,
        ruleset_version=ruleset.version,
        ruleset_digest=ruleset.digest,
        inputs=[{"rule_id": f.rule_id, "level": f.level, "inputs": f.inputs} for f in decision.fired],
    )
    session.add(warning)
    session.flush()
    outcome.warning = warning
    if decision.level >= services.declarations.levels.case_threshold:
        outcome.case, outcome.case_opened = _open_or_raise_case(session, services, student, warning)
    outcome.notifications = queue_notifications(session, services, student, warning, outcome.case)
    notify_observers(services.pm, "warning_raised", warning=warning, session=session)


def _open_or_raise_case(
    session: Session, services: Services, student: Student, warning: RiskWarning
) -> tuple[Case, bool]:
    """Open a case with its plan, or raise the level of the open one; ``(case, opened)``."""
    case = session.scalar(select(Case).where(Case.student_id == student.id, Case.state.in_(OPEN_CASE_STATES)))
    if case is not None:
        if warning.level > case.level:
            reason = f"level {case.level} → {warning.level} by rule {warning.rule_id}"
            session.add(CaseEvent(case=case, from_state=case.state, to_state=case.state, actor="system", reason=reason))
            case.level = warning.level
            case.warning_id = warning.id
        return case, False
    template = services.declarations.template_for(warning.level)
    now = utcnow()
    case = Case(
        student_id=student.id,
        school_id=student.school_id,
        warning_id=warning.id,
        level=warning.level,
        state="warned",
        template_id=template.id,
        template_version=template.version,
        opened_at=now,
    )
    session.add(case)
    for task in template.tasks:
        session.add(
            PlanTask(
                case=case,
                template_task_id=task.id,
                title=task.title["zh"],
                owner_role=task.owner_role,
                step=task.step,
                category=task.category,
                due_at=now + dt.timedelta(hours=task.due_hours),
            )
        )
    reason = f"warning #{warning.id} level {warning.level} by rule {warning.rule_id}"
    session.add(CaseEvent(case=case, from_state=None, to_state="warned", actor="system", reason=reason))
    session.flush()
    return case, True


def queue_notifications(
    session: Session, services: Services, student: Student, warning: RiskWarning, case: Case | None
) -> int:
    """Write one outbox row per (role, org unit, configured channel) of the level."""
    level = services.declarations.levels.get(warning.level)
    school = session.get(OrgUnit, student.school_id)
    units = {"school": school, "district": school.parent, "city": school.parent.parent if school.parent else None}
    configured = services.configured_channels()
    count = 0
    for target in level.notify:
        unit = units.get(target.at)
        if unit is None:
            continue
        for channel in target.channels:
            if channel not in configured:
                continue
            key = f"warning-{warning.id}:{channel}:{target.role}@{unit.id}"
            session.add(
                Notification(
                    idempotency_key=key,
                    warning_id=warning.id,
                    case_id=case.id if case else None,
                    channel=channel,
                    role=target.role,
                    org_unit_id=unit.id,
                    level=warning.level,
                    payload=notification_payload(services, warning, case, school, level.name["zh"]),
                )
            )
            count += 1
    session.flush()
    return count


def notification_payload(
    services: Services, warning: RiskWarning, case: Case | None, school: OrgUnit, level_name: str
) -> dict:
    """Subject, body and link: no name, ID number or answer (security.md H6)."""
    base = str(services.config.get("PUBLIC_URL", "http://127.0.0.1:5000")).rstrip("/")
    if case is not None:
        link = f"{base}/admin/case/details/?id={case.id}"
        ref = f"个案 #{case.id}"
    else:
        link = f"{base}/admin/warning/details/?id={warning.id}"
        ref = f"预警 #{warning.id}"
    subject = f"[心数] {level_name}预警 {ref}（{school.name}）"
    body = f"{school.name}：{ref}，预警等级 {warning.level}（{level_name}）。请登录系统查看并在时限内处理。"
    return {"subject": subject, "body": body, "link": link}
