"""Gather :class:`xinshu.facts.Facts` for students from the database.

For each student and instrument: the latest response (its stored scores,
answers and flags) and the previous scored one (for change since the last
wave); open teacher and parent reports from the last
:data:`REPORT_WINDOW_DAYS` days; the latest level judgement.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.declarations.registry import Declarations
from xinshu.facts import Facts, facts_from_rows
from xinshu.models import LevelJudgement, Response, RiskWarning, Score, Student, StudentReport, utcnow

REPORT_WINDOW_DAYS = 30


def gather_facts(
    session: Session, decls: Declarations, student_ids: Sequence[int] | None = None, now: dt.datetime | None = None
) -> Facts:
    """Facts for ``student_ids`` (every active student when None), in that order."""
    if student_ids is None:
        student_ids = list(session.scalars(select(Student.id).where(Student.active.is_(True)).order_by(Student.id)))
    ids = list(student_ids)
    rows: dict[int, dict[str, object]] = {sid: {} for sid in ids}
    for chunk in _chunks(ids):
        _responses(session, decls, chunk, rows)
        _reports(session, chunk, rows, (now or utcnow()) - dt.timedelta(days=REPORT_WINDOW_DAYS))
        _judgements(session, chunk, rows)
    facts = facts_from_rows([rows[sid] for sid in ids], ids)
    return facts if facts.n else Facts(0, {}, np.array([], dtype=np.int64))


def _chunks(ids: list[int], size: int = 900):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _responses(session: Session, decls: Declarations, ids: list[int], rows: dict[int, dict]) -> None:
    stmt = (
        select(Response.id, Response.student_id, Response.instrument_id, Response.status, Response.answers)
        .where(Response.student_id.in_(ids))
        .order_by(Response.submitted_at, Response.id)
    )
    latest: dict[tuple[int, str], tuple] = {}
    previous: dict[tuple[int, str], int] = {}
    for response_id, student_id, instrument_id, status, answers in session.execute(stmt):
        key = (student_id, instrument_id)
        if key in latest and latest[key][1] == "scored":
            previous[key] = latest[key][0]
        latest[key] = (response_id, status, answers)
    wanted = [r[0] for r in latest.values()] + list(previous.values())
    scores: dict[int, list[Score]] = {}
    for start in range(0, len(wanted), 900):
        for score in session.scalars(select(Score).where(Score.response_id.in_(wanted[start : start + 900]))):
            scores.setdefault(score.response_id, []).append(score)
    for (student_id, instrument_id), (response_id, status, answers) in latest.items():
        cells = rows[student_id]
        bands = _band_orders(decls, instrument_id)
        cells[f"{instrument_id}:taken"] = True
        cells[f"{instrument_id}:valid"] = status == "scored"
        for item_id, value in (answers or {}).items():
            cells[f"{instrument_id}:item:{item_id}"] = np.nan if value is None else float(value)
        for score in scores.get(response_id, []):
            _score_cells(cells, f"{instrument_id}:", score, bands)
            for flag in score.flags or []:
                cells[f"{instrument_id}:flag:{flag}"] = True
        before = previous.get((student_id, instrument_id))
        for score in scores.get(before, []) if before else []:
            _score_cells(cells, f"{instrument_id}:prev:", score, bands, brief=True)


def _score_cells(cells: dict, prefix: str, score: Score, bands: dict[str, list[str]], brief: bool = False) -> None:
    raw = np.nan if score.raw_score is None or not score.valid else score.raw_score
    order = bands.get(score.scale, [])
    cells[f"{prefix}scale:{score.scale}"] = raw
    cells[f"{prefix}bandindex:{score.scale}"] = order.index(score.band) if score.band in order else np.nan
    if brief:
        return
    cells[f"{prefix}band:{score.scale}"] = score.band
    cells[f"{prefix}t:{score.scale}"] = np.nan if score.t_score is None else score.t_score
    cells[f"{prefix}pr:{score.scale}"] = np.nan if score.percentile is None else score.percentile


def _band_orders(decls: Declarations, instrument_id: str) -> dict[str, list[str]]:
    instrument = decls.instruments.get(instrument_id)
    if instrument is None:
        return {}
    return {scale.id: [band.id for band in scale.bands] for scale in instrument.scales}


def _reports(session: Session, ids: list[int], rows: dict[int, dict], since: dt.datetime) -> None:
    stmt = select(StudentReport.student_id, StudentReport.source, StudentReport.categories).where(
        StudentReport.student_id.in_(ids), StudentReport.status == "open", StudentReport.created_at >= since
    )
    for student_id, source, categories in session.execute(stmt):
        for category in categories or []:
            rows[student_id][f"{source}:{category}"] = True


def _judgements(session: Session, ids: list[int], rows: dict[int, dict]) -> None:
    stmt = (
        select(LevelJudgement.student_id, LevelJudgement.level)
        .join(RiskWarning, RiskWarning.id == LevelJudgement.warning_id)
        .where(LevelJudgement.student_id.in_(ids), RiskWarning.status == "open")
        .order_by(LevelJudgement.at, LevelJudgement.id)
    )
    for student_id, level in session.execute(stmt):
        rows[student_id]["judgement:level"] = float(level)
