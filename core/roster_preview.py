"""Roster preview: what importing a roster file would do, before anything is written.

:func:`xinshu.rosters.preview_roster` parses and validates a file exactly as
the import does, then :func:`plan_roster` compares every row with the school's
current students (matched by 身份证号, then 学籍号, then 校内学号):

* ``new``: no student of the school matches the row;
* ``moved``: the row puts the student in another class of the school (other
  changed fields are listed too);
* ``changed``: same class, some field differs (field names only; a student
  marked 离校/毕业 who is on the roster again is re-enrolled, field ``status``);
* ``unchanged``: nothing differs;
* ``missing``: an enrolled student of the school that no row names. Missing
  students are not deleted; the import marks them 离校 only when asked to.

The import (:func:`xinshu.rosters.import_roster`) applies the same plan, so
what the preview shows is what a confirmation writes. :func:`roster_fingerprint`
digests the school's roster: a confirmation made when it differs from the one
previewed is refused.

A :class:`RosterPreview` holds names (from the file, and of the missing
students from the database) for the page that shows it; its ``repr`` and
:meth:`RosterPreview.counts` carry counts only, so logging it leaks nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from xinshu.class_units import ClassUnits, class_code
from xinshu.errors import RowError
from xinshu.models import Enrolment, ImportBatch, OrgUnit, Student
from xinshu.roster_fields import IDENTIFIERS, LABELS
from xinshu.school_years import school_year_of

ROW_KINDS = ("new", "changed", "moved", "unchanged")
#: Student fields a roster row sets (``grade_level`` comes from the 年级 column).
UPDATABLE = ("name", "gender", "birth_date", "id_number", "student_number", "school_student_no", "grade_level")
#: Chinese labels of the field names listed for changed rows.
FIELD_LABELS = {**{f: LABELS[f] for f in UPDATABLE if f in LABELS}, "grade_level": _l("年级"), "status": _l("在籍状态")}
#: Student columns the roster fingerprint covers.
_FINGERPRINT_COLUMNS = ("id", "class_id", "status", "active", "entry_year", *UPDATABLE)


@dataclass
class RowPlan:
    """What the import does with one row of the file.

    :ivar row: spreadsheet row number (the header is row 1).
    :ivar kind: one of :data:`ROW_KINDS`.
    :ivar student_id: the matched student (None for ``new``).
    :ivar fields: names of the changed fields (:data:`FIELD_LABELS` keys), for ``changed`` and ``moved``.
    :ivar old_class_id: the student's class before a move.
    :ivar values: the parsed student fields of the row (personal data; not in ``repr``).
    """

    row: int
    kind: str
    grade_level: int
    class_number: int
    class_code: str
    student_id: int | None = None
    fields: tuple[str, ...] = ()
    old_class_id: int | None = None
    name: str = field(default="", repr=False)
    values: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class MissingStudent:
    """An enrolled student of the school that no row of the file names."""

    student_id: int
    class_id: int
    name: str = field(default="", repr=False)


@dataclass
class RosterPreview:
    """The plan of an import: every row classified, and the missing students.

    :ivar digest: SHA-256 of the file (hex).
    :ivar fingerprint: :func:`roster_fingerprint` of the school when planned.
    :ivar classes_to_create: codes of class units the import would add.
    :ivar already_imported: this file was imported into this school before.
    """

    school: str
    school_id: int
    school_year: str
    digest: str
    fingerprint: str
    filename: str = ""
    sheet: str = ""
    rows: list[RowPlan] = field(default_factory=list, repr=False)
    missing: list[MissingStudent] = field(default_factory=list, repr=False)
    classes_to_create: list[str] = field(default_factory=list)
    already_imported: bool = False

    def of_kind(self, kind: str) -> list[RowPlan]:
        """The rows of one kind (``new``, ``changed``, ``moved``, ``unchanged``), in file order."""
        return [row for row in self.rows if row.kind == kind]

    @property
    def has_changes(self) -> bool:
        """True when applying the plan would add or change a student."""
        return any(row.kind != "unchanged" for row in self.rows)

    def counts(self) -> dict[str, int]:
        """Counts per kind, plus ``rows``, ``missing`` and ``classes_to_create`` (no personal data)."""
        counts = dict.fromkeys(ROW_KINDS, 0)
        for row in self.rows:
            counts[row.kind] += 1
        return {
            **counts,
            "missing": len(self.missing),
            "rows": len(self.rows),
            "classes_to_create": len(self.classes_to_create),
        }


def roster_fingerprint(session: Session, school: OrgUnit) -> str:
    """SHA-256 (hex) over every student of ``school``: ids, class, status and the roster fields.

    Any import, move, transfer, rollover or edit of a student of the school changes it.
    """
    columns = [getattr(Student, name) for name in _FINGERPRINT_COLUMNS]
    rows = session.execute(select(*columns).where(Student.school_id == school.id).order_by(Student.id)).all()
    text = json.dumps([[_plain(value) for value in row] for row in rows], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def latest_enrolment_year(session: Session, school: OrgUnit) -> str | None:
    """The latest school year of the school's current (open) enrolment rows, or None."""
    return session.scalar(
        select(func.max(Enrolment.school_year)).where(Enrolment.school_id == school.id, Enrolment.ended_at.is_(None))
    )


def roster_school_year(session: Session, school: OrgUnit, now=None) -> str:
    """The school year an import is for when none is given: the one in progress
    (1 September, Asia/Shanghai), or the school's latest enrolment year if the
    rollover to a later year has already run (e.g. in August)."""
    current = school_year_of(now)
    latest = latest_enrolment_year(session, school)
    return max(current, latest) if latest else current


def plan_roster(
    session: Session,
    school: OrgUnit,
    records: list[dict[str, Any]],
    columns: dict[str, str],
    *,
    school_year: str,
    digest: str,
    filename: str = "",
    sheet: str = "",
) -> tuple[RosterPreview, list[RowError]]:
    """Classify valid parsed rows against the school's students (reads only).

    :param records: parsed rows (``_row``, ``grade``, ``class`` and the student fields present in the file).
    :param columns: header text of each field's column, for error messages.
    :return: the plan, and errors found against the database: a row whose
        identifiers name two different students of the school, or two rows naming the same student.
    """
    students = list(session.scalars(select(Student).where(Student.school_id == school.id).order_by(Student.id)))
    index = {(f, getattr(s, f)): s for s in students for f in IDENTIFIERS if getattr(s, f)}
    units = ClassUnits(session, school)
    preview = RosterPreview(
        school=school.code,
        school_id=school.id,
        school_year=school_year,
        digest=digest,
        fingerprint=roster_fingerprint(session, school),
        filename=filename,
        sheet=sheet,
    )
    errors: list[RowError] = []
    matched: dict[int, int] = {}
    to_create: set[str] = set()
    for record in records:
        student = next((index[(f, record[f])] for f in IDENTIFIERS if (f, record.get(f)) in index), None)
        problems = _conflicts(record, student, index, matched, columns, sheet)
        if problems:
            errors.extend(problems)
            continue
        plan = _row_plan(school, record, student, units)
        if student is not None:
            matched[student.id] = record["_row"]
        if units.find(plan.grade_level, plan.class_number) is None:
            to_create.add(plan.class_code)
        preview.rows.append(plan)
    preview.missing = [
        MissingStudent(s.id, s.class_id, s.name)
        for s in students
        if s.id not in matched and s.status == "enrolled" and s.active
    ]
    preview.classes_to_create = sorted(to_create)
    batch = select(ImportBatch.id).where(
        ImportBatch.kind == "roster", ImportBatch.file_sha256 == digest, ImportBatch.org_unit_id == school.id
    )
    preview.already_imported = session.scalar(batch.limit(1)) is not None
    return preview, errors


def _conflicts(
    record: dict[str, Any],
    student: Student | None,
    index: dict[tuple[str, Any], Student],
    matched: dict[int, int],
    columns: dict[str, str],
    sheet: str,
) -> list[RowError]:
    """A row naming two students of the school, or a student another row already names."""
    errors = []
    number = record["_row"]
    for f in IDENTIFIERS:
        owner = index.get((f, record.get(f)))
        if owner is not None and owner is not student:
            message = _("与本校另一名学生（编号 #%(id)s）的%(field)s相同", id=owner.id, field=LABELS[f])
            errors.append(RowError(number, columns.get(f, LABELS[f]), message, sheet))
    if student is not None and student.id in matched:
        errors.append(RowError(number, "", _("与第%(row)s行是同一名学生", row=matched[student.id]), sheet))
    return errors


def _row_plan(school: OrgUnit, record: dict[str, Any], student: Student | None, units: ClassUnits) -> RowPlan:
    grade, number = record["grade"], record["class"]
    values = {f: record[f] for f in UPDATABLE if f in record}
    values["grade_level"] = grade
    code = class_code(school.code, grade, number)
    plan = RowPlan(
        row=record["_row"],
        kind="new",
        grade_level=grade,
        class_number=number,
        class_code=code,
        name=record.get("name", ""),
        values=values,
    )
    if student is None:
        return plan
    plan.student_id = student.id
    changed = [f for f in UPDATABLE if f in values and getattr(student, f) != values[f]]
    if student.status != "enrolled" or not student.active:
        changed.append("status")
    plan.fields = tuple(changed)
    current = units.by_code.get(code)
    if current is None or current.id != student.class_id:
        plan.kind, plan.old_class_id = "moved", student.class_id
    else:
        plan.kind = "changed" if changed else "unchanged"
    return plan
