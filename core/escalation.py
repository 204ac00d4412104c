"""Escalation up the responsibility tree, undeliverable alerts, task reminders.

These are the scheduler's jobs (:mod:`xinshu.scheduler`). Each takes the
session of the caller's transaction and ``now`` (naive UTC) so that tests can
drive them with a controllable clock. Everything they send goes through the
outbox (:class:`~xinshu.models.Notification`), written in the same
transaction as the change it announces, with a stable idempotency key.

Escalation (:func:`escalate_overdue`)
    A warning that is open and not acknowledged within its level's
    ``response_hours`` (``rules/levels.yaml``) climbs one step of the tree:
    school → district → city. The clock starts when the warning opened, was
    last raised to a higher level, or last escalated, whichever is latest; a
    warning overdue by several limits (the scheduler was down) climbs as many
    steps at once. Each step records ``escalated_to``/``escalated_at``, adds
    a case event (kind ``escalation``) when the warning has a case, and
    queues a notification to the holders at that level (``district_admin`` at
    the district, ``bureau_admin`` at the city) with the key
    ``warning-<id>-esc-<district|city>:<channel>:<role>@<unit id>``.
    :func:`acknowledge` stops it.

Escalation channels (:func:`escalation_channels`)
    ``ESCALATION_CHANNELS`` (comma-separated) if set; otherwise ``inbox`` plus
    every channel ``rules/levels.yaml`` names for that role at that level of
    the tree (today: ``inbox``, ``email`` for the district; ``inbox`` for the
    city). Only configured channels are used.

Undeliverable notifications (:func:`escalate_undeliverable`)
    A ``dead`` notification is kept (shown as 无法送达 in the back office) and
    raises one inbox alert to the admin one level up (a school's
    notification: ``district_admin`` of its district; a district's:
    ``bureau_admin`` of the city; the city's: ``bureau_admin`` of the city),
    key ``dead-<notification id>:inbox:<role>@<unit id>``. An alert that is
    itself undeliverable is logged, not alerted again.

Task reminders (:func:`remind_tasks`)
    An open plan task of an open case due within :data:`REMINDER_LEAD` (24 h)
    or overdue gets one inbox reminder to its ``owner_role`` at the case's
    school (``reminded_at`` is set; the key ``task-<id>-due-<YYYYmmddHHMM>``
    names the due time, so a task whose due time is moved later is reminded
    again).

Re-screening (follow-up rounds)
    A task with ``every_days`` repeats: completing it
    (:func:`xinshu.workflow.complete_task`) adds its next occurrence as a new
    open task due ``every_days`` later. That occurrence is reminded like any
    open task; for a case in ``follow_up`` the reminder is worded as a
    re-screening/follow-up reminder (复评/随访提醒). A cancelled occurrence
    (case closed, plan replaced) is never reminded.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from xinshu.episodes import notification_payload
from xinshu.errors import XinshuError
from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    CaseEvent,
    LevelChange,
    Notification,
    OrgUnit,
    PlanTask,
    RiskWarning,
    Student,
)
from xinshu.services import Services

log = logging.getLogger(__name__)

#: The responsibility tree, bottom up.
TREE = ("school", "district", "city")
#: Who holds a warning escalated to each level.
HOLDER_ROLE = {"district": "district_admin", "city": "bureau_admin"}
TREE_NAMES = {"school": "学校", "district": "区", "city": "市"}
ROLE_NAMES = {
    "bureau_admin": "市教育局管理员",
    "district_admin": "区教育局管理员",
    "principal": "校长",
    "moral_education_director": "德育主任",
    "psychology_teacher": "心理教师",
    "class_teacher": "班主任",
}
#: How long before a task is due its reminder is sent.
REMINDER_LEAD = dt.timedelta(hours=24)
#: Offset of the time shown in messages (Asia/Shanghai, no DST since 1991).
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


@dataclass
class JobReport:
    """Counts of one run of the escalation and reminder jobs."""

    escalated: int = 0
    steps: int = 0
    alerts: int = 0
    reminders: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# --- acknowledgement ------------------------------------------------------------


def acknowledge(session: Session, warning: RiskWarning, actor: str, now: dt.datetime) -> bool:
    """Record that ``actor`` has taken the warning on; escalation stops.

    Returns False (and changes nothing) when it was already acknowledged.
    The case, if any, gets a ``note`` event.

    :raises XinshuError: the warning is not open.
    """
    if warning.status != "open":
        raise XinshuError(f"warning #{warning.id} is {warning.status}, not open")
    if warning.acknowledged_at is not None:
        return False
    warning.acknowledged_at, warning.acknowledged_by = now, actor
    case = case_of(session, warning)
    if case is not None:
        reason = f"确认预警 #{warning.id}（{warning.level}级，当前责任层级：{TREE_NAMES[warning.escalated_to]}）"
        session.add(
            CaseEvent(case=case, from_state=case.state, to_state=case.state, kind="note", actor=actor,
                      reason=reason, at=now)
        )  # fmt: skip
    session.flush()
    return True


def case_of(session: Session, warning: RiskWarning) -> Case | None:
    """The case opened for ``warning`` (the newest, if several)."""
    stmt = select(Case).where(Case.warning_id == warning.id).order_by(Case.id.desc()).limit(1)
    return session.scalar(stmt)


# --- escalation -----------------------------------------------------------------


def clock_start(session: Session, warning: RiskWarning) -> dt.datetime:
    """When the warning's response time started: opened, last raised, or last escalated."""
    raised = session.scalar(
        select(func.max(LevelChange.at)).where(
            LevelChange.warning_id == warning.id,
            or_(LevelChange.from_level.is_(None), LevelChange.to_level > LevelChange.from_level),
        )
    )
    return max(t for t in (warning.created_at, raised, warning.escalated_at) if t is not None)


def steps_due(elapsed: dt.timedelta, limit: dt.timedelta) -> int:
    """How many whole response-time limits ``elapsed`` has *exceeded* (24 h + 1 s of 24 h: 1; 24 h: 0)."""
    if elapsed <= limit:
        return 0
    return math.ceil(elapsed / limit) - 1


def escalate_overdue(session: Session, services: Services, now: dt.datetime) -> JobReport:
    """Climb every open, unacknowledged warning that is past its level's response time."""
    report = JobReport()
    levels = services.declarations.levels
    stmt = (
        select(RiskWarning)
        .where(RiskWarning.status == "open", RiskWarning.acknowledged_at.is_(None), RiskWarning.escalated_to != "city")
        .order_by(RiskWarning.id)
    )
    for warning in session.scalars(stmt).all():
        hours = levels.get(warning.level).response_hours
        steps = steps_due(now - clock_start(session, warning), dt.timedelta(hours=hours))
        steps = min(steps, len(TREE) - 1 - TREE.index(warning.escalated_to))
        if steps <= 0:
            continue
        report.escalated += 1
        for _ in range(steps):
            report.notifications += _climb(session, services, warning, hours, now)
            report.steps += 1
    session.flush()
    return report


def _climb(session: Session, services: Services, warning: RiskWarning, hours: float, now: dt.datetime) -> int:
    target = TREE[TREE.index(warning.escalated_to) + 1]
    school = session.get(Student, warning.student_id).school
    unit = _tree_unit(school, target)
    warning.escalated_to, warning.escalated_at = target, now
    case = case_of(session, warning)
    where = unit.name if unit is not None else TREE_NAMES[target]
    if case is not None:
        reason = f"预警 #{warning.id}（{warning.level}级）未在 {hours:g} 小时内确认，升级至{where}"
        session.add(
            CaseEvent(case=case, from_state=case.state, to_state=case.state, kind="escalation", actor="system",
                      reason=reason, at=now)
        )  # fmt: skip
    if unit is None:
        log.error(
            "warning %s: school %s has no %s in the org tree; nobody to escalate to", warning.id, school.id, target
        )
        return 0
    level = services.declarations.levels.get(warning.level)
    level_name = level.name["zh"]
    payload = notification_payload(services, warning, case, school, level_name)
    ref = f"个案 #{case.id}" if case is not None else f"预警 #{warning.id}"
    payload["subject"] = f"[心数] 升级：{level_name}预警 {ref}（{school.name}）超时未确认"
    payload["body"] = (
        f"{school.name}：{ref}，预警等级 {warning.level}（{level_name}），未在 {hours:g} 小时内确认，"
        f"已升级至{unit.name}。请登录系统查看并督促处理。"
    )
    role = HOLDER_ROLE[target]
    keys = (
        (channel, f"warning-{warning.id}-esc-{target}:{channel}:{role}@{unit.id}")
        for channel in escalation_channels(services, role, target)
    )
    return _queue(session, keys, warning_id=warning.id, case_id=case.id if case else None, role=role,
                  org_unit_id=unit.id, level=warning.level, payload=payload, next_attempt_at=now)  # fmt: skip


def escalation_channels(services: Services, role: str, at: str) -> list[str]:
    """The configured channels an escalation to ``role`` at ``at`` goes through (inbox first)."""
    setting = services.config.get("ESCALATION_CHANNELS")
    if setting:
        wanted = [c.strip() for c in setting.split(",")] if isinstance(setting, str) else list(setting)
    else:
        wanted = ["inbox"]
        for level in services.declarations.levels.levels:
            for target in level.notify:
                if target.role == role and target.at == at:
                    wanted.extend(target.channels)
    configured = services.configured_channels()
    unknown = sorted({c for c in wanted if c and c not in services.channel_classes})
    if unknown:
        log.error("ESCALATION_CHANNELS names unknown channel(s): %s", ", ".join(unknown))
    return sorted({c for c in wanted if c in configured}, key=lambda c: (c != "inbox", c))


def _tree_unit(school: OrgUnit, at: str) -> OrgUnit | None:
    """The school's ancestor of kind ``at`` (``school``, ``district`` or ``city``)."""
    unit: OrgUnit | None = school
    while unit is not None and unit.kind != at:
        unit = unit.parent
    return unit


def _queue(session: Session, keyed: Iterable[tuple[str, str]], **fields) -> int:
    """Add one outbox row per ``(channel, key)`` whose key is new; return how many."""
    count = 0
    for channel, key in keyed:
        if session.scalar(select(Notification.id).where(Notification.idempotency_key == key)) is not None:
            continue
        session.add(Notification(idempotency_key=key, channel=channel, **fields))
        count += 1
    session.flush()
    return count


# --- undeliverable notifications ----------------------------------------------------


def escalate_undeliverable(session: Session, services: Services, now: dt.datetime) -> JobReport:
    """One inbox alert, one level up, for every ``dead`` notification not yet alerted."""
    report = JobReport()
    if "inbox" not in services.channel_classes:
        log.error("the inbox channel is not registered; undeliverable notifications cannot be alerted")
        return report
    alerted = {
        int(key.split(":", 1)[0].removeprefix("dead-"))
        for key in session.scalars(
            select(Notification.idempotency_key).where(Notification.idempotency_key.like("dead-%"))
        )
    }
    stmt = select(Notification).where(Notification.status == "dead").order_by(Notification.id)
    for dead in session.scalars(stmt).all():
        if dead.id in alerted:
            continue
        if dead.idempotency_key.startswith("dead-"):
            log.error("undeliverable alert %s could not be delivered either (%s)", dead.id, dead.last_error)
            continue
        role, unit = _alert_target(dead.org_unit)
        if unit is None:
            log.error("notification %s is undeliverable and its org unit has no admin above it", dead.id)
            continue
        payload = _undeliverable_payload(session, dead)
        key = f"dead-{dead.id}:inbox:{role}@{unit.id}"
        added = _queue(session, [("inbox", key)], warning_id=dead.warning_id, case_id=dead.case_id, role=role,
                       org_unit_id=unit.id, level=dead.level, payload=payload, next_attempt_at=now)  # fmt: skip
        report.alerts += added
        report.notifications += added
    return report


def _alert_target(unit: OrgUnit) -> tuple[str, OrgUnit | None]:
    """Who is told that a notification to ``unit`` is undeliverable: the admin one level up."""
    district = _tree_unit(unit, "district") if unit.kind not in ("district", "city") else None
    if district is not None:
        return "district_admin", district
    return "bureau_admin", _tree_unit(unit, "city")


def _undeliverable_payload(session: Session, dead: Notification) -> dict:
    unit = session.get(OrgUnit, dead.org_unit_id)
    ref = f"个案 #{dead.case_id}" if dead.case_id else f"预警 #{dead.warning_id}"
    who = f"{unit.name}{ROLE_NAMES.get(dead.role, dead.role)}"
    subject = f"[心数] 通知无法送达：{ref}（{dead.level}级）"
    body = (
        f"发给{who}的 {dead.channel} 通知（{ref}，预警等级 {dead.level}）重试 {dead.attempts} 次仍无法送达。"
        "请通过其他方式联系对方，并检查该通知渠道的配置。"
    )
    return {"subject": subject, "body": body, "link": dead.payload.get("link", "")}


# --- task reminders and re-screening ----------------------------------------------


def remind_tasks(session: Session, services: Services, now: dt.datetime) -> JobReport:
    """One inbox reminder per open task of an open case that is due within
    :data:`REMINDER_LEAD` or overdue (re-screening wording for repeating tasks of
    cases in follow-up)."""
    report = JobReport()
    if "inbox" not in services.channel_classes:
        log.error("the inbox channel is not registered; task reminders cannot be sent")
        return report
    stmt = (
        select(PlanTask)
        .join(Case, PlanTask.case_id == Case.id)
        .where(Case.state.in_(OPEN_CASE_STATES), PlanTask.status == "open", PlanTask.due_at <= now + REMINDER_LEAD)
        .order_by(PlanTask.id)
    )
    for task in session.scalars(stmt).all():
        rescreen = bool(task.every_days) and task.case.state == "follow_up"
        report.reminders += _remind(session, services, task, task.due_at, now, rescreen=rescreen)
    report.notifications = report.reminders
    return report


def _remind(
    session: Session, services: Services, task: PlanTask, due: dt.datetime, now: dt.datetime, rescreen: bool
) -> int:
    if task.reminded_at is not None and task.reminded_at >= due - REMINDER_LEAD:
        return 0  # already reminded for this due time
    case = task.case
    school = session.get(OrgUnit, case.school_id)
    local = due.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ).strftime("%m-%d %H:%M")
    what = "复评/随访" if rescreen else "任务"
    when = f"已于 {local} 到期，已逾期" if due <= now else f"将于 {local} 到期"
    base = str(services.config.get("PUBLIC_URL", "http://127.0.0.1:5000")).rstrip("/")
    payload = {
        "subject": f"[心数] {what}提醒：个案 #{case.id}「{task.title}」{when}",
        "body": f"{school.name}：个案 #{case.id} 的{what}「{task.title}」{when}。请登录系统处理并记录。",
        "link": f"{base}/admin/case/details/?id={case.id}",
    }
    key = f"task-{task.id}-due-{due:%Y%m%d%H%M}:inbox:{task.owner_role}@{school.id}"
    task.reminded_at = now
    return _queue(session, [("inbox", key)], warning_id=case.warning_id, case_id=case.id, role=task.owner_role,
                  org_unit_id=school.id, level=case.level, payload=payload, next_attempt_at=now)  # fmt: skip
