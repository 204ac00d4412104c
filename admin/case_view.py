"""个案: the case list and details; state and level for everyone who sees the case, the plan and
the notes per capability (:mod:`xinshu.permissions`). Reads and exports are audited."""

from __future__ import annotations

from typing import Any, ClassVar

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy.orm import selectinload

from xinshu.admin.access import fmt_student, guarded, hidden, may, student_access
from xinshu.admin.base import SecureModelView
from xinshu.admin.exporting import ExportColumn, ExportMixin, text_time
from xinshu.admin.formatting import CASE_STATE_LABELS, choices, fmt_events, fmt_level, fmt_tasks
from xinshu.models import Case


def fmt_case_tasks(view, context, model: Case, name: str) -> Markup:
    access = student_access(model.student)
    if "plan" in access:
        return fmt_tasks(view, context, model, name)
    if "actions" in access:
        return fmt_tasks(view, context, model, name, roles=access.roles)
    return hidden()


def fmt_case_events(view, context, model: Case, name: str) -> Markup:
    return fmt_events(view, context, model, name, show_reason=may(model.student, "notes"))


class CaseView(ExportMixin, SecureModelView):
    """个案: state and level for everyone who sees the case; plan and notes per capability."""

    audit_type = "case"
    audit_list = True
    details_template = "admin/xinshu_case_details.html"
    column_list = ("id", "student", "school", "state", "level", "opened_at")
    column_details_list = ("id", "student", "school", "warning", "state", "level", "template_id", "template_version",
                           "opened_at", "closed_at", "tasks", "events")  # fmt: skip
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "student": _l("学生"),
        "school": _l("学校"),
        "school.name": _l("学校"),
        "warning": _l("预警"),
        "state": _l("状态"),
        "level": _l("等级"),
        "template_id": _l("干预方案"),
        "template_version": _l("方案版本"),
        "opened_at": _l("立案时间"),
        "closed_at": _l("结案时间"),
        "tasks": _l("方案任务"),
        "events": _l("处置记录"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {"student": fmt_student, "level": fmt_level}
    column_formatters_detail: ClassVar[dict[str, Any]] = {
        "student": fmt_student,
        "level": fmt_level,
        "template_id": guarded("plan"),
        "template_version": guarded("plan"),
        "tasks": fmt_case_tasks,
        "events": fmt_case_events,
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"state": choices(CASE_STATE_LABELS)}
    # No filter or sort by template: it would tell a class teacher the kind of crisis.
    column_filters = ("state", "level", "school.name")
    column_sortable_list = ("id", "state", "level", "opened_at")
    column_default_sort = ("opened_at", True)
    export_spec = (
        ExportColumn(_l("个案编号"), lambda c: c.id),
        ExportColumn(_l("学生编号"), lambda c: c.student_id, "student"),
        ExportColumn(_l("姓名"), lambda c: c.student.name, "identifier"),
        ExportColumn(_l("学校"), lambda c: c.school.name),
        ExportColumn(_l("状态"), lambda c: CASE_STATE_LABELS.get(c.state, c.state)),
        ExportColumn(_l("等级"), lambda c: c.level),
        ExportColumn(_l("干预方案"), lambda c: c.template_id),
        ExportColumn(_l("立案时间"), lambda c: text_time(c.opened_at)),
        ExportColumn(_l("结案时间"), lambda c: text_time(c.closed_at)),
    )
    export_load_options = (selectinload(Case.student), selectinload(Case.school))

    def break_glass_offer(self, case: Case):
        return student_access(case.student).break_glass

    def case_links(self, case: Case) -> dict[str, str]:
        """Links to the case's workflow and desk pages, when those plugins are loaded."""
        endpoints = ("caseflow.case_view", "casedesk.case_view")
        return {e: url_for(e, case_id=case.id) for e in endpoints if e in current_app.view_functions}
