"""Model views of students (学生) and responses (答卷).

Students and responses are scoped by :func:`xinshu.scoping.scope_query`
and what a page shows of one student follows the capabilities of
:mod:`xinshu.permissions` (minimum-necessary disclosure, security.md A6): a
value the user may not see is replaced by "（无权查看）". Reads of these
records are audited before they are shown; lists and exports too.

The ID number (身份证号) and the national student number (全国学籍号) are never
listed, searched, filtered, shown or exported (A10); raw import cells are never
shown.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flask import abort, flash, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import SelectField, StringField
from wtforms.validators import StopValidation

from xinshu.admin.access import (
    audit_read,
    guarded,
    logged_in_user,
    may,
    role_covers,
    student_access,
    user_roles,
)
from xinshu.admin.base import SecureModelView, XinshuSecureForm, parse_id
from xinshu.admin.exporting import ExportColumn, ExportMixin, text_time
from xinshu.admin.formatting import (
    CASE_STATE_LABELS,
    GENDER_LABELS,
    choices,
    fmt_scores,
    level_text,
    local_time,
    scores_text,
    select_choices,
)
from xinshu.audit import record
from xinshu.grades import parse_grade
from xinshu.models import OPEN_CASE_STATES, Case, OrgUnit, Response, Student
from xinshu.models import RiskWarning as WarningModel
from xinshu.roster_fields import FieldError, parse_name

#: Roles that correct a student's name, gender and class (where they hold the role).
STUDENT_EDITOR_ROLES = ("principal", "moral_education_director", "psychology_teacher")
#: The longest name ``parse_name`` accepts (the form's maxlength; the server checks with parse_name).
MAX_NAME_LENGTH = 50
STATUS_LABELS = {"enrolled": _l("在读"), "graduated": _l("毕业"), "left": _l("离校"), "erased": _l("已删除")}


class RosterName:
    """WTForms validator: a student's name by the roster import's rules (``xinshu.roster_fields.parse_name``:
    required, at most 50 characters, no formula, no control or invisible characters).

    The field's data becomes the cleaned name (NFKC, trimmed). The message is translated when the form is
    validated, a plain ``str``: Flask-Admin's field template shows only ``str`` errors, not lazy strings.
    """

    field_flags: ClassVar[dict[str, bool]] = {"required": True}

    def __call__(self, form: Any, field: Any) -> None:
        try:
            field.data = parse_name(field.data)
        except FieldError as exc:
            raise StopValidation(str(exc)) from None


class StudentEditForm(XinshuSecureForm):
    """The only student fields editable in the back office (security.md A8, A9)."""

    name = StringField(_l("姓名"), validators=[RosterName()], render_kw={"maxlength": MAX_NAME_LENGTH})
    gender = SelectField(_l("性别"), choices=select_choices(GENDER_LABELS))
    class_id = SelectField(_l("班级"), coerce=int)


class StudentView(ExportMixin, SecureModelView):
    """学生: the roster within the user's scope; school roles correct name, gender and class."""

    audit_type = "student"
    details_template = "admin/xinshu_student_details.html"
    # id_number (身份证号) and student_number (学籍号) are deliberately absent everywhere.
    column_list = ("id", "school", "class_unit", "name", "gender", "grade_level", "school_student_no")
    column_details_list = ("id", "school", "class_unit", "name", "gender", "grade_level", "school_student_no",
                           "status", "created_at", "updated_at")  # fmt: skip
    column_exclude_list = ("id_number", "student_number", "birth_date")
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "school": _l("学校"),
        "class_unit": _l("班级"),
        "name": _l("姓名"),
        "gender": _l("性别"),
        "grade_level": _l("年级"),
        "school_student_no": _l("校内学号"),
        "status": _l("学籍状态"),
        "created_at": _l("创建时间"),
        "updated_at": _l("更新时间"),
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {
        "gender": choices(GENDER_LABELS),
        "status": choices(STATUS_LABELS),
    }
    column_searchable_list = ("name", "school_student_no")
    column_filters = ("grade_level", "gender", "status")
    column_sortable_list = ("id", "name", "gender", "grade_level", "school_student_no")
    form = StudentEditForm
    form_columns = ("name", "gender", "class_id")
    export_spec = (
        ExportColumn(_l("学生编号"), lambda s: s.id, "student"),
        ExportColumn(_l("学校"), lambda s: s.school.name),
        ExportColumn(_l("班级"), lambda s: s.class_unit.name, "identifier"),
        ExportColumn(_l("姓名"), lambda s: s.name, "identifier"),
        ExportColumn(_l("校内学号"), lambda s: s.school_student_no, "identifier"),
        ExportColumn(_l("性别"), lambda s: GENDER_LABELS.get(s.gender, s.gender)),
        ExportColumn(_l("年级"), lambda s: s.grade_level),
        ExportColumn(_l("学籍状态"), lambda s: STATUS_LABELS.get(s.status, s.status)),
    )
    export_load_options = (selectinload(Student.school), selectinload(Student.class_unit))

    def export_student_column(self):
        return Student.id

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return bool(user_roles(logged_in_user()) & set(STUDENT_EDITOR_ROLES))

    def may_edit(self, student: Student) -> bool:
        """The current user holds an editor role over the student's class."""
        return role_covers(logged_in_user(), STUDENT_EDITOR_ROLES, student)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        """Edit name, gender and class; 403 for a visible student the user may not edit."""
        student = self.get_one(request.args.get("id"))
        if student is not None:
            if not self.may_edit(student):
                abort(403)
            if request.method == "GET":
                audit_read("read", "student", student.id, page="edit")
        return super().edit_view()

    def edit_form(self, obj: Student | None = None):
        form = super().edit_form(obj)
        form.class_id.choices = {unit.id: unit.name for unit in self.class_choices(obj)} if obj else {}
        return form

    def class_choices(self, student: Student) -> list[OrgUnit]:
        """Classes of the student's school and grade under an org unit where the user may edit."""
        user = logged_in_user()
        prefixes = [a.org_unit.path for a in user.roles if a.role in STUDENT_EDITOR_ROLES and a.org_unit is not None]
        stmt = select(OrgUnit).where(OrgUnit.kind == "class", OrgUnit.path.startswith(student.school.path))
        units = []
        for unit in self.session.scalars(stmt.order_by(OrgUnit.code, OrgUnit.id)):
            if not any(unit.path.startswith(prefix) for prefix in prefixes):
                continue
            if _grade_of(unit) == student.grade_level:
                units.append(unit)
        return units

    def update_model(self, form, model: Student) -> bool:
        """Apply the three editable fields, audited (field names and class ids only)."""
        if not self.may_edit(model):
            flash(_("只能修改本人负责范围内的学生"), "error")
            return False
        if form.class_id.data not in {unit.id for unit in self.class_choices(model)}:
            flash(_("只能调到本校同年级、本人负责范围内的班级"), "error")
            return False
        changed = [f for f in ("name", "gender", "class_id") if getattr(model, f) != getattr(form, f).data]
        detail: dict[str, Any] = {"changed": changed}
        if "class_id" in changed:
            detail["class_id"] = {"before": model.class_id, "after": form.class_id.data}
        model.name, model.gender, model.class_id = form.name.data, form.gender.data, form.class_id.data
        record(self.session, "update", "student", model.id, detail=detail)
        try:
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        return True

    def student_summary(self, student: Student) -> dict[str, Any]:
        """What the details page shows beyond the roster fields, per the user's capabilities."""
        access = student_access(student)
        warning = self.session.scalar(
            select(WarningModel)
            .where(WarningModel.student_id == student.id, WarningModel.status == "open")
            .order_by(WarningModel.id.desc())
            .limit(1)
        )
        case = self.session.scalar(
            select(Case)
            .where(Case.student_id == student.id, Case.state.in_(OPEN_CASE_STATES))
            .order_by(Case.id.desc())
            .limit(1)
        )
        responses = []
        if "results" in access:
            stmt = select(Response).where(Response.student_id == student.id).order_by(Response.submitted_at.desc())
            responses = list(self.session.scalars(stmt.limit(50)))
        return {
            "access": access,
            "warning": warning if "level" in access else None,
            "case": case if "level" in access else None,
            "tasks": visible_tasks(case, access) if case is not None else [],
            "responses": responses,
            "scores_text": scores_text,
            "level_text": level_text,
            "local_time": local_time,
            "state_labels": CASE_STATE_LABELS,
        }


def _grade_of(unit: OrgUnit) -> int | None:
    try:
        return parse_grade(unit.parent.name) if unit.parent is not None else None
    except ValueError:
        return None


def visible_tasks(case: Case, access) -> list:
    """The case's open tasks the user may see: all with ``plan``; with ``actions`` those
    owned by a role the user holds over the student (the suggested actions)."""
    tasks = sorted((t for t in case.tasks if t.status == "open"), key=lambda t: (t.due_at, t.id))
    if "plan" in access:
        return tasks
    if "actions" in access:
        return [t for t in tasks if t.owner_role in access.roles]
    return []


def fmt_answers(view, context, model: Response, name: str) -> Markup:
    """The item answers as a table (never the raw import cells)."""
    rows = Markup("").join(
        Markup("<tr><td>{}</td><td>{}</td></tr>").format(item, value) for item, value in sorted(model.answers.items())
    )
    return Markup('<table class="table table-sm table-bordered mb-0" id="answers">{}</table>').format(rows)


class ResponseView(ExportMixin, SecureModelView):
    """答卷: scores for those who may see results; item answers with ``answers``."""

    audit_type = "response"
    audit_list = True
    details_template = "admin/xinshu_response_details.html"
    column_list = ("id", "student", "instrument_id", "instrument_version", "scores", "source", "submitted_at")
    column_details_list = ("id", "student", "instrument_id", "instrument_version", "scores", "answers", "source",
                           "batch_id", "submitted_at")  # fmt: skip
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "student": _l("学生"),
        "instrument_id": _l("量表"),
        "instrument_version": _l("量表版本"),
        "scores": _l("得分（分量表=原始分/等级）"),
        "answers": _l("逐题作答"),
        "source": _l("来源"),
        "batch_id": _l("导入批次"),
        "submitted_at": _l("提交时间"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {"scores": guarded("results", fmt_scores)}
    column_formatters_detail: ClassVar[dict[str, Any]] = {
        "scores": guarded("results", fmt_scores),
        "answers": guarded("answers", fmt_answers),
    }
    column_filters = ("instrument_id", "source")
    column_sortable_list = ("id", "instrument_id", "submitted_at")
    column_default_sort = ("submitted_at", True)
    export_spec = (
        ExportColumn(_l("答卷编号"), lambda r: r.id),
        ExportColumn(_l("学生编号"), lambda r: r.student_id, "student"),
        ExportColumn(_l("姓名"), lambda r: r.student.name, "identifier"),
        ExportColumn(_l("学校"), lambda r: r.student.school.name),
        ExportColumn(_l("量表"), lambda r: r.instrument_id),
        ExportColumn(_l("量表版本"), lambda r: r.instrument_version),
        ExportColumn(_l("得分"), lambda r: scores_text(r)),
        ExportColumn(_l("提交时间"), lambda r: text_time(r.submitted_at)),
    )
    export_load_options = (selectinload(Response.scores), selectinload(Response.student).selectinload(Student.school))

    def get_one(self, pk_value: Any):
        """A response the user may see through a role, or through an active break-glass for its student."""
        row = super().get_one(pk_value)
        pk = parse_id(pk_value)
        if row is None and pk is not None:
            candidate = self.session.get(Response, pk)
            if candidate is not None and may(candidate.student, "results"):
                return candidate
        return row

    def break_glass_offer(self, response: Response):
        """What a break-glass reason would add on this page (for the template)."""
        return student_access(response.student).break_glass


__all__ = [
    "STUDENT_EDITOR_ROLES",
    "ResponseView",
    "StudentEditForm",
    "StudentView",
    "visible_tasks",
]
