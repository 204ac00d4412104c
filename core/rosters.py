"""Roster import (花名册): an ``.xlsx`` or ``.csv`` from a school → students in the org tree.

All-or-nothing: every row is parsed and checked first; one bad row rejects the
whole file with a list of sheet/row/column errors and nothing is written.
Columns are matched by header text (aliases in :mod:`xinshu.roster_fields`),
in any order. A row naming a student of another school is an error (security.md
C11): moving a student between schools is a transfer (:mod:`xinshu.transfers`).

Two steps (:mod:`xinshu.roster_preview`): :func:`preview_roster` validates the
file and classifies every row (new, changed, moved, unchanged) and lists the
enrolled students the file does not name (missing), writing nothing;
:func:`import_roster` applies the same plan in the caller's transaction. Given
the roster fingerprint the preview saw, it refuses (:class:`RosterChanged`)
when the school's students changed in between.

The import keeps the enrolment history (:class:`~xinshu.models.Enrolment`): a
new student opens a row (reason ``import``); a student moved to another class
closes the current row (``move``) and opens a new one (``move``); a student
marked 离校/毕业 who is on the roster again is re-enrolled (a new row, reason
``import``); missing students are marked 离校 (status ``left``, row closed
with ``left``) only when ``mark_missing_left`` is set. ``entry_year`` (the
year the student entered the current 学段) is computed from the grade and the
school year when unknown or when the roster changes the grade.

Importing the same file again changes nothing ("already imported").
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.class_units import ClassUnits
from xinshu.errors import ImportRejected, RowError, XinshuError
from xinshu.models import Enrolment, ImportBatch, OrgUnit, Student, User, utcnow
from xinshu.roster_fields import IDENTIFIERS, LABELS, PARSERS, FieldError, cross_check, map_headers
from xinshu.roster_preview import UPDATABLE, RosterPreview, RowPlan, plan_roster, roster_school_year
from xinshu.school_years import entry_year_for, parse_school_year
from xinshu.tabular import read_table

__all__ = [
    "UPDATABLE",
    "RosterChanged",
    "RosterResult",
    "close_enrolment",
    "get_school",
    "import_roster",
    "open_enrolment",
    "preview_roster",
]


class RosterChanged(XinshuError):
    """The school's roster changed after the preview; preview the file again."""


@dataclass
class RosterResult:
    """What an accepted import did.

    ``updated`` counts changed and moved students together (``changed`` and
    ``moved`` separately); ``marked_left`` the missing students marked 离校.
    """

    school: str
    rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    changed: int = 0
    moved: int = 0
    missing: int = 0
    marked_left: int = 0
    already_imported: bool = False
    batch_id: int | None = None
    classes_created: int = 0
    school_year: str = ""
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts and flags (no personal data), e.g. for JSON output and the audit log."""
        return {
            "school": self.school,
            "school_year": self.school_year,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "changed": self.changed,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "missing": self.missing,
            "marked_left": self.marked_left,
            "classes_created": self.classes_created,
            "already_imported": self.already_imported,
        }


def get_school(session: Session, code: str, lock: bool = False) -> OrgUnit:
    """The school org unit with ``code``; raises XinshuError if there is none.

    :param lock: lock the school's row until the transaction ends (``SELECT … FOR
        UPDATE`` on PostgreSQL; SQLite transactions here already hold the write lock),
        so two imports, rollovers or transfers of one school run one after the other.
    """
    stmt = select(OrgUnit).where(OrgUnit.code == code)
    if lock:
        stmt = stmt.with_for_update()
    school = session.scalar(stmt)
    if school is None or school.kind != "school":
        raise XinshuError(f"no school with code {code!r}")
    return school


def preview_roster(
    session: Session,
    path: Path | str,
    school_code: str,
    data: bytes | None = None,
    *,
    school_year: str | None = None,
    now: dt.datetime | None = None,
) -> RosterPreview:
    """Validate a roster file and classify its rows against the school; writes nothing.

    :param school_year: the school year the roster is for (``2026-2027``); default
        :func:`xinshu.roster_preview.roster_school_year`.
    :raises ImportRejected: any row or header problem (every one listed).
    :raises UnreadableFile: the file is not a readable table.
    :raises XinshuError: unknown school or a badly written school year.
    """
    path = Path(path)
    data = path.read_bytes() if data is None else data
    school = get_school(session, school_code)
    if school_year is not None:
        parse_school_year(school_year)
    year = school_year or roster_school_year(session, school, now)
    return _validated_plan(session, path, data, school, year)


def import_roster(
    session: Session,
    path: Path | str,
    school_code: str,
    data: bytes | None = None,
    *,
    school_year: str | None = None,
    actor: User | str = "system",
    mark_missing_left: bool = False,
    expected_fingerprint: str | None = None,
    now: dt.datetime | None = None,
) -> RosterResult:
    """Import a roster file into the school ``school_code``.

    The caller owns the transaction: on success the changes and one audit row
    (action ``create`` for a school's first roster, else ``update``; object
    type ``roster``, the school's id, counts) are in ``session``, not committed;
    on any error nothing was added.

    :param school_year: see :func:`preview_roster`.
    :param actor: who imports (a user, or a name for the command line); recorded
        on the enrolment rows and in the audit log.
    :param mark_missing_left: mark the enrolled students the file does not name as 离校.
    :param expected_fingerprint: the roster fingerprint the preview saw.
    :raises ImportRejected: any row or header problem (every one listed).
    :raises UnreadableFile: the file is not a readable table.
    :raises RosterChanged: the school's students differ from ``expected_fingerprint``.
    """
    path = Path(path)
    data = path.read_bytes() if data is None else data
    school = get_school(session, school_code, lock=True)
    if school_year is not None:
        parse_school_year(school_year)
    year = school_year or roster_school_year(session, school, now)
    plan = _validated_plan(session, path, data, school, year)
    if expected_fingerprint is not None and plan.fingerprint != expected_fingerprint:
        raise RosterChanged(_("该校名册在预览之后已有变化，请重新上传并预览"))
    first_roster = session.scalar(select(Student.id).where(Student.school_id == school.id).limit(1)) is None
    result = RosterResult(school=school.code, rows=len(plan.rows), missing=len(plan.missing), school_year=year)
    leaving = plan.missing if mark_missing_left else []
    if plan.already_imported and not plan.has_changes and not leaving:
        result.already_imported = True
        result.unchanged = len(plan.rows)
    else:
        _apply(session, school, plan, result, _actor_name(actor), now or utcnow())
        _mark_left(session, [m.student_id for m in leaving], result, _actor_name(actor), now or utcnow())
        batch = ImportBatch(
            kind="roster",
            filename=path.name[:255],
            file_sha256=plan.digest,
            org_unit_id=school.id,
            rows=len(plan.rows),
            created=result.created,
            updated=result.updated,
            unchanged=result.unchanged,
        )
        session.add(batch)
        session.flush()
        result.batch_id = batch.id
    detail = {"operation": "import", "batch_id": result.batch_id, "sha256": plan.digest, **result.as_dict()}
    audit.record(session, "create" if first_roster else "update", "roster", school.id, detail=detail, actor=actor)
    session.flush()
    return result


def _actor_name(actor: User | str) -> str:
    return (actor.username if isinstance(actor, User) else str(actor or "system"))[:80]


# --- parsing and validation ------------------------------------------------------


def _validated_plan(session: Session, path: Path, data: bytes, school: OrgUnit, year: str) -> RosterPreview:
    """Parse, validate and plan; every problem found is raised together."""
    digest = hashlib.sha256(data).hexdigest()
    table = read_table(path, data)
    columns, header_problems = map_headers(table.header)
    if header_problems:
        raise ImportRejected([RowError(1, "", p, table.sheet) for p in header_problems])
    labels = {f: table.header[i] for f, i in columns.items()}
    records, errors = _parse_rows(table, columns, school)
    errors.extend(_duplicates_in_file(records, labels, table.sheet))
    errors.extend(_enrolled_elsewhere(session, records, school, labels, table.sheet))
    bad_rows = {e.row for e in errors}
    clean = [r for r in records if r["_row"] not in bad_rows]
    plan, conflicts = plan_roster(
        session, school, clean, labels, school_year=year, digest=digest, filename=path.name, sheet=table.sheet
    )
    errors.extend(conflicts)
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: (e.row, e.column)))
    if not records:
        raise ImportRejected([RowError(2, "", _("文件中没有学生数据行"), table.sheet)])
    return plan


def _parse_rows(table, columns, school) -> tuple[list[dict[str, Any]], list[RowError]]:
    records, errors = [], []
    header = table.header
    for number, cells in table.rows:
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        record: dict[str, Any] = {"_row": number}
        for fld, index in columns.items():
            value = cells[index] if index < len(cells) else None
            try:
                record[fld] = PARSERS[fld](value)
            except FieldError as exc:
                errors.append(RowError(number, header[index], str(exc), table.sheet))
        if record.get("school_code") and record["school_code"] != school.code:
            message = _("学校代码与导入的学校不一致")
            errors.append(RowError(number, header[columns["school_code"]], message, table.sheet))
        if not any(record.get(f) for f in IDENTIFIERS) and not any(e.row == number for e in errors):
            errors.append(RowError(number, "", _("身份证号、学籍号、校内学号至少填写一项"), table.sheet))
        for fld, message in cross_check(record):
            errors.append(
                RowError(number, header[columns[fld]] if fld in columns else LABELS[fld], message, table.sheet)
            )
        records.append(record)
    return records, errors


def _duplicates_in_file(records: list[dict[str, Any]], labels: dict[str, str], sheet: str) -> list[RowError]:
    errors = []
    for fld in IDENTIFIERS:
        seen: dict[str, int] = {}
        for record in records:
            value = record.get(fld)
            if not value:
                continue
            if value in seen:
                message = _("与第%(row)s行重复", row=seen[value])
                errors.append(RowError(record["_row"], labels.get(fld, LABELS[fld]), message, sheet))
            seen.setdefault(value, record["_row"])
    return errors


def _enrolled_elsewhere(
    session: Session, records, school: OrgUnit, labels: dict[str, str], sheet: str
) -> list[RowError]:
    """Rows naming a student of another school (C11): enrolled there, or graduated/left there."""
    errors = []
    for fld in ("id_number", "student_number"):
        values = [r[fld] for r in records if r.get(fld)]
        if not values:
            continue
        column = getattr(Student, fld)
        others: dict[str, str] = {}
        for start in range(0, len(values), 500):
            stmt = select(column, Student.status).where(
                column.in_(values[start : start + 500]), Student.school_id != school.id
            )
            others.update(dict(session.execute(stmt).all()))
        for record in records:
            status = others.get(record.get(fld))
            if status is None:
                continue
            if status == "enrolled":
                message = _("该学生已在其他学校的名册中（转学需走转学流程）")
            else:
                message = _("该学生曾在其他学校就读（已毕业或离校）；转入本校请由区或市管理员办理转学")
            errors.append(RowError(record["_row"], labels.get(fld, LABELS[fld]), message, sheet))
    return errors


# --- applying the plan ------------------------------------------------------------


def _apply(
    session: Session, school: OrgUnit, plan: RosterPreview, result: RosterResult, actor: str, now: dt.datetime
) -> None:
    classes = ClassUnits(session, school)
    for row in plan.rows:
        if row.kind == "unchanged":
            result.unchanged += 1
            student = session.get(Student, row.student_id)
            if student.entry_year is None:
                student.entry_year = entry_year_for(student.grade_level, plan.school_year)
            continue
        unit = classes.get(row.grade_level, row.class_number)
        if row.kind == "new":
            _create(session, school, unit, row, plan.school_year, actor, now)
            result.created += 1
        else:
            _update(session, session.get(Student, row.student_id), unit, row, plan.school_year, actor, now)
            result.updated += 1
            result.changed += row.kind == "changed"
            result.moved += row.kind == "moved"
    result.classes_created = classes.created
    session.flush()


def _create(
    session: Session, school: OrgUnit, unit: OrgUnit, row: RowPlan, year: str, actor: str, now: dt.datetime
) -> None:
    student = Student(
        school_id=school.id,
        class_id=unit.id,
        entry_year=entry_year_for(row.grade_level, year),
        status="enrolled",
        active=True,
        **row.values,
    )
    session.add(student)
    session.flush()
    open_enrolment(session, student, "import", year, actor, now)


def _update(
    session: Session, student: Student, unit: OrgUnit, row: RowPlan, year: str, actor: str, now: dt.datetime
) -> None:
    re_enrolled = "status" in row.fields
    grade_changed = student.grade_level != row.grade_level
    for name in row.fields:
        if name != "status":
            setattr(student, name, row.values[name])
    if grade_changed or student.entry_year is None:
        student.entry_year = entry_year_for(row.grade_level, year)
    if re_enrolled:
        student.status, student.active = "enrolled", True
    if row.kind == "moved":
        student.class_id = unit.id
        student.class_unit = unit
        close_enrolment(session, student, "move", now)  # none open for a student who had left
    if row.kind == "moved" or re_enrolled:
        open_enrolment(session, student, "import" if re_enrolled else "move", year, actor, now)


def _mark_left(session: Session, student_ids: list[int], result: RosterResult, actor: str, now: dt.datetime) -> None:
    for student_id in student_ids:
        student = session.get(Student, student_id)
        student.status, student.active = "left", False
        close_enrolment(session, student, "left", now)
        result.marked_left += 1
    session.flush()


def open_enrolment(
    session: Session, student: Student, reason: str, school_year: str, actor: str, now: dt.datetime
) -> Enrolment:
    """Add the student's current enrolment row (school, class and grade as the student has them now)."""
    row = Enrolment(
        student_id=student.id,
        school_id=student.school_id,
        class_id=student.class_id,
        grade_level=student.grade_level,
        school_year=school_year,
        reason=reason,
        started_at=now,
        actor=actor[:80],
    )
    session.add(row)
    return row


def close_enrolment(session: Session, student: Student, end_reason: str, now: dt.datetime) -> int:
    """End the student's open enrolment rows with ``end_reason``; returns how many were open."""
    rows = list(
        session.scalars(select(Enrolment).where(Enrolment.student_id == student.id, Enrolment.ended_at.is_(None)))
    )
    for row in rows:
        row.ended_at, row.end_reason = now, end_reason
    return len(rows)
