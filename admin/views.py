"""Back-office views: login, CSRF and org-unit scoping on every page.

Every view derives from :class:`SecureView`, :class:`SecureIndexView` or
:class:`SecureModelView`, which require a logged-in active user and answer an
anonymous visitor with a redirect to the login page and anyone else who may
not see the page with 403.

:class:`SecureModelView` filters every list, count and single-row lookup of a
scoped model through :func:`xinshu.scoping.scope_query` (deny by default: a
model that is not scoped shows no rows unless the view sets ``unscoped =
True`` and restricts access itself). Its forms carry a CSRF token, the same
token Flask-WTF's ``CSRFProtect`` checks on every POST.

Values shown come from the database and are escaped: column formatters build
HTML only with :class:`markupsafe.Markup` templates, which escape their
arguments. The ID number (身份证号) is never listed, searched, filtered or
shown.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, ClassVar

from flask import abort, flash, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.form import SecureForm
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf, validate_csrf
from sqlalchemy import false, func, select
from wtforms import HiddenField, RadioField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.csrf.core import CSRF
from wtforms.validators import DataRequired, Length, Regexp

from xinshu.admin.formatting import (
    CASE_STATE_LABELS,
    GENDER_LABELS,
    JUDGEMENT_KIND_LABELS,
    NOTIFICATION_STATUS_LABELS,
    ORG_KIND_LABELS,
    ROLE_LABELS,
    TYPE_FORMATTERS,
    WARNING_STATUS_LABELS,
    choices,
    current_services,
    explain_inputs,
    fmt_events,
    fmt_inputs,
    fmt_level,
    fmt_level_history,
    fmt_link,
    fmt_role,
    fmt_roles,
    fmt_scores,
    fmt_tasks,
    level_badge,
    level_text,
    local_time,
)
from xinshu.backtest import activate, backtest, candidate_declarations
from xinshu.errors import DeclarationsInvalid, XinshuError
from xinshu.judgements import judge
from xinshu.models import (
    Case,
    InboxMessage,
    Notification,
    OrgUnit,
    Response,
    RulesetActivation,
    Student,
    User,
)
from xinshu.models import RiskWarning as WarningModel
from xinshu.plugin_manager import list_plugins
from xinshu.scoping import SCOPED_MODELS, scope_query

log = logging.getLogger(__name__)

#: The largest primary key an ``Integer`` column holds on every supported database.
MAX_ID = 2**31 - 1


def logged_in_user() -> User | None:
    """The logged-in active :class:`User`, or None for anonymous visitors."""
    if not current_user or not current_user.is_authenticated or not current_user.is_active:
        return None
    return current_user._get_current_object()


def user_roles(user: User | None) -> set[str]:
    """The roles a user holds at any org unit (empty for None)."""
    return {assignment.role for assignment in user.roles} if user is not None else set()


class _AccessMixin:
    """Login required; ``required_roles`` (any of) narrows a view further."""

    required_roles: tuple[str, ...] = ()

    def is_accessible(self) -> bool:
        """True when a logged-in active user holds one of ``required_roles`` (if any)."""
        user = logged_in_user()
        if user is None:
            return False
        return not self.required_roles or bool(user_roles(user) & set(self.required_roles))

    def inaccessible_callback(self, name: str, **kwargs: Any):
        """Redirect anonymous visitors to the login page; 403 for everyone else."""
        if logged_in_user() is None:
            return redirect(url_for("auth.login", next=_current_path()))
        abort(403)


def _current_path() -> str:
    path = request.full_path
    return path[:-1] if path.endswith("?") else path


# --- CSRF -------------------------------------------------------------------


class FlaskWTFCSRF(CSRF):
    """WTForms CSRF backed by Flask-WTF: one token for the form and ``CSRFProtect``.

    Flask-Admin's :class:`~flask_admin.form.SecureForm` uses WTForms'
    ``SessionCSRF``; both it and ``CSRFProtect`` read the one ``csrf_token``
    field and neither accepts the other's token, so every admin POST would fail.
    """

    def generate_csrf_token(self, csrf_token_field) -> str:
        return generate_csrf()

    def validate_csrf_token(self, form, field) -> None:
        validate_csrf(field.data)  # raises wtforms.ValidationError


class XinshuSecureForm(SecureForm):
    """Flask-Admin's SecureForm with the Flask-WTF token (CSRF on every form and action)."""

    class Meta:
        csrf = True
        csrf_class = FlaskWTFCSRF


# --- base views -------------------------------------------------------------


class SecureView(_AccessMixin, BaseView):
    """A plain back-office page that requires login."""


class SecureIndexView(_AccessMixin, AdminIndexView):
    """The back-office home page; requires login."""

    @expose()
    def index(self):
        return self.render(self._template, role_labels=ROLE_LABELS)


class SecureModelView(_AccessMixin, ModelView):
    """A model view with login, CSRF and org-unit scoping.

    Construct with the :class:`xinshu.db.Database` (or anything with a
    ``.session``) as the second argument. Read-only by default.
    """

    form_base_class = XinshuSecureForm
    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_view_details = True
    column_display_pk = True
    page_size = 50
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS
    #: Show every row of a model that is not in :data:`xinshu.scoping.SCOPED_MODELS`
    #: (the view must then restrict access itself, e.g. with ``required_roles``).
    unscoped = False

    def __init__(self, model: type, db: Any, *args: Any, **kwargs: Any):
        # Flask-Admin only unwraps Flask-SQLAlchemy objects; anything else passed as
        # ``session`` is used directly, so hand it the scoped session. Passing a
        # scoped session is deprecated for Flask-Admin 3.0; the warning is expected.
        session = getattr(db, "session", db)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Passing a session object directly", category=DeprecationWarning)
            super().__init__(model, session, *args, **kwargs)

    def _restrict(self, query):
        """Keep the rows of ``query`` the current user may see (the model needs an ``id``)."""
        if self.model in SCOPED_MODELS:
            visible = scope_query(select(self.model.id), self.model, logged_in_user())
            return query.filter(self.model.id.in_(visible))
        if self.unscoped:
            return query
        return query.filter(false())

    def get_query(self):
        """Rows of the model the current user may see."""
        return self._restrict(self.session.query(self.model))

    def get_count_query(self):
        """Count of the rows :meth:`get_query` returns (before search and filters)."""
        return self._restrict(self.session.query(func.count("*")).select_from(self.model))

    def get_one(self, pk_value: Any):
        """The row with primary key ``pk_value`` if the current user may see it, else None.

        Flask-Admin then answers as for a missing record ("Record does not exist"
        and back to the list), so an out-of-scope id reveals nothing.
        """
        try:
            pk = int(pk_value)
        except (TypeError, ValueError):
            return None
        if not 0 < pk <= MAX_ID:  # an id the database cannot hold is one that does not exist
            return None
        return self.get_query().filter(self.model.id == pk).one_or_none()


# --- model views ------------------------------------------------------------


class OrgUnitView(SecureModelView):
    column_list = ("id", "code", "name", "kind", "parent")
    column_details_list = ("id", "code", "name", "kind", "parent", "path")
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "code": "代码",
        "name": "名称",
        "kind": "类型",
        "parent": "上级",
        "path": "路径",
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"kind": choices(ORG_KIND_LABELS)}
    column_searchable_list = ("code", "name")
    column_filters = ("kind",)
    column_sortable_list = ("id", "code", "name", "kind")
    column_default_sort = "path"


class StudentView(SecureModelView):
    # id_number (身份证号) and student_number (学籍号) are deliberately absent everywhere.
    column_list = ("id", "school", "class_unit", "name", "gender", "grade_level", "school_student_no")
    column_details_list = (
        "id",
        "school",
        "class_unit",
        "name",
        "gender",
        "grade_level",
        "school_student_no",
        "active",
        "created_at",
        "updated_at",
    )
    column_exclude_list = ("id_number", "student_number")
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "school": "学校",
        "class_unit": "班级",
        "name": "姓名",
        "gender": "性别",
        "grade_level": "年级",
        "school_student_no": "校内学号",
        "active": "在籍",
        "created_at": "创建时间",
        "updated_at": "更新时间",
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"gender": choices(GENDER_LABELS)}
    column_searchable_list = ("name", "school_student_no")
    column_filters = ("grade_level", "gender", "active")
    column_sortable_list = ("id", "name", "gender", "grade_level", "school_student_no")


class ResponseView(SecureModelView):
    # The raw answers are not shown; the scores derived from them are.
    column_list = ("id", "student", "instrument_id", "instrument_version", "scores", "source", "submitted_at")
    column_details_list = (
        "id",
        "student",
        "instrument_id",
        "instrument_version",
        "scores",
        "source",
        "batch_id",
        "submitted_at",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "student": "学生",
        "instrument_id": "量表",
        "instrument_version": "量表版本",
        "scores": "得分（分量表=原始分/等级）",
        "source": "来源",
        "batch_id": "导入批次",
        "submitted_at": "提交时间",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"scores": fmt_scores}
    column_filters = ("instrument_id", "source")
    column_sortable_list = ("id", "instrument_id", "submitted_at")
    column_default_sort = ("submitted_at", True)


#: Roles that may confirm, adjust or override a warning's level (where they hold the role).
JUDGE_ROLES = ("psychology_teacher", "principal")


def role_covers(user: User | None, roles: tuple[str, ...], student: Student) -> bool:
    """True when ``user`` holds one of ``roles`` at the student's class or an org unit above it."""
    if user is None or student.class_unit is None:
        return False
    path = student.class_unit.path
    return any(a.role in roles and a.org_unit is not None and path.startswith(a.org_unit.path) for a in user.roles)


class JudgeForm(FlaskForm):
    """A person's level decision: level, kind and a required reason (CSRF token)."""

    level = SelectField("等级", coerce=int)
    kind = RadioField("类型", choices=dict(JUDGEMENT_KIND_LABELS), default="confirm")
    reason = TextAreaField(
        "理由",
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[DataRequired(message="请填写理由"), Length(max=4000, message="理由最多4000字")],
    )
    submit = SubmitField("保存")


class WarningView(SecureModelView):
    column_list = ("id", "student", "student.school", "level", "rule_id", "inputs", "status", "created_at")
    column_details_list = (
        "id",
        "student",
        "response",
        "level",
        "rule_id",
        "ruleset_id",
        "ruleset_version",
        "inputs",
        "status",
        "created_at",
        "acknowledged_at",
        "history",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "student": "学生",
        "student.school": "学校",
        "student.school.name": "学校",
        "response": "答卷",
        "level": "预警等级",
        "rule_id": "规则",
        "ruleset_id": "规则集",
        "ruleset_version": "规则集版本",
        "inputs": "预警依据",
        "status": "状态",
        "created_at": "预警时间",
        "acknowledged_at": "确认时间",
        "history": "等级变化记录",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "inputs": fmt_inputs}
    column_formatters_detail: ClassVar[dict[str, Any]] = {
        "level": fmt_level,
        "inputs": fmt_inputs,
        "history": fmt_level_history,
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"status": choices(WARNING_STATUS_LABELS)}
    column_filters = ("level", "status", "rule_id", "student.school.name")
    column_sortable_list = ("id", "level", "rule_id", "status", "created_at")
    column_default_sort = ("created_at", True)
    details_template = "admin/xinshu_warning_details.html"

    def may_judge(self, warning: WarningModel) -> bool:
        """The current user may confirm, adjust or override this (open) warning's level."""
        return warning.status == "open" and role_covers(logged_in_user(), JUDGE_ROLES, warning.student)

    @expose("/judge/", methods=("GET", "POST"))
    def judge_view(self):
        """确认/调整等级: a psychology teacher or principal decides the level, with a reason."""
        warning = self.get_one(request.args.get("id"))
        if warning is None:
            abort(404)  # missing or out of scope: the same answer
        user = logged_in_user()
        if not role_covers(user, JUDGE_ROLES, warning.student):
            abort(403)
        details_url = self.get_url(".details_view", id=warning.id)
        levels = current_services().declarations.levels.levels
        form = JudgeForm()
        form.level.choices = {str(lv.level): f"{lv.level} {lv.name.get('zh', lv.key)}" for lv in levels}
        if request.method == "GET":
            form.level.data = warning.level
        is_open = warning.status == "open"
        if is_open and form.validate_on_submit():
            if form.kind.data == "confirm" and form.level.data != warning.level:
                form.kind.errors = [*form.kind.errors, "“确认”须保持当前等级；要改变等级请选择“调整”或“人工覆盖”"]
            elif self._record_judgement(warning, user, form):
                flash(f"已记录：{JUDGEMENT_KIND_LABELS[form.kind.data]}为 {level_text(form.level.data)}", "success")
                return redirect(details_url)
        status = 400 if request.method == "POST" else 200
        return (
            self.render(
                "admin/xinshu_judge.html",
                warning=warning,
                form=form,
                is_open=is_open,
                current_level=level_badge(warning.level),
                status_label=WARNING_STATUS_LABELS.get(warning.status, warning.status),
                details_url=details_url,
                history=fmt_level_history(self, None, warning, "history"),
            ),
            status,
        )

    def _record_judgement(self, warning: WarningModel, user: User, form: JudgeForm) -> bool:
        level, kind = form.level.data, form.kind.data
        try:
            judge(self.session, current_services(), warning.student, level, kind, form.reason.data, user.username)
            self.session.commit()
        except XinshuError as exc:
            self.session.rollback()
            form.reason.errors = [*form.reason.errors, f"未能保存：{exc}"]
            return False
        except Exception:
            self.session.rollback()
            raise
        log.info("level judgement on warning %s by user id %s: %s level %s", warning.id, user.id, kind, level)
        return True


class CaseView(SecureModelView):
    column_list = ("id", "student", "school", "state", "level", "template_id", "opened_at")
    column_details_list = (
        "id",
        "student",
        "school",
        "warning",
        "state",
        "level",
        "template_id",
        "template_version",
        "opened_at",
        "closed_at",
        "tasks",
        "events",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "student": "学生",
        "school": "学校",
        "school.name": "学校",
        "warning": "预警",
        "state": "状态",
        "level": "等级",
        "template_id": "干预方案",
        "template_version": "方案版本",
        "opened_at": "立案时间",
        "closed_at": "结案时间",
        "tasks": "方案任务",
        "events": "处置记录",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "tasks": fmt_tasks, "events": fmt_events}
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"state": choices(CASE_STATE_LABELS)}
    column_filters = ("state", "level", "template_id", "school.name")
    column_sortable_list = ("id", "state", "level", "template_id", "opened_at")
    column_default_sort = ("opened_at", True)


class NotificationView(SecureModelView):
    column_list = ("id", "channel", "role", "org_unit", "level", "status", "attempts", "last_error", "sent_at")
    column_details_list = (
        "id",
        "warning_id",
        "case_id",
        "channel",
        "role",
        "org_unit",
        "level",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "sent_at",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "warning_id": "预警",
        "case_id": "个案",
        "channel": "渠道",
        "role": "接收角色",
        "org_unit": "接收单位",
        "level": "等级",
        "status": "状态",
        "attempts": "尝试次数",
        "next_attempt_at": "下次尝试",
        "last_error": "最近错误",
        "created_at": "创建时间",
        "sent_at": "发送时间",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "role": fmt_role}
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"status": choices(NOTIFICATION_STATUS_LABELS)}
    column_filters = ("status", "channel", "level")
    column_sortable_list = ("id", "channel", "level", "status", "attempts", "sent_at")
    column_default_sort = ("id", True)


class InboxMessageView(SecureModelView):
    column_list = ("id", "subject", "role", "org_unit", "level", "created_at", "read_at")
    column_details_list = ("id", "subject", "body", "link", "role", "org_unit", "level", "created_at", "read_at")
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "subject": "主题",
        "body": "内容",
        "link": "链接",
        "role": "接收角色",
        "org_unit": "接收单位",
        "level": "等级",
        "created_at": "收到时间",
        "read_at": "阅读时间",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "role": fmt_role, "link": fmt_link}
    column_filters = ("level",)
    column_sortable_list = ("id", "level", "created_at")
    column_default_sort = ("created_at", True)


class UserView(SecureModelView):
    """Staff accounts, for the bureau administrator only; never the password hash."""

    required_roles = ("bureau_admin",)
    unscoped = True
    column_list = ("id", "username", "display_name", "email", "active", "roles", "created_at")
    column_details_list = column_list
    column_exclude_list = ("password_hash",)
    column_labels: ClassVar[dict[str, str]] = {
        "id": "编号",
        "username": "用户名",
        "display_name": "姓名",
        "email": "电子邮箱",
        "active": "启用",
        "roles": "角色",
        "created_at": "创建时间",
    }
    column_formatters: ClassVar[dict[str, Any]] = {"roles": fmt_roles}
    column_searchable_list = ("username",)
    column_filters = ("active",)
    column_sortable_list = ("id", "username", "active", "created_at")


# --- plain pages ------------------------------------------------------------


class PluginsView(SecureView):
    """Lists the registered plugins: name, distribution, version and hooks."""

    @expose("/")
    def index(self):
        return self.render("admin/xinshu_plugins.html", plugins=list_plugins(current_services().pm))


class DeclarationsView(SecureView):
    """Lists the active declarations: instruments, levels, rules, templates."""

    @expose("/")
    def index(self):
        return self.render("admin/xinshu_declarations.html", decl=current_services().declarations)


#: A candidate alert-rule file name: no directories, no leading dot.
RULE_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.yaml$"
MAX_CANDIDATE_CHARS = 200_000
SHOWN_CHANGES = 200


class CandidateRulesForm(FlaskForm):
    """A pasted candidate alert-rule file; the back-test, then activation with a reason."""

    filename = StringField(
        "文件名",
        default="phq9.yaml",
        validators=[
            DataRequired(message="请填写文件名"),
            Regexp(RULE_FILE_NAME, message="文件名只能含字母、数字、._-，以 .yaml 结尾，例如 phq9.yaml"),
        ],
    )
    text = TextAreaField(
        "候选规则（YAML）",
        validators=[
            DataRequired(message="请粘贴候选规则文件内容"),
            Length(max=MAX_CANDIDATE_CHARS, message=f"内容过长（最多{MAX_CANDIDATE_CHARS}字符）"),
        ],
    )
    reason = TextAreaField("激活理由", validators=[Length(max=4000, message="理由最多4000字")])
    reviewed = HiddenField()
    active_digest = HiddenField()
    run = SubmitField("回测")
    activate = SubmitField("激活")


def _candidate_digest(filename: str, text: str) -> str:
    return hashlib.sha256(f"{filename}\0{text}".encode()).hexdigest()


class RulesBacktestView(SecureView):
    """规则回测: back-test a pasted candidate alert-rule file on the stored data,
    then activate it with a reason (bureau administrator only)."""

    required_roles = ("bureau_admin",)

    @expose("/", methods=("GET", "POST"))
    def index(self):
        services = current_services()
        session = services.db.session
        form = CandidateRulesForm()
        context: dict[str, Any] = {"decl_errors": None, "result": None, "record": None}
        if form.validate_on_submit():
            filename = form.filename.data.strip()
            text = form.text.data.replace("\r\n", "\n")
            digest = _candidate_digest(filename, text)
            context["replaces"] = (services.store.roots[0] / "rules" / "alerts" / filename).is_file()
            if form.activate.data:
                context.update(self._activate(form, filename, text, digest))
            else:
                context.update(self._backtest(filename, text))
                reviewed = context["result"] is not None
                form.reviewed.data = digest if reviewed else ""
                form.active_digest.data = services.declarations.digest if reviewed else ""
        elif request.method == "POST":
            context["status"] = 400
        status = context.pop("status", 200)
        activations = session.scalars(
            select(RulesetActivation).order_by(RulesetActivation.activated_at.desc(), RulesetActivation.id.desc())
        ).all()
        return (
            self.render(
                "admin/xinshu_rules_backtest.html",
                form=form,
                activations=activations,
                level_text=level_text,
                local_time=local_time,
                **context,
            ),
            status,
        )

    def _backtest(self, filename: str, text: str) -> dict[str, Any]:
        """Validate and back-test the candidate: ``decl_errors``, or ``result`` and ``changed``."""
        services = current_services()
        with tempfile.TemporaryDirectory(prefix="xinshu-upload-") as tmp:
            path = Path(tmp) / filename
            path.write_text(text, encoding="utf-8")
            try:
                candidate, root = candidate_declarations(services, path)
            except DeclarationsInvalid as exc:
                return {"decl_errors": [str(error) for error in exc.errors], "status": 400}
            except XinshuError as exc:
                return {"decl_errors": [str(exc)], "status": 400}
            try:
                result = backtest(services.db.session, services.declarations, candidate)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        summary = result.as_dict()
        return {"result": summary, "changed": self._visible_changes(summary["students_changed"])}

    def _activate(self, form: CandidateRulesForm, filename: str, text: str, digest: str) -> dict[str, Any]:
        """Activate the back-tested candidate, if it is unchanged and a reason is given."""
        services = current_services()
        session = services.db.session
        reason = (form.reason.data or "").strip()
        if form.reviewed.data != digest:
            form.text.errors = [*form.text.errors, "内容与回测时不同，请先重新回测"]
        elif form.active_digest.data != services.declarations.digest:
            form.text.errors = [*form.text.errors, "回测后现行规则已变更，请重新回测"]
        if not reason:
            form.reason.errors = [*form.reason.errors, "激活须填写理由"]
        if form.text.errors or form.reason.errors:
            context = self._backtest(filename, text) if not form.text.errors else {}
            return {**context, "status": 400}
        user = logged_in_user()
        with tempfile.TemporaryDirectory(prefix="xinshu-upload-") as tmp:
            path = Path(tmp) / filename
            path.write_text(text, encoding="utf-8")
            try:
                record, result = activate(session, services, path, user.username, reason)
                session.commit()
            except DeclarationsInvalid as exc:
                session.rollback()
                return {"decl_errors": [str(error) for error in exc.errors], "status": 400}
            except Exception:
                session.rollback()
                raise
        log.info(
            "alert rules activated by user id %s: activation %s, digest %s, %s students change level",
            user.id,
            record.id,
            record.digest[:12],
            len(result.changed),
        )
        form.reviewed.data = ""
        summary = result.as_dict()
        return {"record": record, "result": summary, "changed": self._visible_changes(summary["students_changed"])}

    def _visible_changes(self, changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The first :data:`SHOWN_CHANGES` changed students the user may see (scoped)."""
        session = current_services().db.session
        user = logged_in_user()
        shown: list[dict[str, Any]] = []
        for start in range(0, len(changed), 900):
            chunk = changed[start : start + 900]
            ids = [row["student_id"] for row in chunk]
            visible = set(session.scalars(scope_query(select(Student.id).where(Student.id.in_(ids)), Student, user)))
            shown += [row for row in chunk if row["student_id"] in visible]
            if len(shown) >= SHOWN_CHANGES:
                break
        return shown[:SHOWN_CHANGES]


def build_views(db: Any) -> list[BaseView]:
    """The built-in back-office views, in menu order."""
    return [
        OrgUnitView(OrgUnit, db, name="组织机构", endpoint="orgunit"),
        StudentView(Student, db, name="学生", endpoint="student"),
        ResponseView(Response, db, name="答卷", endpoint="response"),
        WarningView(WarningModel, db, name="预警", endpoint="warning"),
        CaseView(Case, db, name="个案", endpoint="case"),
        NotificationView(Notification, db, name="通知", endpoint="notification"),
        InboxMessageView(InboxMessage, db, name="收件箱", endpoint="inbox"),
        UserView(User, db, name="用户", endpoint="user"),
        PluginsView(name="插件 Plugins", endpoint="plugins"),
        DeclarationsView(name="声明 Declarations", endpoint="declarations"),
        RulesBacktestView(name="规则回测", endpoint="rules"),
    ]


__all__ = [
    "SecureIndexView",
    "SecureModelView",
    "SecureView",
    "XinshuSecureForm",
    "build_views",
    "explain_inputs",
    "level_badge",
    "local_time",
]
