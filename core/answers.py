"""Answer files (``.xlsx`` / ``.csv``) read through an import profile.

:func:`read_answers` turns a file into checked rows without touching the
database (``xinshu score`` uses it as is). :func:`import_answers` also matches
each respondent to a student and records every response through
:func:`xinshu.alerting.record_response`, all-or-nothing. Given a campaign,
every row must also pass the campaign's gate (window, enrolment, org unit,
guardian consent; :mod:`xinshu.answer_gate`): one refused row rejects the file,
with a row error per refused row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.alerting import record_response
from xinshu.answer_gate import gate_rows
from xinshu.campaigns import instrument_problem
from xinshu.errors import ImportRejected, RowError, XinshuError
from xinshu.instruments import Instrument
from xinshu.models import Campaign, ImportBatch, Student, utcnow
from xinshu.profiles import CellError, ImportProfile
from xinshu.scoring import AnswerError, check_answers
from xinshu.services import Services
from xinshu.tabular import read_table

MATCH_LABELS = {"school_student_no": "校内学号", "student_number": "学籍号", "id_number": "身份证号"}


@dataclass
class AnswerRow:
    """One respondent's row: checked answers and the original cells."""

    row: int
    respondent: str
    answers: dict[str, float | None]
    raw_cells: dict[str, Any]


@dataclass
class AnswerFile:
    """Rows read from a file, how many all-blank rows were skipped, and the
    errors found (rows with errors are still listed, for respondent checks)."""

    sheet: str
    rows: list[AnswerRow]
    blank_rows: int
    digest: str
    errors: list[RowError] = field(default_factory=list)


def resolve_profile(services: Services, instrument_id: str, profile_id: str) -> tuple[Instrument, ImportProfile]:
    """Look up an instrument and a profile made for it."""
    decls = services.declarations
    if instrument_id not in decls.instruments:
        raise XinshuError(f"no instrument {instrument_id!r} (known: {', '.join(sorted(decls.instruments))})")
    if profile_id not in decls.profiles:
        raise XinshuError(f"no import profile {profile_id!r} (known: {', '.join(sorted(decls.profiles))})")
    profile = decls.profiles[profile_id]
    if profile.instrument != instrument_id:
        raise XinshuError(f"profile {profile_id!r} is for instrument {profile.instrument!r}, not {instrument_id!r}")
    return decls.instruments[instrument_id], profile


def read_answers(path: Path | str, instrument: Instrument, profile: ImportProfile, collect: bool = False) -> AnswerFile:
    """Read and check every row.

    :param collect: return the errors in :attr:`AnswerFile.errors` instead of
        raising, so that a caller can add its own checks before rejecting.
    :raises ImportRejected: listing all errors (unless ``collect``), or a
        missing column (always).
    """
    path = Path(path)
    data = path.read_bytes()
    table = read_table(path, data)
    columns = {name: index for index, name in enumerate(table.header)}
    missing = [c for c in (profile.respondent_column, *profile.items) if c not in columns]
    if missing:
        raise ImportRejected([RowError(1, c, "缺少此列", table.sheet) for c in missing])
    rows, errors, blanks, seen = [], [], 0, {}
    for number, cells in table.rows:
        parsed = _parse_row(number, cells, columns, instrument, profile, table.sheet, errors)
        if parsed is None:
            blanks += 1
            continue
        if parsed.respondent in seen:
            message = f"答题人 {parsed.respondent} 与第{seen[parsed.respondent]}行重复"
            errors.append(RowError(number, profile.respondent_column, message, table.sheet))
        seen.setdefault(parsed.respondent, number)
        rows.append(parsed)
    if errors and not collect:
        raise ImportRejected(errors)
    return AnswerFile(table.sheet, rows, blanks, hashlib.sha256(data).hexdigest(), errors)


def _parse_row(number, cells, columns, instrument, profile, sheet, errors) -> AnswerRow | None:
    def cell(column: str) -> Any:
        index = columns[column]
        return cells[index] if index < len(cells) else None

    raw = {column: cell(column) for column in (profile.respondent_column, *profile.items)}
    if all(_blank(raw[c]) for c in profile.items):
        if all(_blank(v) for v in cells) or profile.blank_rows == "skip":
            return None
        errors.append(RowError(number, "", "该行没有任何作答", sheet))
        return None
    respondent = profile.parse_respondent(raw[profile.respondent_column])
    if not respondent:
        errors.append(RowError(number, profile.respondent_column, "答题人编号为空", sheet))
    answers: dict[str, float | None] = {}
    for column, item in profile.items.items():
        try:
            answers[item] = profile.parse_value(raw[column])
        except CellError as exc:
            errors.append(RowError(number, column, str(exc), sheet))
    try:
        answers = check_answers(instrument, answers)
    except AnswerError as exc:
        errors.append(RowError(number, "", str(exc), sheet))
    return AnswerRow(number, respondent, answers, {k: _jsonable(v) for k, v in raw.items()})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


@dataclass
class AnswersResult:
    """What an accepted answers import did."""

    rows: int
    blank_rows: int
    recorded: int = 0
    duplicates: int = 0
    warnings: int = 0
    cases: int = 0
    notifications: int = 0
    already_imported: bool = False
    levels: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def import_answers(
    session: Session,
    services: Services,
    path: Path | str,
    instrument_id: str,
    profile_id: str,
    school_id: int | None = None,
    campaign: Campaign | None = None,
    at: dt.datetime | None = None,
) -> AnswersResult:
    """Import an answer file; the caller commits. Nothing is added on error.

    :param school_id: restrict respondent matching to one school.
    :param campaign: file the responses under this campaign; every row must pass its gate
        (:func:`xinshu.answer_gate.answer_allowed`: window, enrolment, org unit, guardian consent).
    :param at: the time the gate is checked at (aware, or naive UTC; default now).
    :raises ImportRejected: bad cells, unknown or ambiguous respondents, rows the campaign refuses.
    :raises XinshuError: the campaign does not include the instrument.
    """
    instrument, profile = resolve_profile(services, instrument_id, profile_id)
    if campaign is not None and (problem := instrument_problem(campaign, instrument.id)):
        raise XinshuError(problem)
    answer_file = read_answers(path, instrument, profile, collect=True)
    students, unmatched = _match_students(session, answer_file, profile, school_id)
    errors = answer_file.errors + unmatched
    if campaign is not None:
        matched = [(r.row, students[r.respondent]) for r in answer_file.rows if r.respondent in students]
        gate_at = at or utcnow()
        errors += gate_rows(session, campaign, matched, gate_at, profile.respondent_column, answer_file.sheet)
    errors = sorted(errors, key=lambda e: (e.row, e.column))
    if errors:
        raise ImportRejected(errors)
    result = AnswersResult(rows=len(answer_file.rows), blank_rows=answer_file.blank_rows)
    batch = ImportBatch(kind="answers", filename=Path(path).name, file_sha256=answer_file.digest, rows=result.rows)
    session.add(batch)
    session.flush()
    campaign_id = campaign.id if campaign is not None else None
    for row in answer_file.rows:
        student = students[row.respondent]
        outcome = record_response(
            session, services, student, instrument.id, row.answers, row.raw_cells, "import", batch.id, None, campaign_id
        )
        if outcome.duplicate:
            result.duplicates += 1
            continue
        result.recorded += 1
        if outcome.warning is not None:
            result.warnings += 1
            result.levels[outcome.warning.level] = result.levels.get(outcome.warning.level, 0) + 1
        result.notifications += outcome.notifications
        result.cases += outcome.case_opened
    batch.created = result.recorded
    batch.unchanged = result.duplicates
    result.already_imported = result.recorded == 0 and result.duplicates > 0
    return result


def _match_students(
    session: Session, answer_file: AnswerFile, profile: ImportProfile, school_id: int | None
) -> tuple[dict[str, Student], list[RowError]]:
    """Respondent -> student, and an error for each unknown or ambiguous respondent."""
    column = getattr(Student, profile.match)
    wanted = [r.respondent for r in answer_file.rows]
    stmt = select(Student).where(Student.active.is_(True))
    if school_id is not None:
        stmt = stmt.where(Student.school_id == school_id)
    found: dict[str, list[Student]] = {}
    for chunk_start in range(0, len(wanted), 900):
        chunk = wanted[chunk_start : chunk_start + 900]
        for student in session.scalars(stmt.where(column.in_(chunk))):
            found.setdefault(getattr(student, profile.match), []).append(student)
    label = MATCH_LABELS[profile.match]
    errors = []
    for row in answer_file.rows:
        matches = found.get(row.respondent, [])
        if len(matches) == 1 or not row.respondent:
            continue
        if matches:
            message = f"有{len(matches)}名学生的{label}为 {row.respondent}，请用 --school 指定学校"
        else:
            message = f"名册中没有{label}为 {row.respondent} 的在读学生"
        errors.append(RowError(row.row, profile.respondent_column, message, answer_file.sheet))
    return {k: v[0] for k, v in found.items()}, errors
