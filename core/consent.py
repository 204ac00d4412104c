"""Guardians' decisions per campaign (security.md J1; PIPL Arts. 29, 31): consent, refusal or
withdrawal, recorded append-only and audited (:func:`record_campaign_consent`), and the decision
in force at a given time (:func:`consent_state`), which the answer gate reads
(:mod:`xinshu.answer_gate`).
"""

from __future__ import annotations

import datetime as dt

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.campaigns import MAX_TEXT, CampaignError, in_campaign_unit, to_utc
from xinshu.models import Campaign, GuardianConsent, Student, User, utcnow

#: The purpose of a guardian consent that covers a campaign.
SCREENING_PURPOSE = "screening"
CONSENT_DECISIONS = ("granted", "refused", "withdrawn")
#: Who records a guardian's decision for a campaign (at the student's class or above).
CONSENT_ROLES = ("psychology_teacher", "moral_education_director", "principal", "class_teacher")
#: A consent decision may be dated this far ahead of the server clock (clock skew).
CLOCK_SKEW = dt.timedelta(minutes=5)


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


def covers(user: User | None, roles: tuple[str, ...], student: Student) -> bool:
    """True when ``user`` holds one of ``roles`` at the student's class or an org unit above it."""
    if user is None or not user.is_active or student.class_unit is None:
        return False
    path = student.class_unit.path
    return any(a.role in roles and a.org_unit is not None and path.startswith(a.org_unit.path) for a in user.roles)
