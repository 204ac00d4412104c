"""Screening campaigns (测评活动): their window and legal basis, creating and editing them
(security.md K2; PIPL Art. 13).

A :class:`~xinshu.models.Campaign` names the scales, the org unit (city, district
or school) whose students take part, a window (``opens_at`` ≤ t < ``closes_at``,
stored as naive UTC, entered and shown in Asia/Shanghai: a window that closes on
"2025-10-31" is open until 2025-10-31 24:00 +08:00), its legal basis and how many
days its results are kept (:mod:`xinshu.retention`).

Legal basis (PIPL Art. 13): ``consent``, or ``statutory_duty`` with the documented
basis in ``legal_basis_ref`` (e.g. the bureau's notice number). The basis and the
org unit of a campaign cannot change once responses are stored under it, so every
response's basis is that of its campaign (``Response.campaign_id``).

The other campaign rules have modules of their own:

* :mod:`xinshu.consent`: guardians' consent, refusal or withdrawal per campaign;
* :mod:`xinshu.answer_gate`: whether a student may answer (:func:`~xinshu.answer_gate.answer_allowed`);
* :mod:`xinshu.consent_notice`: the guardian notice (J5);
* :mod:`xinshu.research_export`: the de-identified research export.

Their public names can still be imported from here (``from xinshu.campaigns import
answer_allowed``): they are looked up on first use (:data:`MOVED`), because those
modules import this one.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.errors import XinshuError
from xinshu.models import Campaign, OrgUnit, Response, Student, User

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
LEGAL_BASES = ("consent", "statutory_duty")
#: Org-unit kinds a campaign may cover.
CAMPAIGN_UNIT_KINDS = ("city", "district", "school")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_TEXT = 4000
MAX_RETENTION_DAYS = 3650
#: Who may create and edit campaigns (within the org units they hold the role at).
MANAGER_ROLES = ("bureau_admin", "district_admin")
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


def in_campaign_unit(session: Session, campaign: Campaign, student: Student) -> bool:
    """True when the student's class lies under the campaign's org unit."""
    unit = campaign.org_unit or session.get(OrgUnit, campaign.org_unit_id)
    klass = student.class_unit or session.get(OrgUnit, student.class_id)
    return unit is not None and klass is not None and klass.path.startswith(unit.path)


# --- names that moved to their own modules ------------------------------------------------

#: Public names that moved out of this module → the module that holds them now.
MOVED: dict[str, str] = {
    **dict.fromkeys(
        (
            "SCREENING_PURPOSE",
            "CONSENT_DECISIONS",
            "CONSENT_ROLES",
            "CLOCK_SKEW",
            "record_campaign_consent",
            "consent_state",
            "covers",
        ),
        "xinshu.consent",
    ),
    **dict.fromkeys(
        ("CONSENT_AGE", "age_on", "Decision", "is_under_consent_age", "answer_allowed", "gate_rows"),
        "xinshu.answer_gate",
    ),
    **dict.fromkeys(
        ("NoticeSection", "NOTICE_SETTINGS", "NOTICE_TEMPLATE", "notice_settings", "consent_notice", "notice_text"),
        "xinshu.consent_notice",
    ),
    **dict.fromkeys(
        ("RESEARCH_COLUMNS", "RESEARCH_FORMATS", "pseudonym_key", "research_rows", "write_research_export"),
        "xinshu.research_export",
    ),
}


def __getattr__(name: str) -> Any:
    """A name of :data:`MOVED`, from the module that holds it now (PEP 562).

    :raises AttributeError: ``name`` is neither here nor in :data:`MOVED`.
    """
    home = MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    """This module's names and those of :data:`MOVED`."""
    return sorted({*globals(), *MOVED})
