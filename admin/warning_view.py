"""预警: warnings within the user's scope, the level judgement page and the acknowledge action.

Everyone who sees a student's warning sees its level and status; the fired
rules and the values they read are results (``results``), the reasons people
gave for a level are notes (``notes``) — see :mod:`xinshu.permissions`. A
psychology teacher or principal over the student's class confirms, adjusts or
overrides the level (``/judge/``, with a reason). The bulk action 确认接手
records that the user has taken the selected warnings on (escalation stops);
its form carries the CSRF token like every admin form.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_admin.actions import action
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy.orm import selectinload
from wtforms import RadioField, SelectField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length

from xinshu.admin.access import (
    audit_read,
    fmt_student,
    guarded,
    logged_in_user,
    may,
    role_covers,
    student_access,
    user_roles,
)
from xinshu.admin.base import SecureModelView, parse_id
from xinshu.admin.exporting import ExportColumn, ExportMixin, text_time
from xinshu.admin.formatting import (
    JUDGEMENT_KIND_LABELS,
    WARNING_STATUS_LABELS,
    choices,
    current_services,
    fmt_inputs,
    fmt_level,
    fmt_level_history,
    level_badge,
    level_text,
    select_choices,
)
from xinshu.audit import record
from xinshu.errors import XinshuError
from xinshu.escalation import acknowledge
from xinshu.judgements import judge
from xinshu.models import RiskWarning as WarningModel
from xinshu.models import Student, User, utcnow

log = logging.getLogger(__name__)

#: Roles that may confirm, adjust or override a warning's level (where they hold the role).
JUDGE_ROLES = ("psychology_teacher", "principal")
#: Roles that may acknowledge (take on) a warning they see.
ACK_ROLES = ("psychology_teacher", "principal", "moral_education_director", "district_admin", "bureau_admin")
ESCALATION_LABELS = {"school": _l("学校"), "district": _l("区"), "city": _l("市")}
#: Most warnings one bulk action handles.
MAX_ACTION_ROWS = 500


class JudgeForm(FlaskForm):
    """A person's level decision: level, kind and a required reason (CSRF token)."""

    level = SelectField(_l("等级"), coerce=int)
    kind = RadioField(_l("类型"), choices=select_choices(JUDGEMENT_KIND_LABELS), default="confirm")
    reason = TextAreaField(
        _l("理由"),
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[DataRequired(message=_l("请填写理由")), Length(max=4000, message=_l("理由最多4000字"))],
    )
    submit = SubmitField(_l("保存"))


def fmt_history(view, context, model: WarningModel, name: str):
    return fmt_level_history(view, context, model, name, show_reasons=may(model.student, "notes"))


class WarningView(ExportMixin, SecureModelView):
    """预警 list and details, the judgement page and the acknowledge action."""

    audit_type = "warning"
    audit_list = True
    column_list = ("id", "student", "student.school", "level", "status", "escalated_to", "inputs", "created_at")
    column_details_list = ("id", "student", "response", "level", "status", "escalated_to", "rule_id", "ruleset_id",
                           "ruleset_version", "inputs", "created_at", "acknowledged_at", "history")  # fmt: skip
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "student": _l("学生"),
        "student.school": _l("学校"),
        "student.school.name": _l("学校"),
        "response": _l("答卷"),
        "level": _l("预警等级"),
        "rule_id": _l("规则"),
        "ruleset_id": _l("规则集"),
        "ruleset_version": _l("规则集版本"),
        "inputs": _l("预警依据"),
        "status": _l("状态"),
        "escalated_to": _l("责任层级"),
        "created_at": _l("预警时间"),
        "acknowledged_at": _l("确认时间"),
        "history": _l("等级变化记录"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {
        "student": fmt_student,
        "level": fmt_level,
        "inputs": guarded("results", fmt_inputs),
    }
    column_formatters_detail: ClassVar[dict[str, Any]] = {
        "student": fmt_student,
        "level": fmt_level,
        "response": guarded("results"),
        "rule_id": guarded("results"),
        "ruleset_id": guarded("results"),
        "ruleset_version": guarded("results"),
        "inputs": guarded("results", fmt_inputs),
        "history": guarded("results", fmt_history),
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {
        "status": choices(WARNING_STATUS_LABELS),
        "escalated_to": choices(ESCALATION_LABELS),
    }
    # No filter or sort by rule: it would tell a class teacher which answers fired.
    column_filters = ("level", "status", "escalated_to", "student.school.name")
    column_sortable_list = ("id", "level", "status", "created_at")
    column_default_sort = ("created_at", True)
    details_template = "admin/xinshu_warning_details.html"
    export_spec = (
        ExportColumn(_l("预警编号"), lambda w: w.id),
        ExportColumn(_l("学生编号"), lambda w: w.student_id, "student"),
        ExportColumn(_l("姓名"), lambda w: w.student.name, "identifier"),
        ExportColumn(_l("学校"), lambda w: w.student.school.name),
        ExportColumn(_l("预警等级"), lambda w: w.level),
        ExportColumn(_l("状态"), lambda w: WARNING_STATUS_LABELS.get(w.status, w.status)),
        ExportColumn(_l("责任层级"), lambda w: ESCALATION_LABELS.get(w.escalated_to, w.escalated_to)),
        ExportColumn(_l("规则"), lambda w: w.rule_id),
        ExportColumn(_l("预警时间"), lambda w: text_time(w.created_at)),
        ExportColumn(_l("确认时间"), lambda w: text_time(w.acknowledged_at)),
    )
    export_load_options = (selectinload(WarningModel.student).selectinload(Student.school),)

    def may_judge(self, warning: WarningModel) -> bool:
        """The current user may confirm, adjust or override this (open) warning's level."""
        return warning.status == "open" and role_covers(logged_in_user(), JUDGE_ROLES, warning.student)

    def break_glass_offer(self, warning: WarningModel):
        """What a break-glass reason would add on this page (for the template)."""
        return student_access(warning.student).break_glass

    # --- bulk action: acknowledge

    def is_action_allowed(self, name: str) -> bool:
        if name == "acknowledge":
            return bool(user_roles(logged_in_user()) & set(ACK_ROLES))
        return super().is_action_allowed(name)

    @action("acknowledge", _l("确认接手（停止升级）"), _l("确认已接手所选预警？"))
    def action_acknowledge(self, ids: list[str]) -> None:
        """Acknowledge the selected open warnings the user sees and may take on (audited)."""
        pks = sorted({pk for pk in (parse_id(value) for value in ids[:MAX_ACTION_ROWS]) if pk is not None})
        user = logged_in_user()
        done = 0
        try:
            for warning in self.get_query().filter(WarningModel.id.in_(pks)).all() if pks else []:
                if warning.status != "open" or not student_access(warning.student).roles & set(ACK_ROLES):
                    continue
                if acknowledge(self.session, warning, user.username, utcnow()):
                    record(self.session, "update", "warning", warning.id, detail={"acknowledged": True})
                    done += 1
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        log.info("user id %s acknowledged %s warnings", user.id, done)
        flash(_("已确认接手 %(count)d 条预警", count=done), "success")

    # --- the judgement page

    @expose("/judge/", methods=("GET", "POST"))
    def judge_view(self):
        """确认/调整等级: a psychology teacher or principal decides the level, with a reason."""
        warning = self.get_one(request.args.get("id"))
        if warning is None:
            abort(404)  # missing or out of scope: the same answer
        user = logged_in_user()
        if not role_covers(user, JUDGE_ROLES, warning.student):
            abort(403)
        if request.method == "GET":
            audit_read("read", "warning", warning.id, page="judge")
        details_url = self.get_url(".details_view", id=warning.id)
        levels = current_services().declarations.levels.levels
        form = JudgeForm()
        form.level.choices = {str(lv.level): f"{lv.level} {lv.name.get('zh', lv.key)}" for lv in levels}
        if request.method == "GET":
            form.level.data = warning.level
        is_open = warning.status == "open"
        if is_open and form.validate_on_submit():
            if form.kind.data == "confirm" and form.level.data != warning.level:
                form.kind.errors = [*form.kind.errors, _("“确认”须保持当前等级；要改变等级请选择“调整”或“人工覆盖”")]
            elif self._record_judgement(warning, user, form):
                flash(
                    _(
                        "已记录：%(kind)s为 %(level)s",
                        kind=JUDGEMENT_KIND_LABELS[form.kind.data],
                        level=level_text(form.level.data),
                    ),
                    "success",
                )
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
                history=fmt_history(self, None, warning, "history"),
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
            form.reason.errors = [*form.reason.errors, _("未能保存：%(error)s", error=str(exc))]
            return False
        except Exception:
            self.session.rollback()
            raise
        log.info("level judgement on warning %s by user id %s: %s level %s", warning.id, user.id, kind, level)
        return True
