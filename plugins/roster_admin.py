"""Roster upload in the back office: preview (new, changed, moved, missing), the per-row
error table, school-year rollover and transfers between schools; and the ``rollover``
and ``transfer`` commands.

Pages (endpoint ``roster``, :class:`RosterView`):

* ``/admin/roster/`` — choose a school (``select[name=school]``, the schools the
  user may manage by code) and a file (``input[type=file][name=file]``) and press
  ``button[name=preview]``. A file with errors is answered 400 with
  ``table#row-errors`` (one ``tr`` per error: 工作表, 行, 列, 错误) and no confirm
  button; a good one with ``#preview-summary`` (``#count-new``, ``#count-changed``,
  ``#count-moved``, ``#count-unchanged``, ``#count-missing``), the lists, and a
  confirm form (``button[name=confirm]``).
* ``/admin/roster/confirm`` — imports the previewed file (:func:`xinshu.rosters.import_roster`).
  **The file is selected again** in the confirm form; nothing of it is kept on the
  server between the two steps. The safer choice: a copy of a roster (names and
  ID numbers of minors) waiting in a temporary directory could outlive a crash,
  be read by another process, or be missed by cleanup, while a re-upload costs one
  click. The preview page carries a signed token (the application's secret key,
  itsdangerous) binding the user, the school, the school year, the file's SHA-256
  and the school's roster fingerprint; it is valid for 30 minutes. A different
  file, another user, an expired token or a roster that changed since the preview
  (:class:`xinshu.rosters.RosterChanged`, 409) is refused with a request to preview again.
* ``/admin/roster/rollover`` — school-year rollover: dry run (counts), then confirm
  (a token binds the school, year and roster fingerprint of the dry run).
* ``/admin/roster/transfer`` — transfer a student to a class of another school
  (district and bureau administrators only, :mod:`xinshu.transfers`).

Who: principals, moral-education directors and psychology teachers for their
schools, district and bureau administrators for the schools under them
(:data:`ROSTER_ROLES`). Student names on the preview are shown only to the
school's own roles (:data:`SCHOOL_ROLES`); district and bureau administrators
see row numbers and student ids (roles.md: they see individual students only
when a warning is escalated). Every POST carries a CSRF token; uploads larger
than ``MAX_CONTENT_LENGTH`` are refused with 413 before the body is read. Imports,
rollovers and transfers write an audit row (action ``create``/``update``, object
type ``roster``, counts); a preview writes a ``read`` row before showing names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import click
from flask import abort, current_app, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from xinshu import audit, hookimpl
from xinshu.admin.views import SecureDbView, logged_in_user, user_roles
from xinshu.class_units import class_name
from xinshu.errors import ImportRejected, RowError, XinshuError
from xinshu.models import OrgUnit, User
from xinshu.rollover import rollover
from xinshu.roster_preview import FIELD_LABELS, RosterPreview, roster_fingerprint
from xinshu.rosters import RosterChanged, get_school, import_roster, preview_roster
from xinshu.school_years import parse_school_year, school_year_label, school_year_of
from xinshu.tabular import UnreadableFile
from xinshu.transfers import TRANSFER_ROLES, NotFound, TransferDenied, find_class, find_student, transfer_student

log = logging.getLogger(__name__)

#: Roles that may upload rosters and run the rollover for the schools under them.
ROSTER_ROLES = ("principal", "moral_education_director", "psychology_teacher", "district_admin", "bureau_admin")
#: Roles that see the names of their school's students on the preview.
SCHOOL_ROLES = ("principal", "moral_education_director", "psychology_teacher")
#: How long a preview or dry run may be confirmed (seconds).
CONFIRM_MAX_AGE = 30 * 60
#: Rows listed per kind on the preview page (the counts are always complete).
SHOWN_ROWS = 1000
UPLOAD_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".xls", ".et")
_IMPORT_SALT = "xinshu.roster.confirm"
_ROLLOVER_SALT = "xinshu.roster.rollover"
YEAR_PATTERN = r"^\d{4}-\d{4}$"


# --- forms -----------------------------------------------------------------------


class UploadForm(FlaskForm):
    """Step 1: school, school year and the file to preview."""

    school = SelectField(_l("学校"), validators=[DataRequired(message=_l("请选择学校"))])
    school_year = SelectField(_l("学年"), validators=[Optional()])
    file = FileField(_l("名册文件（.xlsx 或 .csv）"), validators=[FileRequired(message=_l("请选择名册文件"))])


class ConfirmForm(FlaskForm):
    """Step 2: the same file again, the preview's token and whether to mark missing students 离校."""

    token = HiddenField(validators=[DataRequired()])
    file = FileField(_l("再次选择同一名册文件"), validators=[FileRequired(message=_l("请再次选择预览过的名册文件"))])
    mark_missing_left = BooleanField(_l("将名册中没有的在籍学生标记为离校"))


class RolloverForm(FlaskForm):
    """School-year rollover: dry run, then confirm with the dry run's token."""

    school = SelectField(_l("学校"), validators=[DataRequired(message=_l("请选择学校"))])
    school_year = StringField(
        _l("新学年"),
        validators=[
            DataRequired(message=_l("请填写学年")),
            Regexp(YEAR_PATTERN, message=_l("学年格式应为如 2027-2028")),
        ],
    )
    token = HiddenField()


class TransferForm(FlaskForm):
    """Transfer one student to a class of another school."""

    student = StringField(
        _l("学生（学籍号或编号）"), validators=[DataRequired(message=_l("请填写学生")), Length(max=64)]
    )
    to_class = StringField(_l("转入班级代码"), validators=[DataRequired(message=_l("请填写班级代码")), Length(max=64)])
    school_student_no = StringField(_l("新学校的校内学号（可选）"), validators=[Optional(), Length(max=32)])
    reason = TextAreaField(
        _l("转学原因"),
        validators=[DataRequired(message=_l("请填写转学原因")), Length(max=500, message=_l("最多500字"))],
    )


# --- helpers ---------------------------------------------------------------------


def manageable_schools(session, user: User | None) -> list[OrgUnit]:
    """The schools under the org units where ``user`` holds one of :data:`ROSTER_ROLES`, by code."""
    if user is None or not user.is_active:
        return []
    prefixes = sorted({a.org_unit.path for a in user.roles if a.role in ROSTER_ROLES and a.org_unit is not None})
    if not prefixes:
        return []
    schools = session.scalars(select(OrgUnit).where(OrgUnit.kind == "school").order_by(OrgUnit.code))
    return [s for s in schools if any(s.path.startswith(prefix) for prefix in prefixes)]


def shows_names(user: User | None, school: OrgUnit) -> bool:
    """True when ``user`` holds a school role (:data:`SCHOOL_ROLES`) at ``school`` or above it."""
    if user is None:
        return False
    return any(
        a.role in SCHOOL_ROLES and a.org_unit is not None and school.path.startswith(a.org_unit.path)
        for a in user.roles
    )


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=salt)


def _claims(token: str, salt: str) -> dict[str, Any] | None:
    """The payload of a token made here within :data:`CONFIRM_MAX_AGE`, else None."""
    try:
        claims = _serializer(salt).loads(token or "", max_age=CONFIRM_MAX_AGE)
    except (BadSignature, SignatureExpired):
        return None
    return claims if isinstance(claims, dict) else None


def _school_choices(schools: list[OrgUnit]) -> list[tuple[str, str]]:
    return [(s.code, _("%(name)s（%(code)s）", name=s.name, code=s.code)) for s in schools]


def _end_read_transaction(session) -> None:
    """End a transaction that has only read, keeping loaded objects usable (``expire_on_commit=False``).

    On SQLite every transaction holds the write lock from its start, so the audit row
    written in its own transaction (:func:`xinshu.audit.record_read`) would wait for it.
    A rollback would expire the logged-in user, whose reload would take the lock again.

    :raises RuntimeError: the session holds changes (they must not be committed here).
    """
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only step left changes in the session")
    session.commit()


def _upload(storage) -> tuple[str, bytes]:
    """The uploaded file's name (without directories) and its bytes."""
    name = Path((storage.filename or "").replace("\\", "/")).name or "upload"
    return name[-255:], storage.read()


# --- the view --------------------------------------------------------------------


class RosterView(SecureDbView):
    """名册管理: upload with preview and confirmation, school-year rollover, transfers."""

    required_roles = ROSTER_ROLES

    # --- upload: preview and confirm

    @expose("/", methods=("GET", "POST"))
    def index(self):
        """The upload form; on POST (``preview``) the preview or the error table."""
        session = self.db.session
        user = logged_in_user()
        schools = manageable_schools(session, user)
        form = self._upload_form(schools)
        if request.method == "GET":
            return self._render_upload(form, schools)
        if not form.validate_on_submit():
            return self._render_upload(form, schools, status=400)
        school = next(s for s in schools if s.code == form.school.data)
        name, data = _upload(form.file.data)
        if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
            return self._render_upload(form, schools, file_error=_("只接受 .xlsx 或 .csv 文件"), status=400)
        try:
            plan = preview_roster(session, name, school.code, data, school_year=form.school_year.data or None)
        except ImportRejected as exc:
            session.rollback()
            return self._render_upload(form, schools, row_errors=exc.errors, status=400)
        except (UnreadableFile, XinshuError) as exc:
            session.rollback()
            return self._render_upload(form, schools, file_error=str(exc), status=400)
        _end_read_transaction(session)
        self._audit_preview(school, plan)
        token = _serializer(_IMPORT_SALT).dumps(
            {"u": user.id, "s": school.id, "y": plan.school_year, "d": plan.digest, "f": plan.fingerprint}
        )
        confirm = ConfirmForm(formdata=None, token=token)
        return self._render_preview(school, plan, confirm, user)

    @expose("/confirm", methods=("POST",))
    def confirm_view(self):
        """Import the previewed file (selected again), if nothing changed since the preview."""
        session = self.db.session
        user = logged_in_user()
        schools = manageable_schools(session, user)
        form = ConfirmForm()
        claims = _claims(form.token.data, _IMPORT_SALT) if form.validate_on_submit() else None
        if claims is None or claims.get("u") != user.id:
            message = _("预览已失效（超过30分钟或不是本人的预览），请重新上传并预览")
            if form.errors and "token" not in form.errors:
                message = _("；").join(str(m) for messages in form.errors.values() for m in messages)
            return self._render_upload(self._upload_form(schools), schools, file_error=message, status=400)
        school = next((s for s in schools if s.id == claims.get("s")), None)
        if school is None:
            abort(403)
        name, data = _upload(form.file.data)
        if hashlib.sha256(data).hexdigest() != claims.get("d"):
            message = _("所选文件与预览的文件不同，请重新上传并预览")
            return self._render_upload(self._upload_form(schools), schools, file_error=message, status=400)
        try:
            result = import_roster(
                session, name, school.code, data, school_year=claims.get("y"), actor=user,
                mark_missing_left=bool(form.mark_missing_left.data), expected_fingerprint=claims.get("f"),
            )  # fmt: skip
            session.commit()
        except RosterChanged as exc:
            session.rollback()
            return self._render_upload(self._upload_form(schools), schools, file_error=str(exc), status=409)
        except ImportRejected as exc:
            session.rollback()
            return self._render_upload(self._upload_form(schools), schools, row_errors=exc.errors, status=400)
        except (UnreadableFile, XinshuError) as exc:
            session.rollback()
            return self._render_upload(self._upload_form(schools), schools, file_error=str(exc), status=400)
        except Exception:
            session.rollback()
            raise
        log.info(
            "roster imported into school id %s by user id %s: %s", school.id, user.id, json.dumps(result.as_dict())
        )
        return self._render_upload(self._upload_form(schools), schools, result=result, result_school=school)

    # --- rollover

    @expose("/rollover", methods=("GET", "POST"))
    def rollover_view(self):
        """Dry run of the school-year rollover, then its confirmation."""
        session = self.db.session
        user = logged_in_user()
        schools = manageable_schools(session, user)
        form = RolloverForm()
        form.school.choices = _school_choices(schools)
        if request.method == "GET":
            form.school_year.data = school_year_of()
            return self._render_rollover(form)
        if not form.validate_on_submit():
            return self._render_rollover(form, status=400)
        school = next(s for s in schools if s.code == form.school.data)
        year = form.school_year.data.strip()
        try:
            parse_school_year(year)
            if "confirm" in request.form:
                return self._rollover_confirm(form, school, year, user)
            result = rollover(session, school.code, year, actor=user, dry_run=True)
            fingerprint = roster_fingerprint(session, school)
            session.rollback()
        except XinshuError as exc:
            session.rollback()
            form.school_year.errors = [*form.school_year.errors, str(exc)]
            return self._render_rollover(form, status=400)
        form.token.data = _serializer(_ROLLOVER_SALT).dumps({"u": user.id, "s": school.id, "y": year, "f": fingerprint})
        return self._render_rollover(form, result=result, school=school)

    def _rollover_confirm(self, form: RolloverForm, school: OrgUnit, year: str, user: User):
        session = self.db.session
        claims = _claims(form.token.data, _ROLLOVER_SALT)
        expected = {"u": user.id, "s": school.id, "y": year}
        if claims is None or any(claims.get(k) != v for k, v in expected.items()):
            form.school_year.errors = [_("请先试运行（预览），并在30分钟内确认")]
            return self._render_rollover(form, status=400)
        if roster_fingerprint(session, get_school(session, school.code, lock=True)) != claims.get("f"):
            session.rollback()
            form.school_year.errors = [_("该校名册在试运行之后已有变化，请重新试运行")]
            return self._render_rollover(form, status=409)
        try:
            result = rollover(session, school.code, year, actor=user)
            session.commit()
        except Exception:
            session.rollback()
            raise
        log.info("rollover of school id %s to %s by user id %s: %s", school.id, year, user.id, result.as_dict())
        form.token.data = ""
        return self._render_rollover(form, result=result, school=school, done=True)

    # --- transfer

    @expose("/transfer", methods=("GET", "POST"))
    def transfer_view(self):
        """Transfer a student to a class of another school (district and bureau administrators)."""
        user = logged_in_user()
        if not user_roles(user) & set(TRANSFER_ROLES):
            abort(403)
        session = self.db.session
        form = TransferForm()
        if request.method == "GET":
            return self._render_transfer(form)
        if not form.validate_on_submit():
            return self._render_transfer(form, status=400)
        try:
            student = find_student(session, form.student.data)
            to_class = find_class(session, form.to_class.data)
            result = transfer_student(
                session, student, to_class, user, form.reason.data, school_student_no=form.school_student_no.data
            )
            session.commit()
        except (NotFound, TransferDenied) as exc:
            _end_read_transaction(session)  # refused before any change
            if isinstance(exc, TransferDenied):
                audit.record_now(self.db, "update", "roster", "", outcome="denied", detail={"operation": "transfer"})
            return self._transfer_refused(form)
        except XinshuError as exc:
            session.rollback()
            form.reason.errors = [*form.reason.errors, str(exc)]
            return self._render_transfer(form, status=400)
        except Exception:
            session.rollback()
            raise
        log.info("student id %s transferred by user id %s", result.student_id, user.id)
        to_school = session.get(OrgUnit, result.to_school_id)
        return self._render_transfer(
            TransferForm(formdata=None),
            result=result,
            to_school=to_school,
            to_class=session.get(OrgUnit, result.to_class_id),
        )

    def _transfer_refused(self, form: TransferForm):
        """The same answer for a student or class that does not exist and one outside the user's district."""
        form.student.errors = [*form.student.errors, _("找不到该学生或班级，或不在您的管辖范围内")]
        return self._render_transfer(form, status=400)

    # --- rendering

    def _upload_form(self, schools: list[OrgUnit]) -> UploadForm:
        form = UploadForm()
        form.school.choices = _school_choices(schools)
        current = school_year_of()
        following = school_year_label(parse_school_year(current) + 1)
        form.school_year.choices = [("", _("自动（当前学年）")), (current, current), (following, following)]
        return form

    def _render_upload(
        self,
        form: UploadForm,
        schools: list[OrgUnit],
        row_errors: list[RowError] | None = None,
        file_error: str | None = None,
        status: int = 200,
        **context: Any,
    ):
        return self._page(
            "admin/xinshu_roster_upload.html",
            status,
            form=form,
            schools=schools,
            row_errors=row_errors,
            file_error=file_error,
            **context,
        )

    def _render_preview(self, school: OrgUnit, plan: RosterPreview, confirm: ConfirmForm, user: User):
        session = self.db.session
        class_ids = {r.old_class_id for r in plan.rows if r.old_class_id} | {m.class_id for m in plan.missing}
        classes = {}
        if class_ids:
            classes = dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(class_ids))).all())
        page = self._page(
            "admin/xinshu_roster_preview.html",
            school=school,
            plan=plan,
            counts=plan.counts(),
            lists={kind: plan.of_kind(kind) for kind in ("new", "changed", "moved")},
            missing=plan.missing,
            classes=classes,
            class_name=class_name,
            field_labels=FIELD_LABELS,
            show_names=shows_names(user, school),
            confirm=confirm,
            shown_rows=SHOWN_ROWS,
        )
        session.rollback()
        return page

    def _render_rollover(self, form: RolloverForm, status: int = 200, **context: Any):
        return self._page("admin/xinshu_roster_rollover.html", status, form=form, **context)

    def _render_transfer(self, form: TransferForm, status: int = 200, **context: Any):
        return self._page("admin/xinshu_roster_transfer.html", status, form=form, **context)

    def _page(self, template: str, status: int = 200, **context: Any):
        """A rendered page and its status; the tabs show 转学 to those who may transfer."""
        may_transfer = bool(user_roles(logged_in_user()) & set(TRANSFER_ROLES))
        return self.render(template, may_transfer=may_transfer, **context), status

    def _audit_preview(self, school: OrgUnit, plan: RosterPreview) -> None:
        """The preview shows names: its audit row is committed first (503 if it cannot be)."""
        detail = {"operation": "preview", "school_year": plan.school_year, "sha256": plan.digest, **plan.counts()}
        try:
            audit.record_read(self.db, "read", "roster", school.id, detail=detail)
        except audit.AuditUnavailable:
            abort(503)


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    admin.add_view(RosterView(db, name=_l("名册管理"), endpoint="roster", url="/admin/roster"))


# --- command line ----------------------------------------------------------------


@hookimpl
def register_commands(cli: Any) -> None:
    @cli.command("rollover")
    @click.option("--school", "school_code", required=True, help="School org-unit code.")
    @click.option("--year", "school_year", required=True, help="The new school year, e.g. 2027-2028.")
    @click.option("--dry-run", is_flag=True, help="Only count what would change; write nothing.")
    @click.option("--actor", default="cli", show_default=True, help="Who runs it (enrolment history and audit log).")
    @click.option("--database", help="Database URL.")
    def rollover_cmd(school_code: str, school_year: str, dry_run: bool, actor: str, database: str | None) -> None:
        """Move every enrolled student of a school up for a new school year; graduate the last grade."""
        from xinshu.cli import _reporting, _services

        services = _services(DATABASE_URL=database)
        services.db.create_all()
        with _reporting():
            with services.db.transaction() as session:
                result = rollover(session, school_code, school_year, actor=actor, dry_run=dry_run)
            click.echo(json.dumps(result.as_dict(), ensure_ascii=False))

    @cli.command("transfer")
    @click.argument("student_ref")
    @click.option("--to-class", "class_code", required=True, help="Code of the class unit at the new school.")
    @click.option(
        "--actor", required=True, help="Username of a district or bureau administrator covering both schools."
    )
    @click.option("--reason", required=True, help="Why (recorded in the audit log and on moved cases).")
    @click.option("--school-student-no", help="The student's 校内学号 at the new school.")
    @click.option("--database", help="Database URL.")
    def transfer_cmd(
        student_ref: str, class_code: str, actor: str, reason: str, school_student_no: str | None, database: str | None
    ) -> None:
        """Transfer STUDENT_REF (学籍号 or student id) to a class of another school, keeping the history."""
        from xinshu.cli import _reporting, _services

        services = _services(DATABASE_URL=database)
        services.db.create_all()
        with _reporting():
            with services.db.transaction() as session:
                user = session.scalar(select(User).where(User.username == actor))
                if user is None or not user.is_active:
                    raise XinshuError(f"no active user {actor!r}")
                student = find_student(session, student_ref)
                result = transfer_student(
                    session, student, find_class(session, class_code), user, reason, school_student_no=school_student_no
                )
            click.echo(json.dumps(result.as_dict(), ensure_ascii=False))
