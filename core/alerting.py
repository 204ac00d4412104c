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

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.episodes import reevaluate
from xinshu.models import (
    Case,
    Response,
    RiskWarning,
    Score,
    Student,
)
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


def dedupe_key(instrument_id: str, student_id: int, answers: Mapping[str, Any], campaign_id: int | None = None) -> str:
    """SHA-256 over instrument, student, the canonical answers and (when given) the campaign.

    Without a campaign the key is what it always was; with one, the same answers given in
    two campaigns are two responses.
    """
    data: dict[str, Any] = {"i": instrument_id, "s": student_id, "a": answers}
    if campaign_id is not None:
        data["c"] = campaign_id
    canonical = json.dumps(data, sort_keys=True)
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
    campaign_id: int | None = None,
) -> Outcome:
    """Store, score and evaluate one response (no commit).

    :param answers: item id -> value (``None`` missing), already checked.
    :param raw_cells: the cells as they were in the file, kept verbatim.
    :param seconds: completion time in seconds, when known (validity check).
    :param campaign_id: the campaign the response is filed under (its legal basis and retention);
        the caller has checked :func:`xinshu.answer_gate.answer_allowed`.
    :raises AnswerError: an answer outside the item's options.
    """
    decls = services.declarations
    instrument = decls.instruments[instrument_id]
    key = dedupe_key(instrument_id, student.id, answers, campaign_id)
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
        campaign_id=campaign_id,
    )
    session.add(response)
    for scale in result.scales.values():
        session.add(_score_row(response, scale, result))
    session.flush()
    outcome = Outcome(response, result)
    change = reevaluate(session, services, student, response)
    outcome.warning = change.warning if (change.opened or change.raised) else None
    outcome.case, outcome.case_opened, outcome.notifications = change.case, change.case_opened, change.notifications
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
