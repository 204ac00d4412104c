"""Safe list exports (CSV, XLSX) for back-office model views (security.md D1, D2, A7).

:class:`ExportMixin` replaces Flask-Admin's ``/export/<type>/`` endpoint:

* only a user holding an export capability may export (``export_full``:
  school leaders and psychology teachers; ``export_deidentified``: district and
  bureau administrators; class teachers none). Anyone else gets 403, also on a
  direct GET of the export URL (A7);
* the rows are exactly the list page's rows for that user: the same scoping,
  search, filters and order (D2); the file is full only when the user holds
  ``export_full`` for *every* row's student, de-identified when they hold at
  least ``export_deidentified`` for every row, and refused otherwise;
* more rows than ``XINSHU_EXPORT_MAX_ROWS`` (default 10000) → refused with a
  message, never a truncated file;
* the audit row (action ``export``: rows, format, filters, de-identified or not)
  is committed before the first byte; no audit, no file (I4);
* CSV is streamed (:func:`xinshu.exports.csv_lines`), XLSX written with
  :func:`xinshu.exports.write_xlsx`; every text cell is escaped against formula
  injection (:func:`xinshu.exports.escape_cell`, D1);
* a de-identified file drops every identifying column and names a student only
  by :func:`xinshu.exports.pseudonym` keyed with ``XINSHU_PSEUDONYM_KEY`` (else
  the application's ``SECRET_KEY``) (D3).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from flask import Response, abort, current_app, flash, redirect, request, send_file, stream_with_context
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel.speaklater import LazyString
from sqlalchemy import select

from xinshu.admin.access import audit_read, logged_in_user
from xinshu.admin.formatting import CHINA_TZ, local_time
from xinshu.exports import csv_lines, pseudonym, write_xlsx
from xinshu.models import Student, User
from xinshu.permissions import ROLE_CAPABILITIES, assignments, may_export, students_with

EXPORT_FORMATS = ("csv", "xlsx")
DEFAULT_EXPORT_MAX_ROWS = 10_000
#: Rows loaded from the database at a time while writing a file.
CHUNK = 500
#: Ids per ``IN (...)`` list (below SQLite's oldest parameter limit).
ID_CHUNK = 900
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass(frozen=True)
class ExportColumn:
    """One column of an export file.

    :ivar label: the column title.
    :ivar value: the cell value of a row (text, number, date or None).
    :ivar kind: ``data``; ``identifier`` (left out of de-identified files);
        ``student`` (a student id, replaced by its pseudonym in de-identified files).
    """

    label: Any
    value: Callable[[Any], Any]
    kind: str = "data"


def export_max_rows() -> int:
    """``XINSHU_EXPORT_MAX_ROWS`` of the application (default 10000)."""
    return int(current_app.config.get("XINSHU_EXPORT_MAX_ROWS", DEFAULT_EXPORT_MAX_ROWS))


def pseudonym_key() -> str | bytes:
    """The key of de-identified student codes: ``XINSHU_PSEUDONYM_KEY``, else ``SECRET_KEY``."""
    return current_app.config.get("XINSHU_PSEUDONYM_KEY") or current_app.config["SECRET_KEY"]


def text_time(value: dt.datetime | None) -> str:
    """A stored naive-UTC time as Asia/Shanghai text for a file (empty for None)."""
    return local_time(value)


def export_mode(session: Any, user: User | None, student_ids: Sequence[int]) -> str | None:
    """``full``, ``deidentified`` or None (refused) for an export of rows of these students.

    Full when the user holds ``export_full`` for every student, de-identified when
    they hold ``export_full`` or ``export_deidentified`` for every student. With no
    rows, the best mode any of the user's roles allows.
    """
    if not student_ids:
        held = set().union(*(ROLE_CAPABILITIES[a.role] for a in assignments(user)))
        return "full" if "export_full" in held else "deidentified" if "export_deidentified" in held else None
    wanted = set(student_ids)
    full = _held(session, wanted, students_with(user, "export_full"))
    if full == wanted:
        return "full"
    if full | _held(session, wanted - full, students_with(user, "export_deidentified")) == wanted:
        return "deidentified"
    return None


def _held(session: Any, ids: set[int], allowed) -> set[int]:
    ordered = sorted(ids)
    found: set[int] = set()
    for start in range(0, len(ordered), ID_CHUNK):
        chunk = ordered[start : start + ID_CHUNK]
        found.update(session.scalars(select(Student.id).where(Student.id.in_(chunk), Student.id.in_(allowed))))
    return found


class ExportMixin:
    """CSV/XLSX export of a :class:`~xinshu.admin.base.SecureModelView`'s list rows.

    A view lists its file columns in :attr:`export_spec`, names the column that
    holds the row's student id in :meth:`export_student_column`, and may add
    loader options (``selectinload``) in :attr:`export_load_options`.
    """

    export_types: ClassVar[list[str]] = list(EXPORT_FORMATS)
    export_spec: ClassVar[tuple[ExportColumn, ...]] = ()
    export_load_options: ClassVar[tuple[Any, ...]] = ()

    @property
    def can_export(self) -> bool:  # type: ignore[override]
        """The export menu is shown to users holding an export capability somewhere."""
        return may_export(logged_in_user())

    def export_student_column(self):
        """The column holding each row's student id (``<model>.student_id``)."""
        return self.model.student_id

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        """The list rows as a CSV or XLSX file (see the module docstring)."""
        if export_type not in EXPORT_FORMATS:
            abort(404)
        user = logged_in_user()
        if not may_export(user):
            abort(403)
        view_args, count, query = self._export_query()
        detail = self._export_detail(view_args, export_type)
        limit = export_max_rows()
        if count > limit:
            audit_read("export", self.export_object_type(), "", outcome="denied", rows=count, limit=limit, **detail)
            message = _("导出被拒绝：共 %(count)d 行，超过上限 %(limit)d 行。请先筛选缩小范围再导出。")
            flash(message % {"count": count, "limit": limit}, "error")
            return redirect(self.get_url(".index_view", **request.args))
        pairs = query.with_entities(self.model.id, self.export_student_column()).all()
        mode = export_mode(self.session, user, [student_id for _pk, student_id in pairs])
        if mode is None:
            abort(403, description=_("列表中有您无权导出的记录，请用筛选缩小到可导出的范围。"))
        ids = [pk for pk, _student_id in pairs]
        audit_read("export", self.export_object_type(), "", rows=len(ids), deidentified=mode != "full", **detail)
        header = [str(column.label) for column in self._file_columns(mode)]
        rows = self._export_rows(ids, mode)
        name = f"{self.endpoint}-{'deidentified' if mode != 'full' else 'full'}-{_stamp()}.{export_type}"
        if export_type == "csv":
            return Response(
                stream_with_context(line.encode("utf-8") for line in csv_lines(header, rows)),
                mimetype="text/csv",
                headers={"Content-Disposition": f"attachment; filename={name}"},
            )
        return self._xlsx_response(header, rows, name)

    def export_object_type(self) -> str:
        """Object type of the export's audit row."""
        return getattr(self, "audit_type", None) or self.endpoint

    # --- helpers

    def _export_query(self):
        """The list query for this request (scope, search, filters, order; no paging) and its count."""
        view_args = self._get_list_extra_args()
        query, count_query = self.get_query(), self.get_count_query()
        joins: dict = {}
        count_joins: dict = {}
        if self._search_supported and view_args.search:
            query, count_query, joins, count_joins = self._apply_search(
                query, count_query, joins, count_joins, view_args.search
            )
        if view_args.filters and self._filters:
            query, count_query, joins, count_joins = self._apply_filters(
                query, count_query, joins, count_joins, view_args.filters
            )
        column = self._get_column_by_idx(view_args.sort)
        query, _joins = self._apply_sorting(query, joins, column[0] if column else None, view_args.sort_desc)
        return view_args, int(count_query.scalar() or 0), query

    def _export_detail(self, view_args, export_type: str) -> dict[str, Any]:
        filters = {key: value[:100] for key, value in request.args.items() if key.startswith("flt")}
        column = self._get_column_by_idx(view_args.sort)
        # The search text may be a name: only whether one was used is recorded.
        return {
            "format": export_type,
            "filters": filters,
            "search": bool(view_args.search),
            "sort": column[0] if column else None,
        }

    def _file_columns(self, mode: str) -> list[ExportColumn]:
        if mode == "full":
            return list(self.export_spec)
        return [column for column in self.export_spec if column.kind != "identifier"]

    def _export_rows(self, ids: list[int], mode: str) -> Iterator[list[Any]]:
        columns = self._file_columns(mode)
        key = pseudonym_key() if mode != "full" else None
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            stmt = select(self.model).where(self.model.id.in_(chunk)).options(*self.export_load_options)
            by_id = {row.id: row for row in self.session.scalars(stmt)}
            for pk in chunk:
                if pk in by_id:
                    yield [_cell(column, by_id[pk], key) for column in columns]

    def _xlsx_response(self, header: list[str], rows: Iterator[list[Any]], name: str):
        spool = tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024)  # noqa: SIM115 - send_file closes it
        write_xlsx(spool, header, rows, title=self.endpoint)
        spool.seek(0)
        return send_file(spool, mimetype=XLSX_MIME, as_attachment=True, download_name=name)


def _cell(column: ExportColumn, row: Any, key: str | bytes | None) -> Any:
    value = column.value(row)
    if isinstance(value, LazyString):  # a translated label: text in the request's language
        value = str(value)
    if column.kind == "student" and key is not None and value is not None:
        return pseudonym(int(value), key)
    return value


def _stamp() -> str:
    return dt.datetime.now(CHINA_TZ).strftime("%Y%m%d-%H%M")
