"""Roster import (花名册): an ``.xlsx`` from a school → students in the org tree.

All-or-nothing: every row is parsed and checked first; one bad row rejects the
whole file with a list of row/column errors and nothing is written. Columns are
matched by header text (aliases in :mod:`xinshu.roster_fields`), in any order.
Importing the same file again changes nothing; a changed file updates the
students it names (matched by ID number, then 学籍号, then 校内学号).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.errors import ImportRejected, RowError, XinshuError
from xinshu.grades import grade_name
from xinshu.models import ImportBatch, OrgUnit, Student
from xinshu.orgs import add_org_unit
from xinshu.roster_fields import IDENTIFIERS, LABELS, PARSERS, FieldError, cross_check, map_headers
from xinshu.tabular import read_table

UPDATABLE = ("name", "gender", "birth_date", "id_number", "student_number", "school_student_no", "grade_level")


@dataclass
class RosterResult:
    """What an accepted import did."""

    school: str
    rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    already_imported: bool = False
    batch_id: int | None = None
    classes_created: int = 0
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "school": self.school,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "classes_created": self.classes_created,
            "already_imported": self.already_imported,
        }


def get_school(session: Session, code: str) -> OrgUnit:
    """The school org unit with ``code``; raises XinshuError if there is none."""
    school = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
    if school is None or school.kind != "school":
        raise XinshuError(f"no school with code {code!r}")
    return school


def import_roster(session: Session, path: Path | str, school_code: str, data: bytes | None = None) -> RosterResult:
    """Import a roster file into the school ``school_code``.

    The caller owns the transaction: on success the changes are in ``session``
    (not committed); on :class:`ImportRejected` nothing was added.

    :raises ImportRejected: any row or header problem (every one listed).
    :raises UnreadableFile: the file is not a readable table.
    """
    path = Path(path)
    data = path.read_bytes() if data is None else data
    digest = hashlib.sha256(data).hexdigest()
    school = get_school(session, school_code)
    table = read_table(path, data)
    columns, header_problems = map_headers(table.header)
    if header_problems:
        raise ImportRejected([RowError(1, "", p, table.sheet) for p in header_problems])
    records, errors = _parse_rows(table, columns, school)
    errors.extend(_duplicates_in_file(records, table.sheet))
    errors.extend(_enrolled_elsewhere(session, records, school, table.sheet))
    if errors:
        raise ImportRejected(sorted(errors, key=lambda e: (e.row, e.column)))
    if not records:
        raise ImportRejected([RowError(2, "", "文件中没有学生数据行", table.sheet)])
    previous = session.scalar(
        select(ImportBatch).where(
            ImportBatch.kind == "roster", ImportBatch.file_sha256 == digest, ImportBatch.org_unit_id == school.id
        )
    )
    result = RosterResult(school=school.code, rows=len(records))
    if previous is not None:
        result.already_imported = True
        result.unchanged = len(records)
        result.batch_id = previous.id
        return result
    _apply(session, school, records, result)
    batch = ImportBatch(
        kind="roster",
        filename=path.name,
        file_sha256=digest,
        org_unit_id=school.id,
        rows=len(records),
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )
    session.add(batch)
    session.flush()
    result.batch_id = batch.id
    return result


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
            errors.append(RowError(number, header[columns["school_code"]], "学校代码与导入的学校不一致", table.sheet))
        if not any(record.get(f) for f in IDENTIFIERS) and not any(e.row == number for e in errors):
            errors.append(RowError(number, "", "身份证号、学籍号、校内学号至少填写一项", table.sheet))
        for fld, message in cross_check(record):
            errors.append(
                RowError(number, header[columns[fld]] if fld in columns else LABELS[fld], message, table.sheet)
            )
        records.append(record)
    return records, errors


def _duplicates_in_file(records: list[dict[str, Any]], sheet: str) -> list[RowError]:
    errors = []
    for fld in IDENTIFIERS:
        seen: dict[str, int] = {}
        for record in records:
            value = record.get(fld)
            if not value:
                continue
            if value in seen:
                errors.append(RowError(record["_row"], LABELS[fld], f"与第{seen[value]}行重复", sheet))
            seen.setdefault(value, record["_row"])
    return errors


def _enrolled_elsewhere(session: Session, records, school: OrgUnit, sheet: str) -> list[RowError]:
    errors = []
    for fld in ("id_number", "student_number"):
        values = [r[fld] for r in records if r.get(fld)]
        if not values:
            continue
        column = getattr(Student, fld)
        others = dict(
            session.execute(
                select(column, Student.school_id).where(column.in_(values), Student.school_id != school.id)
            ).all()
        )
        for record in records:
            if record.get(fld) in others:
                errors.append(
                    RowError(record["_row"], LABELS[fld], "该学生已在其他学校的名册中（转学需走转学流程）", sheet)
                )
    return errors


def _apply(session: Session, school: OrgUnit, records: list[dict[str, Any]], result: RosterResult) -> None:
    existing = list(session.scalars(select(Student).where(Student.school_id == school.id)))
    index = {(fld, getattr(s, fld)): s for s in existing for fld in IDENTIFIERS if getattr(s, fld)}
    classes = _ClassUnits(session, school)
    for record in records:
        record["grade_level"] = record.pop("grade")
        class_unit = classes.get(record["grade_level"], record.pop("class"))
        fields = _fields(record)
        student = next((index[(f, record[f])] for f in IDENTIFIERS if (f, record.get(f)) in index), None)
        if student is None:
            session.add(Student(school_id=school.id, class_id=class_unit.id, **fields))
            result.created += 1
            continue
        changed = {f: v for f, v in fields.items() if getattr(student, f) != v}
        for f, v in changed.items():
            setattr(student, f, v)
        if student.class_id != class_unit.id:
            changed["class"] = class_unit.id
            student.class_id = class_unit.id
        if changed:
            result.updated += 1
        else:
            result.unchanged += 1
    result.classes_created = classes.created
    session.flush()


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """The student fields the file gives; a column the file lacks changes nothing."""
    return {f: record[f] for f in UPDATABLE if f in record}


class _ClassUnits:
    """Find or create grade and class org units under a school."""

    def __init__(self, session: Session, school: OrgUnit):
        self.session = session
        self.school = school
        self.created = 0
        units = session.scalars(select(OrgUnit).where(OrgUnit.path.startswith(school.path)))
        self.by_code = {u.code: u for u in units}

    def get(self, grade: int, number: int) -> OrgUnit:
        grade_unit = self._unit(f"{self.school.code}-G{grade:02d}", grade_name(grade), "grade", self.school)
        return self._unit(f"{grade_unit.code}-C{number:02d}", f"{grade_name(grade)}{number}班", "class", grade_unit)

    def _unit(self, code: str, name: str, kind: str, parent: OrgUnit) -> OrgUnit:
        unit = self.by_code.get(code)
        if unit is None:
            unit = add_org_unit(self.session, code, name, kind, parent)
            self.by_code[code] = unit
            self.created += kind == "class"
        return unit
