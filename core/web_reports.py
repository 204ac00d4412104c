"""Quick reports from the phone (班主任快速上报), and parents' reports entered by school staff.

The ``reports`` blueprint: ``/report/`` is a class teacher's quick report
(source ``teacher``), ``/report/parent`` a parent's report entered by school
staff (source ``parent``, with how the parent was reached). Both need a
logged-in user holding one of :data:`REPORT_ROLES`; anyone else gets 403.

The student list comes from :func:`xinshu.scoping.scope_query`, narrowed to the
org units where the user holds a reporting role, and the posted student id is
looked up again through the same query, so an id outside that scope is refused
like an unknown one. A report is recorded with :func:`xinshu.judgements.add_report`
(which re-evaluates the student) and committed; the confirmation page (after a
redirect, so reloading it does not report twice) says only whether a warning
opened or rose, and at which level. Logs carry ids, never names.

Both pages list students by name and the confirmation shows a warning level:
each is audited (:func:`xinshu.admin.access.audit_read`) before it is
rendered, and answered 503 when the audit row cannot be written (security.md
I1, I4).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask import session as web_session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError
from sqlalchemy import Select, false, or_, select
from sqlalchemy.orm import aliased, joinedload
from wtforms import SelectField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import Length, Optional, ValidationError

from xinshu.admin import TEMPLATE_DIR
from xinshu.admin.views import MAX_ID, audit_read
from xinshu.errors import XinshuError
from xinshu.judgements import add_report, report_categories
from xinshu.models import OrgUnit, Student, User
from xinshu.scoping import scope_query

log = logging.getLogger(__name__)

bp = Blueprint("reports", __name__, url_prefix="/report", template_folder=str(TEMPLATE_DIR))

#: Roles that may file a report (at the org units where they hold the role).
REPORT_ROLES = ("class_teacher", "psychology_teacher", "moral_education_director", "principal")
CATEGORY_LABELS = {
    "self_harm_talk": _l("谈及自伤/自杀/死亡"),
    "behaviour_change": _l("行为突然改变"),
    "bullying": _l("欺凌"),
    "family_crisis": _l("家庭变故"),
    "loss": _l("丧失/哀伤"),
    "withdrawal": _l("退缩孤僻"),
    "sleep_appetite": _l("睡眠/饮食异常"),
    "other": _l("其他"),
}
SOURCE_TITLES = {"teacher": _l("班主任快速上报"), "parent": _l("家长反映情况录入")}
#: Starts the note of a parent's report: stored text, not translated.
CONTACT_PREFIX = "家长联系方式/沟通方式："
_DONE_KEY = "xinshu_report_done"


def _int_or_none(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


class QuickReportForm(FlaskForm):
    """Student (from the user's scope), categories, an optional note; CSRF token."""

    student = SelectField(_l("学生"), coerce=_int_or_none, validate_choice=False)
    categories = SelectMultipleField(_l("情况（可多选）"), validate_choice=False)
    note = TextAreaField(
        _l("补充说明（选填）"), validators=[Optional(), Length(max=2000, message=_l("补充说明最多2000字"))]
    )
    submit = SubmitField(_l("提交报告"))

    def __init__(self, *args: Any, reporter: User, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reporter = reporter
        self.student_row: Student | None = None

    def validate_student(self, field) -> None:
        if field.data is None:
            raise ValidationError(_("请选择学生"))
        stmt = reportable_students(self.reporter).where(Student.id == field.data)
        self.student_row = current_services().db.session.scalar(stmt)
        if self.student_row is None:
            raise ValidationError(_("只能为您负责范围内的学生上报，请从列表中选择"))

    def validate_categories(self, field) -> None:
        known = report_categories()
        if not field.data:
            raise ValidationError(_("请至少选择一项情况"))
        if any(value not in known for value in field.data):
            raise ValidationError(_("情况类别无效，请从列表中选择"))


class ParentReportForm(QuickReportForm):
    """The quick report plus how the parent was reached (put into the note)."""

    contact = StringField(
        _l("家长联系方式/沟通方式"),
        validators=[Optional(), Length(max=200, message=_l("最多200字"))],
        description=_l("例如：电话、家访、微信；家长称谓及电话"),
    )


def current_services():
    return current_app.extensions["xinshu"]


def _report_prefixes(user: User) -> list[str]:
    return sorted({a.org_unit.path for a in user.roles if a.role in REPORT_ROLES and a.org_unit is not None})


def reportable_students(user: User) -> Select:
    """Active students the user may report on: in scope (:func:`scope_query`) and
    under an org unit where the user holds one of :data:`REPORT_ROLES`."""
    unit = aliased(OrgUnit)
    prefixes = _report_prefixes(user)
    stmt = select(Student).join(unit, unit.id == Student.class_id).where(Student.active.is_(True))
    stmt = stmt.where(or_(*[unit.path.startswith(p, autoescape=True) for p in prefixes]) if prefixes else false())
    return scope_query(stmt, Student, user)


def student_groups(user: User) -> list[tuple[str, list[tuple[int, str]]]]:
    """The reportable students grouped by class (school and class when the user
    covers several schools), each shown as "class name", in roster order."""
    stmt = reportable_students(user).options(joinedload(Student.class_unit), joinedload(Student.school))
    students = list(current_services().db.session.scalars(stmt))
    several_schools = len({s.school_id for s in students}) > 1
    students.sort(key=_roster_order)
    names: dict[tuple[int, str], int] = {}
    for s in students:
        names[(s.class_id, s.name)] = names.get((s.class_id, s.name), 0) + 1
    groups: dict[tuple[int, int], tuple[str, list[tuple[int, str]]]] = {}
    for s in students:
        klass = f"{s.school.name} {s.class_unit.name}" if several_schools else s.class_unit.name
        label = f"{s.class_unit.name} {s.name}"
        if names[(s.class_id, s.name)] > 1 and s.school_student_no:
            label += _("（学号 %(number)s）", number=s.school_student_no)
        groups.setdefault((s.school_id, s.class_id), (klass, []))[1].append((s.id, label))
    return list(groups.values())


def _roster_order(s: Student) -> tuple:
    number = s.school_student_no or ""
    return (s.school.name, s.school_id, s.class_unit.name, s.class_id, len(number), number, s.name)


@bp.app_template_global("may_report")
def _may_report(user: User) -> bool:
    """The user holds a role that may file reports (a template global for the back-office home)."""
    return bool(getattr(user, "is_authenticated", False)) and any(a.role in REPORT_ROLES for a in user.roles)


def _reporter() -> User:
    user = current_user._get_current_object()
    if not _may_report(user):
        abort(403)
    return user


def _level_name(level: int) -> str:
    try:
        return current_services().declarations.levels.get(level).name.get("zh", str(level))
    except KeyError:
        return ""


@bp.route("/", methods=["GET", "POST"])
@login_required
def teacher_report():
    """A class teacher's quick report (source ``teacher``)."""
    return _report_page("teacher", QuickReportForm)


@bp.route("/parent", methods=["GET", "POST"])
@login_required
def parent_report():
    """A parent's report entered by school staff (source ``parent``)."""
    return _report_page("parent", ParentReportForm)


def _report_page(source: str, form_class: type[QuickReportForm]):
    user = _reporter()
    form = form_class(reporter=user)
    error = None
    if form.validate_on_submit():
        note = (form.note.data or "").strip()
        contact_field = getattr(form, "contact", None)
        contact = (contact_field.data or "").strip() if contact_field is not None else ""
        if contact:
            note = f"{CONTACT_PREFIX}{contact}" + (f"\n{note}" if note else "")
        categories = list(dict.fromkeys(form.categories.data))
        result = _record(user, form.student_row, source, categories, note)
        if result is not None:
            web_session[_DONE_KEY] = result
            return redirect(url_for("reports.done"))
        error = _("提交失败，请检查所填内容后重试")
    status = 400 if request.method == "POST" else 200  # a POST that gets here was refused
    groups = student_groups(user)
    audit_read("read", "student", "", page=f"report_{source}", students=sum(len(g[1]) for g in groups))
    return (
        render_template(
            "admin/xinshu_report.html",
            form=form,
            source=source,
            title=SOURCE_TITLES[source],
            groups=groups,
            category_choices=[(c, CATEGORY_LABELS.get(c, c)) for c in report_categories()],
            error=error,
        ),
        status,
    )


def _record(user: User, student: Student, source: str, categories: list[str], note: str) -> dict | None:
    """Add the report and commit; what the confirmation page shows, or None on a refused report."""
    services = current_services()
    session = services.db.session
    try:
        report, change = add_report(
            session, services, student, source, categories, reported_by=user.username, note=note
        )
        session.commit()
    except XinshuError as exc:
        session.rollback()
        log.warning("report refused for student id %s by user id %s: %s", student.id, user.id, exc)
        return None
    except Exception:
        session.rollback()
        raise
    event = "opened" if change.opened else "raised" if change.raised else None
    level = change.warning.level if event and change.warning is not None else None
    log.info(
        "report %s (%s) for student id %s by user id %s; warning %s %s",
        report.id,
        source,
        student.id,
        user.id,
        change.warning.id if change.warning is not None else "-",
        f"{event} at level {level}" if event else "unchanged",
    )
    warning_id = change.warning.id if event and change.warning is not None else None
    return {"source": source, "event": event, "level": level, "warning_id": warning_id}


@bp.route("/done")
@login_required
def done():
    """The confirmation after a report (once; reloading goes back to the form)."""
    _reporter()
    result: Mapping[str, Any] | None = web_session.pop(_DONE_KEY, None)
    if not result:
        return redirect(url_for("reports.teacher_report"))
    level = result.get("level")
    source = result.get("source") if result.get("source") in SOURCE_TITLES else "teacher"
    audit_read("read", "warning", result.get("warning_id") or "", page="report_done")
    return render_template(
        "admin/xinshu_report_done.html",
        title=_("报告已提交"),
        source=source,
        event=result.get("event"),
        level=level,
        level_name=_level_name(level) if level else "",
        again_url=url_for("reports.parent_report" if source == "parent" else "reports.teacher_report"),
    )


@bp.errorhandler(CSRFError)
def csrf_error(_exc: CSRFError):
    """A missing or expired CSRF token (e.g. the page was left open too long): 400, in Chinese."""
    message = _("页面已过期或提交无效，未保存任何内容。请重新打开页面后再提交。")
    return render_template("admin/xinshu_report_error.html", title=_("提交未成功"), message=message), 400
