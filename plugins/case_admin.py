"""Back-office pages of the six-step case workflow (个案处置).

The page 个案处置 (endpoint ``caseflow``) lists the open cases a user may see
and opens one case (``/admin/caseflow/case/<id>/``): its state among the six
steps, the next transitions as buttons (each with what still blocks it), the
investigation interview rendered from the YAML form, the plan's tasks (done,
edit, add), the principal's approval, the exit-criteria checklist, close and
transfer, and the timeline.

Every lookup goes through :func:`xinshu.scoping.scope_query`: a case outside
the user's scope answers 404, like one that does not exist (a district or
bureau administrator sees only cases of escalated students). Every page that
shows a case writes an audit row first (503 when it cannot, security.md I1,
I4). What the case page shows follows :mod:`xinshu.permissions`: the
interviews, the timeline's reasons, exit-criteria notes and the closing reason
are notes (``notes``: the psychology teacher, others after a break-glass
reason); the whole plan needs ``plan``, a class teacher sees the tasks of their
own role (``actions``). Roles that act, held at the student's class or above:

* ``psychology_teacher`` drives the case (transitions, interview, plan, exit
  criteria, close, transfer);
* ``principal`` approves the plan (required at level 3–4);
* the holder of a task's owner role may mark that task done;
* everyone else who can see the case (bureau, district, school leaders) reads.

Every POST carries the CSRF token (Flask-WTF's ``CSRFProtect`` checks it) and
redirects back to the case page (post/redirect/get); what went wrong is
flashed. All changes go through :mod:`xinshu.workflow`, which writes the
timeline.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from xinshu import hookimpl
from xinshu.admin.formatting import CASE_STATE_LABELS, ROLE_LABELS, current_services, level_badge, local_time
from xinshu.admin.views import MAX_ID, SecureDbView, audit_read, logged_in_user, role_covers, student_access
from xinshu.errors import XinshuError
from xinshu.i18n import lazy_labels
from xinshu.models import OPEN_CASE_STATES, ROLES, Case, Interview, User
from xinshu.scoping import scope_query
from xinshu.workflow import (
    APPROVAL_LEVEL,
    CHINA_TZ,
    EVENT_LABELS,
    MAX_EVERY_DAYS,
    TASK_CATEGORIES,
    TASK_STEPS,
    add_task,
    advance,
    approve_plan,
    blocked_events,
    case_template,
    complete_task,
    edit_task,
    record_exit_criterion,
    record_interview,
    template_categories,
    to_local,
    to_utc,
)

log = logging.getLogger(__name__)

DRIVE_ROLES = ("psychology_teacher",)
APPROVE_ROLES = ("principal",)
LIST_LIMIT = 200
STEP_STATES = ("monitoring", "warned", "interviewing", "planning", "intervening", "follow_up")
EVENT_KIND_LABELS = {
    "state": _l("状态"),
    "interview": _l("访谈"),
    "plan": _l("方案"),
    "task": _l("任务"),
    "note": _l("备注"),
}
TASK_STATUS_LABELS = {"open": _l("待办"), "done": _l("已完成"), "cancelled": _l("已取消")}
TASK_CATEGORY_LABELS = {"school": _l("学校"), "family": _l("家庭"), "community": _l("社区"), "hospital": _l("医院")}
CASE_CATEGORY_LABELS = {
    "general": _l("通用"),
    "self_harm": _l("自伤自杀"),
    "bullying": _l("欺凌"),
    "family_crisis": _l("家庭危机"),
    "loss": _l("重大丧失"),
}
SECTION_LABELS = {
    "risk_factors": _l("危险因素"),
    "protective_factors": _l("保护因素"),
    "safety_plan": _l("安全计划"),
    "notes": _l("备注"),
}
#: The workflow events as shown on buttons and in messages, in the request's language
#: (xinshu.workflow.EVENT_LABELS stays Chinese: it is also a case event's stored reason).
EVENT_BUTTON_LABELS = lazy_labels(EVENT_LABELS)
#: Buttons drawn in red: they end the case or send it back.
DANGER_EVENTS = ("close", "transfer", "relapse")
#: Shown instead of a note the user may not read.
HIDDEN_TEXT = _l("（受保护的个案记录：须有查看权限或登记查看理由）")


def parse_local(value: str | None) -> dt.datetime | None:
    """A ``datetime-local`` input (Beijing time, ``YYYY-MM-DDTHH:MM``) as naive UTC; None if blank or bad."""
    if not value:
        return None
    try:
        local = dt.datetime.strptime(value.strip()[:16], "%Y-%m-%dT%H:%M")
    except ValueError:
        return None
    return to_utc(local.replace(tzinfo=CHINA_TZ))


def parse_every_days(value: str | None) -> int | bool | None:
    """The 每隔几天重复 input: None if blank, the days (1 to ``MAX_EVERY_DAYS``), or False if not such a number."""
    value = (value or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 3) or not 1 <= int(value) <= MAX_EVERY_DAYS:
        return False
    return int(value)


def input_local(value: dt.datetime | None) -> str:
    """Naive UTC as a ``datetime-local`` input value in Beijing time."""
    return to_local(value).strftime("%Y-%m-%dT%H:%M") if value else ""


def answer_text(item, value: Any) -> str:
    """An interview answer as text: option labels, 是/否, the text itself."""
    labels = {o.id: o.label.get("zh", o.id) for o in item.options}
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if isinstance(value, list):
        return _("、").join(labels.get(v, str(v)) for v in value)
    return labels.get(value, str(value)) if isinstance(value, str) else str(value)


class CaseWorkflowView(SecureDbView):
    """个案处置: one case through the six steps."""

    # --- lookups and roles ------------------------------------------------------

    def _case(self, case_id: int) -> Case:
        """The case if the current user may see it; 404 otherwise (missing or out of scope alike)."""
        if not 0 < case_id <= MAX_ID:
            abort(404)
        stmt = scope_query(select(Case).where(Case.id == case_id), Case, logged_in_user())
        case = self.session.scalar(stmt)
        if case is None:
            abort(404)
        return case

    @staticmethod
    def may(user: User | None, roles: tuple[str, ...], case: Case) -> bool:
        return role_covers(user, roles, case.student)

    def _require(self, roles: tuple[str, ...], case: Case) -> User:
        user = logged_in_user()
        if not self.may(user, roles, case):
            abort(403)
        return user

    def _done(self, case: Case, message: str):
        self.session.commit()
        flash(message, "success")
        return redirect(self._case_url(case))

    def _failed(self, case: Case, exc: XinshuError):
        self.session.rollback()
        flash(_("未能保存：%(error)s", error=exc), "error")
        return redirect(self._case_url(case))

    def _case_url(self, case: Case) -> str:
        return self.get_url(".case_view", case_id=case.id)

    def _run(self, case: Case, message: str, action) -> Any:
        """Run ``action()``; commit and flash ``message``, or roll back and flash the error."""
        try:
            action()
        except XinshuError as exc:
            return self._failed(case, exc)
        except Exception:
            self.session.rollback()
            raise
        log.info("case %s: %s by user id %s", case.id, message, logged_in_user().id)
        return self._done(case, message)

    # --- pages --------------------------------------------------------------------

    @expose("/")
    def index(self):
        """The open cases the user may see, highest level first."""
        stmt = (
            scope_query(select(Case), Case, logged_in_user())
            .where(Case.state.in_(OPEN_CASE_STATES))
            .order_by(Case.level.desc(), Case.opened_at.desc(), Case.id.desc())
            .limit(LIST_LIMIT)
        )
        cases = list(self.session.scalars(stmt))
        if cases:
            audit_read("read", "case", "", page="caseflow", ids=[case.id for case in cases])
        return self.render(
            "admin/xinshu_case_workflow.html",
            case=None,
            cases=cases,
            state_labels=CASE_STATE_LABELS,
            level_badge=level_badge,
            local_time=local_time,
            limit=LIST_LIMIT,
        )

    @expose("/case/<int:case_id>/")
    def case_view(self, case_id: int):
        case = self._case(case_id)
        audit_read("read", "case", case.id, page="caseflow")
        services = current_services()
        user = logged_in_user()
        access = student_access(case.student)
        template = case_template(services, case)
        interviews = []
        if "notes" in access:
            interviews = self.session.scalars(
                select(Interview).where(Interview.case_id == case.id).order_by(Interview.at, Interview.id)
            ).all()
        may_drive = self.may(user, DRIVE_ROLES, case)
        is_open = case.state in OPEN_CASE_STATES
        tasks = sorted(case.tasks, key=lambda t: (t.status != "open", t.due_at, t.id))
        if "plan" not in access:
            tasks = [t for t in tasks if "actions" in access and t.owner_role in access.roles]
        return self.render(
            "admin/xinshu_case_workflow.html",
            case=case,
            plan_template=template,
            access=access,
            may_notes="notes" in access,
            may_plan="plan" in access,
            hidden_text=HIDDEN_TEXT,
            is_open=is_open,
            may_drive=may_drive and is_open,
            may_approve=(
                is_open
                and self.may(user, APPROVE_ROLES, case)
                and not case.plan_approved_by
                and case.state not in ("warned", "interviewing")
            ),
            needs_approval=case.level >= APPROVAL_LEVEL,
            may_done={t.id: is_open and (may_drive or self.may(user, (t.owner_role,), case)) for t in tasks},
            transitions=blocked_events(self.session, services, case) if is_open else {},
            event_labels=EVENT_BUTTON_LABELS,
            danger_events=DANGER_EVENTS,
            steps=STEP_STATES,
            tasks=tasks,
            interviews=[(i, services.declarations.interview_forms.get(i.form_id)) for i in interviews],
            forms=services.declarations.interview_forms,
            answer_text=answer_text,
            state_labels=CASE_STATE_LABELS,
            role_labels=ROLE_LABELS,
            kind_labels=EVENT_KIND_LABELS,
            task_status_labels=TASK_STATUS_LABELS,
            task_category_labels=TASK_CATEGORY_LABELS,
            section_labels=SECTION_LABELS,
            case_category_labels=CASE_CATEGORY_LABELS,
            roles=ROLES,
            task_steps=TASK_STEPS,
            task_categories=TASK_CATEGORIES,
            level_badge=level_badge,
            local_time=local_time,
            input_local=input_local,
            now_local=input_local(dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=7)),
        )

    @expose("/case/<int:case_id>/advance", methods=("POST",))
    def advance_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(DRIVE_ROLES, case)
        event = request.form.get("event", "")
        reason = request.form.get("reason", "")
        label = EVENT_BUTTON_LABELS.get(event, event)
        return self._run(
            case,
            _("已%(action)s", action=label),
            lambda: advance(self.session, current_services(), case, event, user.username, reason),
        )

    @expose("/case/<int:case_id>/approve", methods=("POST",))
    def approve_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(APPROVE_ROLES, case)
        reason = request.form.get("reason", "")
        return self._run(
            case,
            _("已审批干预方案"),
            lambda: approve_plan(self.session, current_services(), case, user.username, reason),
        )

    @expose("/case/<int:case_id>/task/<int:task_id>/done", methods=("POST",))
    def task_done_view(self, case_id: int, task_id: int):
        case = self._case(case_id)
        task = next((t for t in case.tasks if t.id == task_id), None)
        if task is None:
            abort(404)
        user = logged_in_user()
        if not (self.may(user, DRIVE_ROLES, case) or self.may(user, (task.owner_role,), case)):
            abort(403)
        note = request.form.get("note", "")
        return self._run(
            case,
            _("任务「%(title)s」已完成", title=task.title),
            lambda: complete_task(self.session, current_services(), case, task_id, user.username, note),
        )

    @expose("/case/<int:case_id>/task/<int:task_id>/edit", methods=("GET", "POST"))
    def task_edit_view(self, case_id: int, task_id: int):
        case = self._case(case_id)
        user = self._require(DRIVE_ROLES, case)
        task = next((t for t in case.tasks if t.id == task_id), None)
        if task is None:
            abort(404)
        if request.method == "POST":
            due = request.form.get("due_at", "")
            due_at = parse_local(due)
            if due and due_at is None:
                flash(_("截止时间格式应为 YYYY-MM-DD HH:MM"), "error")
                return redirect(self.get_url(".task_edit_view", case_id=case.id, task_id=task.id))
            return self._run(
                case,
                _("任务已修改"),
                lambda: edit_task(
                    self.session,
                    current_services(),
                    case,
                    task_id,
                    user.username,
                    request.form.get("reason", ""),
                    title=request.form.get("title"),
                    due_at=due_at,
                    owner_role=request.form.get("owner_role") or None,
                ),
            )
        audit_read("read", "case", case.id, page="task_edit")
        return self.render(
            "admin/xinshu_case_task.html",
            case=case,
            task=task,
            roles=ROLES,
            role_labels=ROLE_LABELS,
            due_value=input_local(task.due_at),
            case_url=self._case_url(case),
        )

    @expose("/case/<int:case_id>/task/add", methods=("POST",))
    def task_add_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(DRIVE_ROLES, case)
        form = request.form
        due_at = parse_local(form.get("due_at"))
        if due_at is None:
            flash(_("未能保存：请填写截止时间（YYYY-MM-DD HH:MM）"), "error")
            return redirect(self._case_url(case))
        every = parse_every_days(form.get("every_days"))
        if every is False:
            flash(_("未能保存：重复间隔应为 1 至 %(max)s 天", max=MAX_EVERY_DAYS), "error")
            return redirect(self._case_url(case))
        return self._run(
            case,
            _("已新增任务"),
            lambda: add_task(
                self.session,
                current_services(),
                case,
                user.username,
                form.get("title", ""),
                form.get("owner_role", ""),
                due_at,
                step=form.get("step", "intervening"),
                category=form.get("category", "school"),
                every_days=every,
                reason=form.get("reason", ""),
            ),
        )

    @expose("/case/<int:case_id>/exit", methods=("POST",))
    def exit_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(DRIVE_ROLES, case)
        criterion = request.form.get("criterion", "")
        note = request.form.get("note", "")
        return self._run(
            case,
            _("已记录结案条件"),
            lambda: record_exit_criterion(self.session, current_services(), case, criterion, user.username, note),
        )

    @expose("/case/<int:case_id>/interview", methods=("GET", "POST"))
    def interview_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(DRIVE_ROLES, case)
        services = current_services()
        forms = services.declarations.interview_forms
        form_id = request.values.get("form") or ("standard" if "standard" in forms else next(iter(forms), ""))
        form = forms.get(form_id)
        if form is None:
            flash(_("未声明调研访谈表（rules/interviews/*.yaml）"), "error")
            return redirect(self._case_url(case))
        error, values = None, {}
        level = case.warning.level if case.warning is not None and case.warning.status == "open" else case.level
        current_category = case_template(services, case).category
        if request.method == "POST":
            values = {item.id: self._answer(item) for item in form.fields}
            try:
                level = int(request.form.get("level", ""))
            except ValueError:
                level = 0
            category = request.form.get("category") or None
            try:
                record_interview(
                    self.session,
                    services,
                    case,
                    form.id,
                    values,
                    level,
                    request.form.get("kind", ""),
                    request.form.get("reason", ""),
                    user.username,
                    category,
                )
            except XinshuError as exc:
                self.session.rollback()
                error = str(exc)
            except Exception:
                self.session.rollback()
                raise
            else:
                log.info("case %s: interview recorded by user id %s", case.id, user.id)
                return self._done(case, _("调研访谈已记录，进入制定方案"))
        may_record = case.state in ("warned", "interviewing")
        if request.method == "GET":
            audit_read("read", "case", case.id, page="interview")
        return (
            self.render(
                "admin/xinshu_case_interview.html",
                case=case,
                form=form,
                values=values,
                error=error,
                may_record=may_record,
                level=level,
                levels=services.declarations.levels.levels,
                categories=template_categories(),
                current_category=current_category,
                case_category_labels=CASE_CATEGORY_LABELS,
                section_labels=SECTION_LABELS,
                state_labels=CASE_STATE_LABELS,
                case_url=self._case_url(case),
                kind=request.form.get("kind", "confirm"),
                reason=request.form.get("reason", ""),
            ),
            400 if error else 200,
        )

    @staticmethod
    def _answer(item) -> Any:
        """One field's answer from the posted form, typed for :func:`xinshu.workflow.validate_answers`."""
        name = f"f_{item.id}"
        if item.type == "multi":
            return request.form.getlist(name)
        value = request.form.get(name, "")
        if item.type == "bool":
            return {"yes": True, "no": False}.get(value)
        return value


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    admin.add_view(CaseWorkflowView(db, name=_l("个案处置"), endpoint="caseflow", category=_l("分类干预")))
