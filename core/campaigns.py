"""Screening campaigns (测评活动): their window, legal basis and guardian consent, and the
answer gate (security.md J1, J5, K2; PIPL Arts. 13, 28, 29, 31).

A :class:`~xinshu.models.Campaign` names the scales, the org unit (city, district
or school) whose students take part, a window (``opens_at`` ≤ t < ``closes_at``,
stored as naive UTC, entered and shown in Asia/Shanghai: a window that closes on
"2025-10-31" is open until 2025-10-31 24:00 +08:00), its legal basis and how many
days its results are kept (:mod:`xinshu.retention`).

Legal basis (PIPL Art. 13): ``consent``, or ``statutory_duty`` with the documented
basis in ``legal_basis_ref`` (e.g. the bureau's notice number). The basis and the
org unit of a campaign cannot change once responses are stored under it, so every
response's basis is that of its campaign (``Response.campaign_id``).

:func:`answer_allowed` decides whether a student may answer at a given time:
outside the window, for a student who is not enrolled and active, or outside the
campaign's org unit, it refuses. With basis ``consent`` a student under 14 on the
day of answering (Beijing date) needs a guardian's consent for the campaign
(:class:`~xinshu.models.GuardianConsent` with purpose ``screening``): the latest
decision recorded up to that time must be ``granted`` (a later ``withdrawn`` or
``refused`` ends it).

**Unknown birth date.** A student whose birth date is not on the roster is treated
as under 14, whatever the grade: grade is no proxy for age (grades 8 and 9 hold
13- and 14-year-olds alike), and PIPL Art. 31 puts the burden on the processor.
The refusal says so, and the fix is to complete the roster or record the consent.

:func:`consent_notice` builds the guardian notice of a campaign (儿童个人信息网络保护规定
Art. 10): purpose, legal basis, data collected, storage location, retention, security
measures, consequences of refusal, the correction/deletion channel, the complaint
channel and a refusal option, from the campaign's fields and a Python template.

:func:`write_research_export` writes the de-identified research export of a campaign
(security.md P2, D3): one row per score with the student's keyed pseudonym
(:func:`xinshu.exports.pseudonym`, key :func:`pseudonym_key`), school code, grade,
gender, instrument, scale, raw score, T score, percentile, band and the Beijing date
of submission; never a name, ID number, 学籍号, phone, address or birth date. Grade
and school are the student's current ones. Small groups (one school, grade and
gender with few students) can still single a child out: share the file only under
a data-use agreement. Each export writes an audit row with its row count.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.errors import RowError, XinshuError
from xinshu.models import Campaign, GuardianConsent, OrgUnit, Response, Score, Student, User, utcnow

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
LEGAL_BASES = ("consent", "statutory_duty")
#: Org-unit kinds a campaign may cover.
CAMPAIGN_UNIT_KINDS = ("city", "district", "school")
#: The purpose of a guardian consent that covers a campaign.
SCREENING_PURPOSE = "screening"
CONSENT_DECISIONS = ("granted", "refused", "withdrawn")
#: Students below this age (in whole years, on the day of answering) need a guardian's consent.
CONSENT_AGE = 14
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 4000
MAX_RETENTION_DAYS = 3650
#: Who may create and edit campaigns (within the org units they hold the role at).
MANAGER_ROLES = ("bureau_admin", "district_admin")
#: Who records a guardian's decision for a campaign (at the student's class or above).
CONSENT_ROLES = ("psychology_teacher", "moral_education_director", "principal", "class_teacher")
#: A consent decision may be dated this far ahead of the server clock (clock skew).
CLOCK_SKEW = dt.timedelta(minutes=5)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


class CampaignError(XinshuError):
    """Bad campaign or consent input, or a change that is not allowed."""


# --- time -----------------------------------------------------------------------


def to_utc(value: dt.datetime) -> dt.datetime:
    """An aware datetime, or a naive one taken as UTC, as naive UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def to_local(value: dt.datetime) -> dt.datetime:
    """A naive-UTC timestamp as an aware Asia/Shanghai one (no use of the server's TZ)."""
    return value.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ)


def parse_local_bound(text: str, end: bool) -> dt.datetime:
    """A window bound typed in Beijing time, as naive UTC.

    ``YYYY-MM-DD`` means the start of that day for an opening bound and the end
    of that day (24:00, i.e. the next day's 00:00) for a closing bound;
    ``YYYY-MM-DD HH:MM[:SS]`` (or with ``T``) is that exact time.

    :raises CampaignError: text in neither form.
    """
    text = (text or "").strip()
    try:
        if _DATE.match(text):
            day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
            local = dt.datetime.combine(day, dt.time(0, 0), tzinfo=CHINA_TZ)
        elif _DATETIME.match(text):
            local = dt.datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=CHINA_TZ)
        else:
            raise ValueError(text)
    except ValueError:
        raise CampaignError(_("时间“%(text)s”格式应为 YYYY-MM-DD 或 YYYY-MM-DD HH:MM（北京时间）", text=text)) from None
    return to_utc(local)


def local_text(value: dt.datetime | None) -> str:
    """Naive UTC as ``YYYY-MM-DD HH:MM`` Beijing time ("" for None); closing bounds use :func:`closing_text`."""
    return to_local(value).strftime("%Y-%m-%d %H:%M") if value else ""


def closing_text(value: dt.datetime) -> str:
    """A closing bound in Beijing time; local midnight reads ``<previous day> 24:00``."""
    local = to_local(value)
    if local.time() == dt.time(0, 0):
        return f"{(local.date() - dt.timedelta(days=1)).isoformat()} 24:00"
    return local.strftime("%Y-%m-%d %H:%M")


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Age in whole years on ``day`` (a 29 February birthday is reached on 1 March in other years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


# --- campaigns ---------------------------------------------------------------------


@dataclass
class CampaignInput:
    """The editable fields of a campaign; bounds are naive UTC (see :func:`parse_local_bound`)."""

    code: str
    name: str
    org_unit_id: int
    instruments: list[str]
    opens_at: dt.datetime
    closes_at: dt.datetime
    legal_basis: str
    legal_basis_ref: str = ""
    purpose: str = ""
    retention_days: int = 3 * 365


#: Fields compared and audited on edit (none of them is personal information).
CAMPAIGN_FIELDS = (
    "code",
    "name",
    "org_unit_id",
    "instruments",
    "opens_at",
    "closes_at",
    "legal_basis",
    "legal_basis_ref",
    "purpose",
    "retention_days",
)
#: Fields that cannot change once responses are stored under the campaign.
FROZEN_WITH_RESPONSES = ("org_unit_id", "legal_basis", "legal_basis_ref")


def _clean(data: CampaignInput, known_instruments: Collection[str] | None) -> CampaignInput:
    code, name = (data.code or "").strip(), (data.name or "").strip()
    if not CODE_PATTERN.match(code):
        raise CampaignError(_("活动代码只能含字母、数字和 ._-，最长64个字符"))
    if not name or len(name) > 200:
        raise CampaignError(_("请填写活动名称（最多200字）"))
    instruments = list(dict.fromkeys(i.strip() for i in data.instruments if i and i.strip()))
    if not instruments:
        raise CampaignError(_("请至少选择一个量表"))
    unknown = [i for i in instruments if known_instruments is not None and i not in known_instruments]
    if unknown:
        raise CampaignError(_("未知的量表：%(ids)s", ids=", ".join(unknown)))
    if data.closes_at <= data.opens_at:
        raise CampaignError(_("结束时间必须晚于开始时间"))
    if data.legal_basis not in LEGAL_BASES:
        raise CampaignError(_("法律依据须为“监护人同意”或“法定职责”"))
    ref, purpose = (data.legal_basis_ref or "").strip(), (data.purpose or "").strip()
    if data.legal_basis == "statutory_duty" and not ref:
        raise CampaignError(_("以法定职责为依据时，须填写文件依据（如教育局通知文号）"))
    if not purpose:
        raise CampaignError(_("请填写处理目的"))
    if len(ref) > MAX_TEXT or len(purpose) > MAX_TEXT:
        raise CampaignError(_("文字最多%(n)s字", n=MAX_TEXT))
    if not 1 <= int(data.retention_days) <= MAX_RETENTION_DAYS:
        raise CampaignError(_("保存期限须在1到%(n)s天之间", n=MAX_RETENTION_DAYS))
    return CampaignInput(
        code=code,
        name=name,
        org_unit_id=data.org_unit_id,
        instruments=instruments,
        opens_at=data.opens_at,
        closes_at=data.closes_at,
        legal_basis=data.legal_basis,
        legal_basis_ref=ref,
        purpose=purpose,
        retention_days=int(data.retention_days),
    )


def _unit(session: Session, unit_id: int) -> OrgUnit:
    unit = session.get(OrgUnit, unit_id)
    if unit is None or unit.kind not in CAMPAIGN_UNIT_KINDS:
        raise CampaignError(_("测评活动须面向一个市、区或学校"))
    return unit


def may_manage(user: User | None, unit: OrgUnit) -> bool:
    """True when ``user`` holds a :data:`MANAGER_ROLES` role at ``unit`` or above it."""
    if user is None or not user.is_active:
        return False
    return any(
        a.role in MANAGER_ROLES and a.org_unit is not None and unit.path.startswith(a.org_unit.path) for a in user.roles
    )


def _check_manager(actor: User | str, unit: OrgUnit) -> str:
    if isinstance(actor, User):
        if not may_manage(actor, unit):
            raise CampaignError(_("只能管理本人所辖范围内的测评活动"))
        return actor.username
    name = (actor or "").strip()
    if not name:
        raise CampaignError(_("须填写操作人"))
    return name


def _snapshot(campaign: Campaign) -> dict[str, Any]:
    values = {name: getattr(campaign, name) for name in CAMPAIGN_FIELDS}
    for name in ("opens_at", "closes_at"):
        values[name] = values[name].isoformat() if values[name] else None
    values["instruments"] = list(values["instruments"] or [])
    return values


def create_campaign(
    session: Session, data: CampaignInput, actor: User | str, known_instruments: Collection[str] | None = None
) -> Campaign:
    """Add a campaign (flushes; the caller commits) and its audit row.

    :param actor: a :class:`User` (must hold a manager role at the org unit or above) or a name (CLI).
    :param known_instruments: instrument ids that exist (None: not checked).
    :raises CampaignError: invalid input, a code already used, or an org unit out of the actor's reach.
    """
    data = _clean(data, known_instruments)
    unit = _unit(session, data.org_unit_id)
    name = _check_manager(actor, unit)
    if session.scalar(select(Campaign.id).where(Campaign.code == data.code)) is not None:
        raise CampaignError(_("活动代码 %(code)s 已被使用", code=data.code))
    campaign = Campaign(**{f: getattr(data, f) for f in CAMPAIGN_FIELDS}, created_by=name)
    session.add(campaign)
    session.flush()
    audit.record(session, "create", "campaign", campaign.id, detail={"after": _snapshot(campaign)}, actor=actor)
    return campaign


def update_campaign(
    session: Session,
    campaign: Campaign,
    data: CampaignInput,
    actor: User | str,
    known_instruments: Collection[str] | None = None,
) -> list[str]:
    """Change a campaign; returns the names of the fields that changed (audited with before/after).

    :raises CampaignError: invalid input, the actor may not manage the old or new org unit, or a
        change of org unit or legal basis after responses were stored under the campaign.
    """
    data = _clean(data, known_instruments)
    _check_manager(actor, campaign.org_unit)
    _check_manager(actor, _unit(session, data.org_unit_id))
    if data.code != campaign.code:
        raise CampaignError(_("活动代码不能修改"))
    before = _snapshot(campaign)
    changed = [f for f in CAMPAIGN_FIELDS if getattr(data, f) != getattr(campaign, f)]
    frozen = [f for f in changed if f in FROZEN_WITH_RESPONSES]
    if frozen and response_count(session, campaign) > 0:
        raise CampaignError(_("已有答卷的测评活动不能修改面向单位或法律依据"))
    for name in changed:
        setattr(campaign, name, getattr(data, name))
    if changed:
        session.flush()
        after = _snapshot(campaign)
        detail = {"fields": changed, "before": {f: before[f] for f in changed}, "after": {f: after[f] for f in changed}}
        audit.record(session, "update", "campaign", campaign.id, detail=detail, actor=actor)
    return changed


def response_count(session: Session, campaign: Campaign) -> int:
    """Responses stored under ``campaign``."""
    return session.scalar(select(func.count()).select_from(Response).where(Response.campaign_id == campaign.id)) or 0


def get_campaign(session: Session, code: str) -> Campaign:
    """The campaign with ``code``.

    :raises CampaignError: there is none.
    """
    campaign = session.scalar(select(Campaign).where(Campaign.code == (code or "").strip()))
    if campaign is None:
        raise CampaignError(_("没有代码为 %(code)s 的测评活动", code=code))
    return campaign


def visible_campaigns(user: User | None):
    """A ``select`` of the campaigns ``user`` sees: those at their org units or below them, and
    those covering their units from above (a school's staff see the city's campaign). Deny by
    default: no assignment, no campaign."""
    if user is None or not user.is_active:
        return select(Campaign).where(false())
    prefixes = sorted({a.org_unit.path for a in user.roles if a.org_unit is not None})
    if not prefixes:
        return select(Campaign).where(false())
    ancestors = sorted(_ancestor_paths(prefixes))
    under = [OrgUnit.path.startswith(prefix, autoescape=True) for prefix in prefixes]
    return (
        select(Campaign)
        .join(OrgUnit, OrgUnit.id == Campaign.org_unit_id)
        .where(or_(*under, OrgUnit.path.in_(ancestors)))
    )


def _ancestor_paths(prefixes: Iterable[str]) -> set[str]:
    paths = set()
    for prefix in prefixes:
        parts = [p for p in prefix.split("/") if p]
        paths.update("/" + "/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1))
    return paths


def instrument_problem(campaign: Campaign, instrument_id: str) -> str | None:
    """Why answers of ``instrument_id`` cannot be filed under ``campaign`` (None: they can)."""
    if campaign.instruments and instrument_id not in campaign.instruments:
        return _(
            "测评活动 %(code)s 不包含量表 %(instrument)s（包含：%(known)s）",
            code=campaign.code,
            instrument=instrument_id,
            known=", ".join(campaign.instruments),
        )
    return None


# --- consent -----------------------------------------------------------------------


def record_campaign_consent(
    session: Session,
    campaign: Campaign,
    student: Student,
    decision: str,
    relation: str,
    evidence: str,
    actor: User | str,
    at: dt.datetime | None = None,
) -> GuardianConsent:
    """Record a guardian's consent, refusal or withdrawal for ``campaign`` (append-only, audited).

    :param relation: one of :data:`xinshu.referrals.GUARDIAN_RELATIONS`.
    :param evidence: where the signed receipt or the record of an oral decision is kept (required;
        never the child's name or ID number).
    :param at: when the guardian decided (aware, or naive UTC; default now; not in the future).
    :raises CampaignError: unknown decision or relation, no evidence, a student outside the
        campaign's org unit, or a user without a :data:`CONSENT_ROLES` role covering the student.
    """
    from xinshu.referrals import GUARDIAN_RELATIONS

    if decision not in CONSENT_DECISIONS:
        raise CampaignError(_("监护人意见须为同意、拒绝或撤回"))
    if relation not in GUARDIAN_RELATIONS:
        raise CampaignError(_("请选择监护人与学生的关系"))
    evidence = (evidence or "").strip()
    if not evidence or len(evidence) > MAX_TEXT:
        raise CampaignError(_("请填写凭证说明（如回执存放位置），最多%(n)s字", n=MAX_TEXT))
    if not in_campaign_unit(session, campaign, student):
        raise CampaignError(_("该学生不在本测评活动的范围内"))
    if isinstance(actor, User):
        if not covers(actor, CONSENT_ROLES, student):
            raise CampaignError(_("只能为本人负责的学生登记监护人意见"))
        recorded_by = actor.username
    else:
        recorded_by = (actor or "").strip()
        if not recorded_by:
            raise CampaignError(_("须填写操作人"))
    now = utcnow()
    when = to_utc(at) if at is not None else now
    if when > now + CLOCK_SKEW:
        raise CampaignError(_("登记时间不能晚于现在"))
    consent = GuardianConsent(
        student_id=student.id,
        campaign_id=campaign.id,
        purpose=SCREENING_PURPOSE,
        decision=decision,
        guardian_relation=relation,
        evidence=evidence,
        recorded_by=recorded_by,
        at=when,
    )
    session.add(consent)
    session.flush()
    detail = {"campaign_id": campaign.id, "student_id": student.id, "decision": decision, "relation": relation}
    audit.record(session, "create", "guardian_consent", consent.id, detail=detail, actor=actor)
    return consent


def consent_state(session: Session, campaign: Campaign, student: Student, at: dt.datetime | None = None) -> str | None:
    """The guardian's current decision for ``campaign`` (``granted``, ``refused``, ``withdrawn``)
    as recorded up to ``at`` (default: everything recorded), or None when there is none."""
    stmt = select(GuardianConsent.decision).where(
        GuardianConsent.student_id == student.id,
        GuardianConsent.campaign_id == campaign.id,
        GuardianConsent.purpose == SCREENING_PURPOSE,
    )
    if at is not None:
        stmt = stmt.where(GuardianConsent.at <= to_utc(at))
    return session.scalar(stmt.order_by(GuardianConsent.at.desc(), GuardianConsent.id.desc()).limit(1))


# --- the answer gate ------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """Whether a student may answer under a campaign, and why.

    ``code``: ``ok``, ``not_open``, ``closed``, ``not_enrolled``, ``out_of_scope``,
    ``no_consent``, ``consent_refused`` or ``consent_withdrawn``. ``message`` is the
    user-facing reason (Chinese); ``basis_ref`` is the documented statutory basis.
    """

    allowed: bool
    code: str
    message: str
    legal_basis: str
    basis_ref: str = ""
    under_14: bool | None = None

    def __bool__(self) -> bool:
        return self.allowed


def in_campaign_unit(session: Session, campaign: Campaign, student: Student) -> bool:
    """True when the student's class lies under the campaign's org unit."""
    unit = campaign.org_unit or session.get(OrgUnit, campaign.org_unit_id)
    klass = student.class_unit or session.get(OrgUnit, student.class_id)
    return unit is not None and klass is not None and klass.path.startswith(unit.path)


def is_under_consent_age(student: Student, at: dt.datetime) -> bool:
    """True when the student is under :data:`CONSENT_AGE` on ``at``'s Beijing date, or the birth
    date is unknown (treated as under 14; see the module docstring)."""
    if student.birth_date is None:
        return True
    return age_on(student.birth_date, to_local(to_utc(at)).date()) < CONSENT_AGE


def answer_allowed(session: Session, campaign: Campaign, student: Student, at: dt.datetime) -> Decision:
    """May ``student`` answer under ``campaign`` at ``at`` (aware, or naive UTC)?

    Refuses outside ``opens_at`` ≤ at < ``closes_at``, for a student who is not enrolled
    and active or not under the campaign's org unit, and — with basis ``consent`` — for a
    student under 14 (or of unknown birth date) without a guardian's granted consent that
    was not later refused or withdrawn (as recorded up to ``at``).
    """
    when = to_utc(at)
    basis, ref = campaign.legal_basis, campaign.legal_basis_ref or ""

    def refuse(code: str, message: str, under_14: bool | None = None) -> Decision:
        return Decision(False, code, message, basis, ref, under_14)

    if when < campaign.opens_at:
        opens = local_text(campaign.opens_at)
        return refuse(
            "not_open", _("测评活动 %(code)s 于 %(at)s（北京时间）开始，尚未开放", code=campaign.code, at=opens)
        )
    if when >= campaign.closes_at:
        closes = closing_text(campaign.closes_at)
        return refuse("closed", _("测评活动 %(code)s 已于 %(at)s（北京时间）结束", code=campaign.code, at=closes))
    if not student.active or student.status != "enrolled":
        return refuse("not_enrolled", _("学生 #%(id)s 不是在读学生", id=student.id))
    if not in_campaign_unit(session, campaign, student):
        message = _("学生 #%(id)s 不在测评活动 %(code)s 的范围内", id=student.id, code=campaign.code)
        return refuse("out_of_scope", message)
    if basis == "statutory_duty":
        return Decision(True, "ok", _("依据法定职责：%(ref)s", ref=ref), basis, ref)
    under_14 = is_under_consent_age(student, when)
    if not under_14:
        return Decision(True, "ok", _("依据同意（已满14周岁）"), basis, ref, False)
    state = consent_state(session, campaign, student, when)
    if state == "granted":
        return Decision(True, "ok", _("依据监护人同意"), basis, ref, True)
    note = _("（出生日期未知，按未满14周岁处理）") if student.birth_date is None else ""
    messages = {
        None: _("学生 #%(id)s 未满14周岁%(note)s，本次测评以同意为依据，须先登记监护人同意", id=student.id, note=note),
        "refused": _("学生 #%(id)s 的监护人已拒绝参加本次测评", id=student.id),
        "withdrawn": _("学生 #%(id)s 的监护人已撤回同意", id=student.id),
    }
    codes = {None: "no_consent", "refused": "consent_refused", "withdrawn": "consent_withdrawn"}
    return refuse(codes[state], messages[state], True)


def gate_rows(
    session: Session,
    campaign: Campaign,
    rows: Iterable[tuple[int, Student]],
    at: dt.datetime,
    column: str = "",
    sheet: str = "",
) -> list[RowError]:
    """One :class:`RowError` per ``(row number, student)`` that :func:`answer_allowed` refuses."""
    errors = []
    for number, student in rows:
        decision = answer_allowed(session, campaign, student, at)
        if not decision:
            errors.append(RowError(number, column, decision.message, sheet))
    return errors


def covers(user: User | None, roles: tuple[str, ...], student: Student) -> bool:
    """True when ``user`` holds one of ``roles`` at the student's class or an org unit above it."""
    if user is None or not user.is_active or student.class_unit is None:
        return False
    path = student.class_unit.path
    return any(a.role in roles and a.org_unit is not None and path.startswith(a.org_unit.path) for a in user.roles)


# --- the guardian notice (J5) -------------------------------------------------------------


@dataclass(frozen=True)
class NoticeSection:
    """One heading of the notice; ``id`` is used as the HTML element id (``notice-<id>``)."""

    id: str
    heading: str
    text: str


#: Settings for the notice, from the app/CLI config or ``XINSHU_PRIVACY_<NAME>``.
NOTICE_SETTINGS = ("PRIVACY_STORAGE_LOCATION", "PRIVACY_CONTACT", "PRIVACY_OFFICER", "PRIVACY_COMPLAINTS")

_BASIS_TEXT = {
    "consent": _l(
        "监护人单独同意（《个人信息保护法》第二十九条、第三十一条）。未满十四周岁的学生，须经监护人同意后方可参加。"
    ),
    "statutory_duty": _l("为履行法定职责所必需（《个人信息保护法》第十三条第一款第三项）。文件依据：{ref}"),
}
_REFUSAL_TEXT = {
    "consent": _l(
        "不同意不影响学生正常的学习和在校的任何权益，学生不参加本次测评，学校不会收集其作答信息。"
        "您可以随时撤回同意；撤回后不再收集新的作答，已提交的作答可按下述途径申请删除。"
        "学生如有心理困扰，学校仍会按常规提供心理辅导。"
    ),
    "statutory_duty": _l(
        "本次测评依据法定职责开展，不以监护人同意为前提；对处理有异议的，可通过下述途径提出，"
        "学校将予以答复。拒绝或不配合不影响学生正常的学习和在校的任何权益。"
    ),
}
_OPTION_TEXT = {
    "consent": _l("请在回执上勾选：□ 同意孩子参加本次测评　□ 不同意孩子参加本次测评。不作选择视为不同意。"),
    "statutory_duty": _l("请在回执上勾选：□ 已知悉　□ 有异议（请写明理由）。"),
}
#: The notice, heading by heading: ``(id, heading, text)``; ``{placeholders}`` are filled from the
#: campaign and the settings (:func:`consent_notice`).
NOTICE_TEMPLATE: tuple[tuple[str, Any, Any], ...] = (
    ("purpose", _l("处理目的"), "{purpose}"),
    ("legal_basis", _l("法律依据"), "{basis}"),
    (
        "data",
        _l("收集的信息"),
        _l(
            "量表作答：{instruments}；由作答计算的得分、常模分和预警等级；"
            "学校、年级、班级、性别和出生日期（用于核对身份、判断年龄和常模比较）。不收集与本目的无关的信息。"
        ),
    ),
    ("storage", _l("存储地点"), "{storage}"),
    (
        "retention",
        _l("保存期限"),
        _l(
            "作答和得分自提交之日起保存{retention_days}天，到期后删除；学生处于尚未结束的危机干预个案中的，"
            "在个案结束后删除。测评时间：{opens}至{closes}（北京时间）。"
        ),
    ),
    (
        "security",
        _l("安全措施"),
        _l(
            "按市、区、学校、班级分级授权，工作人员只能查看职责范围内的学生；查看和导出均记录审计日志，"
            "日志保存不少于六个月；传输加密；研究用数据去除姓名、身份证号等标识后以代号提供；"
            "有专人负责个人信息保护，发生安全事件时依法告知并报告。"
        ),
    ),
    ("refusal", _l("拒绝的后果"), "{refusal}"),
    (
        "rights",
        _l("更正和删除的途径"),
        _l(
            "您可以查阅、更正孩子的信息，或要求删除：请向{contact}提出，学校自收到之日起15个工作日内办理并答复"
            "（《未成年人保护法》第七十二条；依法须保留的除外）。"
        ),
    ),
    ("complaints", _l("投诉渠道"), "{complaints}"),
    ("officer", _l("个人信息保护负责人"), "{officer}"),
    ("option", _l("拒绝选项"), "{option}"),
)


def notice_settings(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The notice settings: config keys of :data:`NOTICE_SETTINGS`, else ``XINSHU_<KEY>``, else defaults."""
    config = config or {}
    defaults = {
        "PRIVACY_STORAGE_LOCATION": _("中华人民共和国境内，由本市教育局管理的服务器，不向境外提供"),
        "PRIVACY_CONTACT": _("学校心理教师、德育主任或校长（书面、电话或当面均可）"),
        "PRIVACY_OFFICER": _("学校校长（个人信息保护负责人），可通过学校办公室联系"),
        "PRIVACY_COMPLAINTS": _("学校办公室；对学校答复不满意的，可向所在区教育局投诉"),
    }
    return {
        key: str(config.get(key) or os.environ.get(f"XINSHU_{key}") or defaults[key]).strip() for key in NOTICE_SETTINGS
    }


def consent_notice(
    campaign: Campaign, instrument_titles: Mapping[str, str] | None = None, settings: Mapping[str, str] | None = None
) -> list[NoticeSection]:
    """The guardian notice of ``campaign`` as headed sections (see :data:`NOTICE_TEMPLATE`).

    :param instrument_titles: instrument id → title (default: the ids).
    :param settings: from :func:`notice_settings` (default: from the environment).
    """
    settings = dict(settings or notice_settings())
    titles = instrument_titles or {}
    basis = campaign.legal_basis if campaign.legal_basis in LEGAL_BASES else "consent"
    values = {
        "purpose": campaign.purpose or "",
        "basis": str(_BASIS_TEXT[basis]).format(ref=campaign.legal_basis_ref or ""),
        "instruments": _("、").join(titles.get(i, i) for i in campaign.instruments or []) or "—",
        "storage": settings["PRIVACY_STORAGE_LOCATION"],
        "retention_days": campaign.retention_days,
        "opens": local_text(campaign.opens_at),
        "closes": closing_text(campaign.closes_at),
        "refusal": str(_REFUSAL_TEXT[basis]),
        "contact": settings["PRIVACY_CONTACT"],
        "complaints": settings["PRIVACY_COMPLAINTS"],
        "officer": settings["PRIVACY_OFFICER"],
        "option": str(_OPTION_TEXT[basis]),
    }
    # Only the template is formatted; campaign text is substituted as data, never parsed.
    return [NoticeSection(key, str(heading), str(text).format(**values)) for key, heading, text in NOTICE_TEMPLATE]


def notice_text(campaign: Campaign, sections: list[NoticeSection]) -> str:
    """The notice as plain text (for printing or the CLI)."""
    lines = [_("%(name)s（%(code)s）监护人告知书", name=campaign.name, code=campaign.code), ""]
    for number, section in enumerate(sections, 1):
        lines += [f"{number}. {section.heading}", f"   {section.text}", ""]
    return "\n".join(lines)


# --- de-identified research export -------------------------------------------------------

#: Columns of the research export: one row per score, no name, ID, phone, address or birth date.
RESEARCH_COLUMNS = (
    ("pseudonym", _l("学生代号")),
    ("school_code", _l("学校代码")),
    ("grade", _l("年级")),
    ("gender", _l("性别")),
    ("instrument", _l("量表")),
    ("scale", _l("分量表")),
    ("raw_score", _l("原始分")),
    ("t_score", _l("T分")),
    ("percentile", _l("百分位")),
    ("band", _l("等级")),
    ("submitted_date", _l("提交日期")),
)
RESEARCH_FORMATS = ("csv", "xlsx")


def pseudonym_key(config: Mapping[str, Any] | None = None) -> str | bytes:
    """The key of export pseudonyms: ``PSEUDONYM_KEY`` / ``XINSHU_PSEUDONYM_KEY``, else the secret key
    (``SECRET_KEY`` / ``XINSHU_SECRET_KEY``). The same key gives the same pseudonyms in every export.

    :raises CampaignError: neither is set (a random key would make pseudonyms change between exports).
    """
    config = config or {}
    for value in (
        config.get("XINSHU_PSEUDONYM_KEY"),
        config.get("PSEUDONYM_KEY"),
        os.environ.get("XINSHU_PSEUDONYM_KEY"),
        config.get("SECRET_KEY"),
        os.environ.get("XINSHU_SECRET_KEY"),
    ):
        if value:
            return value if isinstance(value, bytes) else str(value)
    raise CampaignError(_("请设置 XINSHU_PSEUDONYM_KEY（或 XINSHU_SECRET_KEY），去标识化导出的代号由它生成"))


def research_rows(
    session: Session, campaign: Campaign, key: str | bytes, students: Select | None = None
) -> Iterator[list]:
    """The export's rows (see :data:`RESEARCH_COLUMNS`), one per score of the campaign's responses.

    :param key: the pseudonym key (:func:`pseudonym_key`).
    :param students: a ``select`` of student ids to restrict to (the exporting user's scope); None: all.
    """
    from xinshu.exports import pseudonym

    stmt = (
        select(
            Response.student_id,
            OrgUnit.code,
            Student.grade_level,
            Student.gender,
            Response.instrument_id,
            Score.scale,
            Score.raw_score,
            Score.t_score,
            Score.percentile,
            Score.band,
            Response.submitted_at,
        )
        .join(Response, Response.id == Score.response_id)
        .join(Student, Student.id == Response.student_id)
        .join(OrgUnit, OrgUnit.id == Student.school_id)
        .where(Response.campaign_id == campaign.id)
        .order_by(Response.id, Score.id)
    )
    if students is not None:
        stmt = stmt.where(Response.student_id.in_(students))
    for row in session.execute(stmt).yield_per(1000):
        student_id, school, grade, gender, instrument, scale, raw, t_score, percentile, band, submitted = row
        day = to_local(submitted).date().isoformat()
        yield [
            pseudonym(student_id, key),
            school,
            grade,
            gender,
            instrument,
            scale,
            raw,
            t_score,
            percentile,
            band,
            day,
        ]


def write_research_export(
    session: Session,
    campaign: Campaign,
    out: IO[bytes],
    fmt: str,
    key: str | bytes,
    actor: User | str,
    students: Select | None = None,
) -> int:
    """Write the de-identified export of ``campaign`` to ``out`` and add its audit row
    (action ``export``, ``deidentified: true``, the row count) to ``session``; the caller commits,
    and must not hand the file out if the commit fails.

    :param fmt: ``csv`` (UTF-8 with BOM, RFC 4180) or ``xlsx``; cells escaped against formulas.
    :return: the number of data rows.
    :raises CampaignError: an unknown format.
    """
    from xinshu.exports import write_csv, write_xlsx

    if fmt not in RESEARCH_FORMATS:
        raise CampaignError(_("导出格式须为 csv 或 xlsx"))
    header = [str(label) for _name, label in RESEARCH_COLUMNS]
    rows = research_rows(session, campaign, key, students)
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        count = write_csv(text, header, rows)
        text.detach()
    else:
        count = write_xlsx(out, header, rows, title=campaign.code)
    detail = {"deidentified": True, "rows": count, "format": fmt, "campaign": campaign.code}
    detail["scoped"] = students is not None
    audit.record(session, "export", "campaign", campaign.id, detail=detail, actor=actor)
    return count
