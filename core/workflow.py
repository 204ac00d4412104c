"""The six-step case workflow (数据监测 → 预警 → 调研访谈 → 制定方案 → 干预实施 → 跟踪随访).

States and events (:class:`CaseMachine`, a python-statemachine ``StateMachine``)::

    monitoring   --warn-------------->  warned          (a watched student's level rises)
    warned       --start_interview--->  interviewing
    interviewing --finish_interview-->  planning        (an interview recorded since entering interviewing)
    planning     --start_intervention>  intervening     (level >= 3: the principal approved the plan)
    intervening  --start_follow_up--->  follow_up
    follow_up    --relapse----------->  intervening     (reason required)
    follow_up    --watch------------->  monitoring      (reason required)
    follow_up    --close------------->  closed          (every exit criterion recorded; reason required)
    monitoring   --close------------->  closed          (the same)
    any open     --transfer---------->  transferred     (e.g. moved school; reason required)

``monitoring`` (数据监测) is where a case waits once active intervention and
follow-up are over but the student is still watched through the routine
screening data: ``watch`` puts it there, a rise of the student's warning level
sends it back to ``warned`` (:func:`xinshu.episodes.open_or_raise_case` fires
``warn``), and it closes like a follow-up case once the exit criteria are met.
Cases are opened in ``warned`` (a case always has a warning).

Every change goes through this module and writes one
:class:`~xinshu.models.CaseEvent` (kind ``state``, ``interview``, ``plan``,
``task`` or ``note``) with actor, time and reason, in the caller's
transaction; the timeline is append-only (:mod:`xinshu.timeline`). Illegal
transitions and failed preconditions raise :class:`WorkflowError`.

Plans (:func:`build_plan`) come from the intervention template matching the
case's level and category. Deadlines are either calendar hours after the start
(``due_hours``, for crisis steps that run round the clock) or working days
(``due_working_days``): the same Beijing time on the Nth working day after the
start day, where working days follow China's statutory calendar with its
holidays and 调休 working weekends (``chinese_calendar``; for a year it does
not know yet, Monday to Friday). Times are stored as naive UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import chinese_calendar
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from xinshu import timeline  # noqa: F401 - registers the append-only listeners
from xinshu.errors import XinshuError
from xinshu.i18n import N_
from xinshu.levels import FormField, InterventionTemplate, InterviewForm
from xinshu.models import OPEN_CASE_STATES, ROLES, Case, CaseEvent, Interview, PlanTask, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from xinshu.services import Services

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
#: Plans of cases at this level or above need the principal's approval before intervening.
APPROVAL_LEVEL = 3
#: Events that need a reason (the others fall back to the event's label).
REASON_REQUIRED = ("relapse", "watch", "close", "transfer")
EVENT_LABELS = {
    "warn": N_("重新预警"),
    "start_interview": N_("开始调研访谈"),
    "finish_interview": N_("完成访谈，进入制定方案"),
    "start_intervention": N_("开始干预实施"),
    "start_follow_up": N_("转入跟踪随访"),
    "relapse": N_("情况反复，重新干预"),
    "watch": N_("转入数据监测"),
    "close": N_("结案"),
    "transfer": N_("转出（移交）"),
}
TASK_STEPS = ("interviewing", "planning", "intervening", "follow_up")
TASK_CATEGORIES = ("school", "family", "community", "hospital")
INTERVIEW_KINDS = ("confirm", "adjust")
MAX_TEXT = 4000
#: A task's title is stored in a VARCHAR(255).
MAX_TITLE = 255
#: A repeating task repeats every 1 to this many days (a school year at most).
MAX_EVERY_DAYS = 365


class WorkflowError(XinshuError):
    """A workflow step that is not allowed now, or bad input for it."""


# --- working days -------------------------------------------------------------


def is_workday(day: dt.date) -> bool:
    """China's statutory working day (holidays off, 调休 weekends on); Mon–Fri
    for a year ``chinese_calendar`` has no data for."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return day.weekday() < 5


def to_local(value: dt.datetime) -> dt.datetime:
    """A naive-UTC timestamp as an aware Asia/Shanghai one."""
    return value.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ)


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware timestamp as naive UTC (how every timestamp is stored)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def add_working_days(start: dt.datetime, days: int) -> dt.datetime:
    """The same Beijing time on the ``days``-th working day after ``start``'s day.

    ``start`` and the result are naive UTC; ``days`` 0 is ``start`` itself.
    """
    local = to_local(start)
    day, counted = local.date(), 0
    while counted < days:
        day += dt.timedelta(days=1)
        counted += is_workday(day)
    return to_utc(dt.datetime.combine(day, local.timetz()))


def next_workday(value: dt.datetime) -> dt.datetime:
    """``value`` (naive UTC) moved to the same Beijing time on the first working day on or after it."""
    local = to_local(value)
    day = local.date()
    while not is_workday(day):
        day += dt.timedelta(days=1)
    return to_utc(dt.datetime.combine(day, local.timetz()))


def task_due(task, start: dt.datetime) -> dt.datetime:
    """When a template task is due for a plan starting at ``start`` (naive UTC)."""
    if task.due_working_days is not None:
        return add_working_days(start, task.due_working_days)
    return start + dt.timedelta(hours=task.due_hours or 0)


def build_plan(template: InterventionTemplate, opened_at: dt.datetime) -> list[PlanTask]:
    """The plan tasks of ``template`` for a plan starting at ``opened_at`` (naive UTC), not yet added anywhere."""
    return [
        PlanTask(
            template_task_id=task.id,
            title=task.title["zh"],
            owner_role=task.owner_role,
            step=task.step,
            category=task.category,
            due_at=task_due(task, opened_at),
            status="open",
            every_days=task.every_days,
            resources=list(task.resources),
        )
        for task in template.tasks
    ]


# --- the state machine ----------------------------------------------------------


class CaseMachine(StateMachine):
    """The case states and the transitions between them (see the module docstring)."""

    monitoring = State("数据监测", initial=True)
    warned = State("已预警")
    interviewing = State("调研访谈")
    planning = State("制定方案")
    intervening = State("干预实施")
    follow_up = State("跟踪随访")
    closed = State("已结案", final=True)
    transferred = State("已转出", final=True)

    warn = monitoring.to(warned)
    start_interview = warned.to(interviewing)
    finish_interview = interviewing.to(planning, validators="check_interview")
    start_intervention = planning.to(intervening, validators="check_approval")
    start_follow_up = intervening.to(follow_up)
    relapse = follow_up.to(intervening)
    watch = follow_up.to(monitoring)
    close = follow_up.to(closed, validators="check_exit") | monitoring.to(closed, validators="check_exit")
    transfer = (
        monitoring.to(transferred)
        | warned.to(transferred)
        | interviewing.to(transferred)
        | planning.to(transferred)
        | intervening.to(transferred)
        | follow_up.to(transferred)
    )

    def check_interview(self, session: Session) -> None:
        problem = interview_problem(session, self.model)
        if problem:
            raise WorkflowError(problem)

    def check_approval(self) -> None:
        problem = approval_problem(self.model)
        if problem:
            raise WorkflowError(problem)

    def check_exit(self, services: Services) -> None:
        problem = exit_problem(services, self.model)
        if problem:
            raise WorkflowError(problem)


EVENTS = tuple(EVENT_LABELS)
STATES = tuple(state.id for state in CaseMachine.states)


def interview_problem(session: Session, case: Case) -> str | None:
    """Why the interview step cannot finish (no interview recorded since it began), or None."""
    entered = session.scalar(
        select(CaseEvent.at)
        .where(CaseEvent.case_id == case.id, CaseEvent.kind == "state", CaseEvent.to_state == "interviewing")
        .order_by(CaseEvent.id.desc())
        .limit(1)
    )
    stmt = select(Interview.id).where(Interview.case_id == case.id)
    if entered is not None:
        stmt = stmt.where(Interview.at >= entered)
    if session.scalar(stmt.limit(1)) is None:
        return _("请先记录调研访谈，再完成此步骤")
    return None


def approval_problem(case: Case) -> str | None:
    """Why intervention cannot start for want of the principal's approval, or None."""
    if case.level >= APPROVAL_LEVEL and not case.plan_approved_by:
        return _("%(level)s 级个案的干预方案须经校长审批后才能开始干预", level=case.level)
    return None


def exit_problem(services: Services, case: Case) -> str | None:
    """Why the case cannot close (exit criteria not yet recorded), or None."""
    missing = missing_exit_criteria(services, case)
    if missing:
        return _("结案前须记录全部结案条件；尚缺：%(missing)s", missing="、".join(missing))
    return None


def machine(case: Case) -> CaseMachine:
    """A state machine over ``case`` (its ``state`` attribute is the machine's state)."""
    if case.state not in STATES:
        raise WorkflowError(f"case #{case.id} has an unknown state {case.state!r}")
    return CaseMachine(model=case)


def allowed_events(case: Case) -> list[str]:
    """The events the case's state has a transition for (preconditions not checked)."""
    if case.state not in STATES:
        return []
    return [event.id for event in machine(case).allowed_events]


def blocked_events(session: Session, services: Services, case: Case) -> dict[str, str | None]:
    """Each allowed event with what stops it now (None: nothing)."""
    problems: dict[str, str | None] = {}
    for event in allowed_events(case):
        problem = None
        if event == "finish_interview":
            problem = interview_problem(session, case)
        elif event == "start_intervention":
            problem = approval_problem(case)
        elif event == "close":
            problem = exit_problem(services, case)
        problems[event] = problem
    return problems


# --- timeline ----------------------------------------------------------------------


def record_event(
    session: Session, case: Case, kind: str, actor: str, reason: str, from_state: str | None = None, at=None
) -> CaseEvent:
    """Append a timeline entry (the state stays as it is unless ``from_state`` is given)."""
    entry = CaseEvent(
        case=case,
        from_state=case.state if from_state is None else from_state,
        to_state=case.state,
        kind=kind,
        actor=actor,
        reason=reason,
        at=at or utcnow(),
    )
    session.add(entry)
    return entry


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise WorkflowError("who does it (actor) is required")
    return actor


#: The free-text inputs checked by :func:`_text`: key → (message when missing, name in "too long").
TEXT_FIELDS = {
    "reason": (N_("请填写理由"), N_("理由")),
    "title": (N_("请填写任务名称"), N_("任务名称")),
    "note": (N_("请填写备注"), N_("备注")),
}


def _text(value: str | None, what: str, required: bool = False) -> str:
    value = (value or "").strip()
    missing, name = TEXT_FIELDS[what]
    if required and not value:
        raise WorkflowError(_(missing))
    if len(value) > MAX_TEXT:
        raise WorkflowError(_("%(what)s不能超过 %(n)s 个字符", what=_(name), n=MAX_TEXT))
    return value


def _require_open(case: Case) -> None:
    if case.state not in OPEN_CASE_STATES:
        raise WorkflowError(_("个案 #%(id)s 已结束，不能再修改", id=case.id))


def advance(session: Session, services: Services, case: Case, event: str, actor: str, reason: str = "") -> CaseEvent:
    """Fire ``event`` on ``case``: move it to the next state and record who, when and why.

    Closing or transferring ends the case: ``closed_at`` and ``closed_reason``
    are set and its open tasks are cancelled. Whoever starts the interview of
    a case without an owner becomes its owner (the responsible psychology teacher).

    :raises WorkflowError: an unknown event, one the state does not allow, an
        unmet precondition, or no actor or (for :data:`REASON_REQUIRED`) no reason.
    """
    actor = _actor(actor)
    if event not in EVENT_LABELS:
        raise WorkflowError(f"unknown event {event!r}; events: {', '.join(EVENTS)}")
    reason = _text(reason, "reason", required=event in REASON_REQUIRED)
    sm = machine(case)
    before = case.state
    try:
        sm.send(event, session=session, services=services)
    except TransitionNotAllowed:
        allowed = ", ".join(allowed_events(case)) or "none"
        raise WorkflowError(f"cannot {event} a case in state {before} (allowed: {allowed})") from None
    now = utcnow()
    reason = reason or EVENT_LABELS[event]
    if case.state in ("closed", "transferred"):
        case.closed_at, case.closed_reason = now, reason
        _cancel_open_tasks(session, case, actor, now)
    if event == "start_interview" and not case.owner and actor != "system":
        case.owner, case.owner_role = actor, "psychology_teacher"
        reason += f"（负责人：{actor}）"
    entry = record_event(session, case, "state", actor, reason, from_state=before, at=now)
    session.flush()
    return entry


def _cancel_open_tasks(session: Session, case: Case, actor: str, now: dt.datetime) -> None:
    for task in case.tasks:
        if task.status == "open":
            task.status = "cancelled"
            record_event(session, case, "task", actor, f"任务「{task.title}」随结案取消", at=now)


# --- templates, interviews -----------------------------------------------------------


def case_template(services: Services, case: Case) -> InterventionTemplate:
    """The intervention template the case's plan was made from (else the level's general one).

    :raises WorkflowError: neither is declared.
    """
    decls = services.declarations
    template = decls.templates.get(case.template_id)
    if template is not None:
        return template
    try:
        return decls.template_for(case.level)
    except KeyError:
        raise WorkflowError(f"no intervention template {case.template_id!r} or for level {case.level}") from None


def missing_exit_criteria(services: Services, case: Case) -> list[str]:
    """Ids of the template's exit criteria not yet recorded on the case, in template order."""
    recorded = case.exit_criteria or {}
    return [c.id for c in case_template(services, case).exit_criteria if c.id not in recorded]


def interview_form(services: Services, form_id: str) -> InterviewForm:
    form = services.declarations.interview_forms.get(form_id)
    if form is None:
        known = ", ".join(sorted(services.declarations.interview_forms)) or "none declared"
        raise WorkflowError(f"no interview form {form_id!r} (known: {known})")
    return form


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _check_value(item: FormField, value: Any) -> tuple[Any, str | None]:
    """``(clean value, problem)`` for one answer that is not empty."""
    options = [o.id for o in item.options]
    if item.type in ("text", "textarea"):
        if not isinstance(value, str):
            return value, N_("应为文字")
        value = value.strip()
        return value, N_("内容过长") if len(value) > MAX_TEXT else None
    if item.type == "choice":
        return value, None if value in options else N_("选项无效")
    if item.type == "multi":
        if not isinstance(value, list) or any(v not in options for v in value):
            return value, N_("选项无效")
        return value, N_("同一选项选了两次") if len(set(value)) != len(value) else None
    if item.type == "bool":
        return value, None if isinstance(value, bool) else N_("应为“是”或“否”")
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):  # e.g. from a YAML answers file
        return value.isoformat(), None
    try:
        return dt.date.fromisoformat(value).isoformat(), None
    except (TypeError, ValueError):
        return value, N_("应为日期（YYYY-MM-DD）")


def validate_answers(form: InterviewForm, answers: Mapping[str, Any]) -> dict[str, Any]:
    """Check interview answers against the form; return them cleaned (text stripped, empty ones left out).

    :raises WorkflowError: listing every unknown field, missing required answer and bad value.
    """
    if not isinstance(answers, Mapping):
        raise WorkflowError("interview answers must be a mapping of field id to value")
    known = {item.id: item for item in form.fields}
    problems = [_("没有字段 %(key)s", key=key) for key in answers if key not in known]
    clean: dict[str, Any] = {}
    for item in form.fields:
        value = answers.get(item.id)
        if isinstance(value, str):
            value = value.strip()
        if _empty(value):
            if item.required:
                problems.append(_("%(label)s：必填", label=item.label["zh"]))
            continue
        value, problem = _check_value(item, value)
        if problem:
            problems.append(_("%(label)s：%(problem)s", label=item.label["zh"], problem=_(problem)))
        else:
            clean[item.id] = value
    if problems:
        raise WorkflowError(_("访谈记录不完整：") + "；".join(problems))
    return clean


def template_categories() -> tuple[str, ...]:
    """The case categories an intervention template may declare."""
    from xinshu.declarations.validate import load_schema

    return tuple(load_schema("intervention")["properties"]["category"]["enum"])


def record_interview(
    session: Session,
    services: Services,
    case: Case,
    form_id: str,
    answers: Mapping[str, Any],
    level: int,
    kind: str,
    reason: str,
    interviewer: str,
    category: str | None = None,
) -> Interview:
    """Record the investigation interview (调研访谈) and finish that step.

    The answers are checked against the YAML form; the interviewer confirms or
    adjusts the level with a reason, recorded as a level judgement
    (:func:`xinshu.judgements.judge`, same reason). A case still in ``warned``
    starts the interview step first. When the level or the chosen case
    ``category`` calls for another intervention template, the plan is made
    anew from it, due dates counted from the interview (done tasks and the
    school's own tasks are kept, open template tasks cancelled). The template's
    ``interview`` task is marked done. Then the case moves to ``planning``.

    :raises WorkflowError: the case is past the interview, bad answers, an
        unknown form or category, or no reason.
    """
    from xinshu.judgements import judge  # judgements → episodes → workflow

    interviewer = _actor(interviewer)
    reason = _text(reason, "reason", required=True)
    if case.state not in ("warned", "interviewing"):
        raise WorkflowError(f"case #{case.id} is {case.state}; the interview is recorded in warned or interviewing")
    if kind not in INTERVIEW_KINDS:
        raise WorkflowError(
            f"the interviewer confirms or adjusts the level: kind must be {' or '.join(INTERVIEW_KINDS)}"
        )
    if category is not None and category not in template_categories():
        raise WorkflowError(f"unknown case category {category!r} (known: {', '.join(template_categories())})")
    if not 1 <= level <= 4:
        raise WorkflowError(_("等级应为 1 至 4"))
    form = interview_form(services, form_id)
    clean = validate_answers(form, answers)
    warning = case.warning
    before = warning.level if warning is not None and warning.status == "open" else case.level
    if kind == "confirm" and level != before:
        raise WorkflowError(_("“确认”须保持当前等级 %(level)s；要改变等级请选“调整”", level=before))
    if case.state == "warned":
        advance(session, services, case, "start_interview", interviewer, EVENT_LABELS["start_interview"])
    judge(session, services, case.student, level, kind, reason, interviewer)
    now = utcnow()
    interview = Interview(
        case_id=case.id,
        form_id=form.id,
        form_version=form.version,
        answers=clean,
        level_before=before,
        level_after=level,
        reason=reason,
        interviewer=interviewer,
        at=now,
    )
    session.add(interview)
    old_level, case.level = case.level, level
    kind_zh = "确认" if kind == "confirm" else "调整"
    record_event(
        session,
        case,
        "interview",
        interviewer,
        f"调研访谈（{form.title['zh']} {form.version}）：{kind_zh}等级 {before} → {level}，理由：{reason}",
        at=now,
    )
    for task in case.tasks:
        if task.template_task_id == "interview" and task.status == "open":
            _mark_done(session, case, task, interviewer, "访谈已记录", now)
    _replan_if_needed(session, services, case, category, old_level, interviewer, now)
    session.flush()
    advance(session, services, case, "finish_interview", interviewer, reason)
    return interview


def _replan_if_needed(
    session: Session, services: Services, case: Case, category: str | None, old_level: int, actor: str, now
) -> None:
    current = case_template(services, case)
    try:
        wanted = services.declarations.template_for(case.level, category or current.category)
    except KeyError:  # e.g. lowered below the case threshold: keep the plan there is
        return
    if wanted.id == case.template_id:
        return
    done = {task.template_task_id for task in case.tasks if task.status == "done"}
    cancelled = 0
    for task in case.tasks:
        if task.status == "open" and task.template_task_id != "custom":
            task.status = "cancelled"
            cancelled += 1
    added = [task for task in build_plan(wanted, now) if task.template_task_id not in done]
    for task in added:
        case.tasks.append(task)
    case.template_id, case.template_version = wanted.id, wanted.version
    case.plan_approved_by = case.plan_approved_at = None
    record_event(
        session,
        case,
        "plan",
        actor,
        f"按等级 {case.level}（原 {old_level}）与类别 {wanted.category} 改用干预方案 {wanted.id} {wanted.version}："
        f"取消 {cancelled} 项未完成任务，新增 {len(added)} 项",
        at=now,
    )


# --- the plan ----------------------------------------------------------------------------


def approve_plan(session: Session, services: Services, case: Case, actor: str, reason: str = "") -> CaseEvent:
    """The principal approves the case's plan (required at level >= 3 before intervening).

    :raises WorkflowError: the case has no plan yet, is finished, or is already approved.
    """
    actor = _actor(actor)
    reason = _text(reason, "reason")
    _require_open(case)
    if case.state in ("warned", "interviewing"):
        raise WorkflowError("there is no plan to approve before the interview is finished")
    if case.plan_approved_by:
        raise WorkflowError(f"the plan was already approved by {case.plan_approved_by}")
    now = utcnow()
    case.plan_approved_by, case.plan_approved_at = actor, now
    entry = record_event(
        session, case, "plan", actor, "校长审批通过干预方案" + (f"：{reason}" if reason else ""), at=now
    )
    session.flush()
    return entry


def _task(case: Case, task_id: int) -> PlanTask:
    for task in case.tasks:
        if task.id == task_id:
            return task
    raise WorkflowError(f"case #{case.id} has no task #{task_id}")


def _mark_done(session: Session, case: Case, task: PlanTask, actor: str, note: str, now) -> PlanTask | None:
    task.status, task.done_at, task.done_by = "done", now, actor
    following = None
    text = f"完成任务「{task.title}」" + (f"：{note}" if note else "")
    if task.every_days and not 1 <= task.every_days <= MAX_EVERY_DAYS:
        # stored before the interval was checked: done, but no next occurrence centuries away
        text += f"；重复间隔 {task.every_days} 天无效，未安排下次"
    elif task.every_days and case.state in OPEN_CASE_STATES:
        following = PlanTask(
            template_task_id=task.template_task_id,
            title=task.title,
            owner_role=task.owner_role,
            step=task.step,
            category=task.category,
            due_at=next_workday(now + dt.timedelta(days=task.every_days)),
            status="open",
            every_days=task.every_days,
            resources=list(task.resources or []),
        )
        case.tasks.append(following)
        text += f"；下次截止 {to_local(following.due_at):%Y-%m-%d %H:%M}"
    record_event(session, case, "task", actor, text, at=now)
    return following


def complete_task(
    session: Session, services: Services, case: Case, task_id: int, actor: str, note: str = ""
) -> PlanTask | None:
    """Mark an open task done; a repeating one (``every_days``) gets its next occurrence,
    due that many days later on a working day. Returns the next occurrence, if any.

    :raises WorkflowError: no such open task, or the case is finished.
    """
    actor = _actor(actor)
    note = _text(note, "note")
    _require_open(case)
    task = _task(case, task_id)
    if task.status != "open":
        raise WorkflowError(f"task #{task.id} is {task.status}, not open")
    following = _mark_done(session, case, task, actor, note, utcnow())
    session.flush()
    return following


def record_exit_criterion(
    session: Session, services: Services, case: Case, criterion_id: str, actor: str, note: str = ""
) -> CaseEvent:
    """Record that one of the template's exit criteria is met (who, when, evidence note).

    :raises WorkflowError: not a criterion of the case's template, already
        recorded, or the case is finished.
    """
    actor = _actor(actor)
    note = _text(note, "note")
    _require_open(case)
    criteria = {c.id: c for c in case_template(services, case).exit_criteria}
    if criterion_id not in criteria:
        raise WorkflowError(f"{criterion_id!r} is not an exit criterion of {case.template_id} ({', '.join(criteria)})")
    recorded = dict(case.exit_criteria or {})
    if criterion_id in recorded:
        raise WorkflowError(f"exit criterion {criterion_id!r} was already recorded by {recorded[criterion_id]['by']}")
    now = utcnow()
    recorded[criterion_id] = {"by": actor, "at": now.isoformat(timespec="seconds"), "note": note}
    case.exit_criteria = recorded
    text = f"结案条件已满足：{criteria[criterion_id].text['zh']}" + (f"（{note}）" if note else "")
    entry = record_event(session, case, "plan", actor, text, at=now)
    session.flush()
    return entry


def _approval_note(case: Case) -> str:
    """Changing a plan that awaits intervention withdraws the principal's approval."""
    if case.state == "planning" and case.plan_approved_by:
        case.plan_approved_by = case.plan_approved_at = None
        return "；方案已变更，须校长重新审批"
    return ""


def edit_task(
    session: Session,
    services: Services,
    case: Case,
    task_id: int,
    actor: str,
    reason: str = "",
    title: str | None = None,
    due_at: dt.datetime | None = None,
    owner_role: str | None = None,
) -> CaseEvent:
    """Change an open task's title, due time (naive UTC) or owner role: the plan becomes one-to-one.

    :raises WorkflowError: nothing changes, a bad value, a task that is not open, a finished case.
    """
    actor = _actor(actor)
    reason = _text(reason, "reason")
    _require_open(case)
    task = _task(case, task_id)
    if task.status != "open":
        raise WorkflowError(f"task #{task.id} is {task.status}; only open tasks can be edited")
    changes = []
    if title is not None and len(title.strip()) > MAX_TITLE:
        raise WorkflowError(_("任务名称不能超过 %(n)s 个字符", n=MAX_TITLE))
    if title is not None and title.strip() and title.strip() != task.title:
        changes.append(f"标题「{task.title}」→「{title.strip()}」")
        task.title = title.strip()
    if due_at is not None and due_at != task.due_at:
        changes.append(f"截止 {to_local(task.due_at):%Y-%m-%d %H:%M} → {to_local(due_at):%Y-%m-%d %H:%M}")
        task.due_at = due_at
    if owner_role is not None and owner_role != task.owner_role:
        if owner_role not in ROLES:
            raise WorkflowError(f"unknown role {owner_role!r}")
        changes.append(f"负责人 {task.owner_role} → {owner_role}")
        task.owner_role = owner_role
    if not changes:
        raise WorkflowError("nothing to change")
    text = (
        f"修改任务 #{task.id}：" + "；".join(changes) + (f"。理由：{reason}" if reason else "") + _approval_note(case)
    )
    entry = record_event(session, case, "plan", actor, text)
    session.flush()
    return entry


def check_every_days(every_days: int | None) -> None:
    """Check a repeating task's interval: None (does not repeat) or 1 to ``MAX_EVERY_DAYS`` days.

    :raises WorkflowError: any other value (its message is shown to the user).
    """
    if every_days is not None and not 1 <= every_days <= MAX_EVERY_DAYS:
        raise WorkflowError(_("重复间隔应为 1 至 %(max)s 天", max=MAX_EVERY_DAYS))


def add_task(
    session: Session,
    services: Services,
    case: Case,
    actor: str,
    title: str,
    owner_role: str,
    due_at: dt.datetime,
    step: str = "intervening",
    category: str = "school",
    every_days: int | None = None,
    reason: str = "",
) -> PlanTask:
    """Add a task of the school's own to the case's plan (one-to-one plan).

    ``due_at`` is naive UTC, not before the current minute; ``every_days`` 1 to ``MAX_EVERY_DAYS``
    or None; the title at most ``MAX_TITLE`` characters.

    :raises WorkflowError: a bad value or a finished case.
    """
    actor = _actor(actor)
    title = _text(title, "title", required=True)
    reason = _text(reason, "reason")
    _require_open(case)
    if len(title) > MAX_TITLE:
        raise WorkflowError(_("任务名称不能超过 %(n)s 个字符", n=MAX_TITLE))
    if owner_role not in ROLES:
        raise WorkflowError(f"unknown role {owner_role!r}")
    if step not in TASK_STEPS or category not in TASK_CATEGORIES:
        raise WorkflowError(
            f"step must be one of {', '.join(TASK_STEPS)}; category one of {', '.join(TASK_CATEGORIES)}"
        )
    check_every_days(every_days)
    if due_at < utcnow().replace(second=0, microsecond=0):
        raise WorkflowError(_("截止时间不能早于现在"))
    task = PlanTask(
        template_task_id="custom",
        title=title,
        owner_role=owner_role,
        step=step,
        category=category,
        due_at=due_at,
        status="open",
        every_days=every_days,
        resources=[],
    )
    case.tasks.append(task)
    session.flush()
    text = f"新增任务 #{task.id}「{title}」，截止 {to_local(due_at):%Y-%m-%d %H:%M}" + (
        f"。理由：{reason}" if reason else ""
    )
    record_event(session, case, "plan", actor, text + _approval_note(case))
    session.flush()
    return task


def add_note(session: Session, services: Services, case: Case, actor: str, text: str) -> CaseEvent:
    """A free note on the case's timeline."""
    entry = record_event(session, case, "note", _actor(actor), _text(text, "note", required=True))
    session.flush()
    return entry
