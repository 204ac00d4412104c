"""Where norms come from: the stored, valid scores of a cohort."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.declarations.registry import Declarations
from xinshu.errors import XinshuError
from xinshu.models import Response, Score, Student


def stored_scores(
    session: Session,
    decls: Declarations,
    instrument_id: str,
    scale_id: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[tuple[float, int, str]]:
    """``(raw score, grade, gender)`` of every valid stored score of one scale.

    Responses routed to re-test (invalid protocol) and invalid scales are left
    out; each student counts once, with their latest response in the window.

    :raises XinshuError: unknown instrument or scale, or no scores.
    """
    instrument = decls.instruments.get(instrument_id)
    if instrument is None or scale_id not in {s.id for s in instrument.scales}:
        raise XinshuError(f"no scale {scale_id!r} in instrument {instrument_id!r}")
    stmt = (
        select(Response.student_id, Score.raw_score, Student.grade_level, Student.gender)
        .join(Score, Score.response_id == Response.id)
        .join(Student, Student.id == Response.student_id)
        .where(
            Response.instrument_id == instrument_id,
            Response.status == "scored",
            Score.scale == scale_id,
            Score.valid.is_(True),
        )
        .order_by(Response.submitted_at, Response.id)
    )
    if since is not None:
        stmt = stmt.where(Response.submitted_at >= since)
    if until is not None:
        stmt = stmt.where(Response.submitted_at < until)
    latest = {student: (raw, grade, gender) for student, raw, grade, gender in session.execute(stmt)}
    if not latest:
        raise XinshuError(f"no valid stored {instrument_id}.{scale_id} scores in that window")
    return list(latest.values())
