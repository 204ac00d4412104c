"""Classified intervention (分类干预): referrals, the parent ledger and guardian consent,
and the expert side's directories (partner institutions, the resource library).

**Referrals (转介).** :func:`refer` sends a case to a partner institution of the
case's own district (a hospital with a psychiatric or psychological department, a
community service, a police contact or a family service). Each referral has its
own loop, enforced in order::

    sent → acknowledged → outcome → returned (return-to-school plan, 返校复学计划)

:func:`acknowledge_referral`, :func:`record_outcome` and :func:`record_return_plan`
each move one step; every step (and the referral itself) writes a
:class:`~xinshu.models.CaseEvent` of kind ``referral`` with the actor, the time
and the reason. A referral never changes the case's state: the case workflow
decides that.

**Guardian consent rule.** A referral of kind ``hospital``, ``community`` or
``family`` (:data:`CONSENT_REQUIRED_KINDS`) needs the guardian's consent: the
latest :class:`~xinshu.models.GuardianConsent` of the student for the purpose
``referral`` (recorded for this case or for no particular case) must be
``granted``; a later ``refused`` or ``withdrawn`` record cancels an earlier
grant. Basis:

* 《个人信息保护法》(PIPL) Art. 28–29: health information and all personal
  information of minors under 14 are sensitive and need separate consent
  (单独同意); Art. 31: for a minor under 14 that consent is the parent's or
  other guardian's.
* 《未成年人保护法》 Art. 72: processing personal information of a minor
  under 14 needs the parent's or guardian's consent; Art. 16: the guardians'
  duties include caring for the child's physical and mental health, and 《精神卫生法》
  Art. 28 leaves taking a person to a psychiatric assessment to their close
  relatives — a hospital referral of a minor is carried out by the guardian.

Students of 14–17 may consent to data processing themselves under PIPL, but
the referral still hands the student to the guardian's care, so the rule
applies to every student. **Police referrals are exempt**: 《未成年人保护法》
Art. 11 obliges schools to report immediately to the public-security organs
when a minor's physical or mental health is harmed, suspected to be harmed or
in danger (强制报告), and PIPL Art. 13 (3)–(4) allows processing without
consent to fulfil a statutory duty or to protect a person's life and health in
an emergency. (This rule is a product decision on that basis; the bureau's
legal adviser should confirm it before production use.)

**Parent ledger (家校沟通记录).** :func:`add_parent_contact` appends what was
said, when, by whom, through which channel and the parent's response. The
ledger is append-only, and so are consent records: updating or deleting a
:class:`~xinshu.models.ParentContact` or :class:`~xinshu.models.GuardianConsent`
row raises :class:`~xinshu.errors.XinshuError` at flush time (a correction is
a new entry; a withdrawal is a new consent record).

**Directories.** :func:`import_partners` and :func:`import_resources` upsert a
YAML list (``xinshu partners import`` / ``xinshu resources import``); importing
the same file twice changes nothing. Intervention-template tasks hand out
library entries by code; :func:`template_resource_gaps` lists codes the library
lacks (``xinshu resources check``; the declarations cannot check this
themselves, the library being in the database).

Contact content, outcomes, return plans, consent evidence and reasons are free
text about a child and are never written to the log (only ids and kinds are).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from flask_babel import gettext as _
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from xinshu.errors import XinshuError
from xinshu.i18n import N_
from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    CaseEvent,
    GuardianConsent,
    OrgUnit,
    ParentContact,
    Partner,
    Referral,
    Resource,
    Student,
    utcnow,
)

log = logging.getLogger(__name__)

#: Partner institution kinds (合作机构类型). Hotlines are listed for reference
#: (shown on the case page); they are not referral targets.
PARTNER_KINDS = {
    "hospital": N_("医院（精神/心理科）"),
    "community": N_("社区服务"),
    "police": N_("公安联络"),
    "family": N_("家庭服务"),
    "hotline": N_("心理援助热线"),
}
#: Referral kinds; a referral goes to a partner of the same kind.
REFERRAL_KINDS = {"hospital": N_("医院"), "community": N_("社区"), "police": N_("公安"), "family": N_("家庭服务")}
#: Kinds that need the guardian's granted consent for the purpose ``referral`` (see the module docstring).
CONSENT_REQUIRED_KINDS = ("hospital", "community", "family")
#: The referral loop, in order; each status is reached by one step.
REFERRAL_STATUSES = {
    "sent": N_("已转出"),
    "acknowledged": N_("对方已接收"),
    "outcome": N_("已反馈结果"),
    "returned": N_("已制定返校计划"),
}
NEXT_STATUS = {"sent": "acknowledged", "acknowledged": "outcome", "outcome": "returned"}
CONTACT_CHANNELS = {
    "phone": N_("电话"),
    "meeting": N_("面谈"),
    "wechat": N_("微信"),
    "letter": N_("书面通知"),
    "home_visit": N_("家访"),
    "other": N_("其他"),
}
CONSENT_DECISIONS = {"granted": N_("同意"), "refused": N_("拒绝"), "withdrawn": N_("撤回")}
#: Purposes offered in the back office; any identifier-like purpose is accepted.
CONSENT_PURPOSES = {
    "referral": N_("转介"),
    "assessment": N_("心理评估"),
    "data_sharing": N_("信息共享"),
    "informed_notice": N_("知情告知"),
}
GUARDIAN_RELATIONS = {
    "father": N_("父亲"),
    "mother": N_("母亲"),
    "grandparent": N_("祖父母/外祖父母"),
    "other_guardian": N_("其他监护人"),
}
RESOURCE_KINDS = {
    "guidance_sheet": N_("指导手册"),
    "class_meeting": N_("主题班会"),
    "course": N_("课程包"),
    "parent_guidance": N_("家长指导"),
}
RESOURCE_AUDIENCES = {"teachers": N_("教师"), "students": N_("学生"), "parents": N_("家长")}

PURPOSE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: Free-text limits (characters).
MAX_TEXT = 4000
#: A step's own time may be this far ahead of the server clock (clock skew).
CLOCK_SKEW = dt.timedelta(minutes=5)


# --- referrals ----------------------------------------------------------------


def case_district(session: Session, case: Case) -> OrgUnit:
    """The district the case's school belongs to.

    :raises XinshuError: the school has no district above it.
    """
    unit = case.school or session.get(OrgUnit, case.school_id)
    while unit is not None and unit.kind != "district":
        unit = unit.parent
    if unit is None:
        raise XinshuError(f"case {case.id}: its school is not under a district")
    return unit


def referral_consent(session: Session, case: Case) -> GuardianConsent | None:
    """The guardian's latest decision on the purpose ``referral`` for the case's student
    (records of this case or of no particular case), or None."""
    stmt = (
        select(GuardianConsent)
        .where(
            GuardianConsent.student_id == case.student_id,
            GuardianConsent.purpose == "referral",
            (GuardianConsent.case_id.is_(None)) | (GuardianConsent.case_id == case.id),
        )
        .order_by(GuardianConsent.at.desc(), GuardianConsent.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def refer(session: Session, case: Case, kind: str, partner_id: int, actor: str, reason: str) -> Referral:
    """Refer ``case`` to the partner ``partner_id`` (status ``sent``).

    The caller owns the transaction; the session is flushed.

    :raises XinshuError: the case is not open; unknown kind; the partner is
        missing, inactive, of another kind or of another district; no reason;
        no granted guardian consent where :data:`CONSENT_REQUIRED_KINDS` needs one.
    """
    if case.state not in OPEN_CASE_STATES:
        raise XinshuError(f"case {case.id} is not open ({case.state}); it cannot be referred")
    if kind not in REFERRAL_KINDS:
        raise XinshuError(f"unknown referral kind {kind!r} (one of {', '.join(REFERRAL_KINDS)})")
    actor, reason = _required(actor, "actor"), _required(reason, "reason")
    partner = session.get(Partner, partner_id) if partner_id is not None else None
    if partner is None:
        raise XinshuError(f"no partner institution with id {partner_id!r}")
    if not partner.active:
        raise XinshuError(_("合作机构 #%(id)s 已停用", id=partner.id))
    if partner.kind != kind:
        raise XinshuError(
            _(
                "合作机构 #%(id)s 的类别是“%(has)s”，不能用于%(wanted)s转介",
                id=partner.id,
                has=_(PARTNER_KINDS.get(partner.kind, partner.kind)),
                wanted=_(REFERRAL_KINDS.get(kind, kind)),
            )
        )
    district = case_district(session, case)
    if partner.district_id != district.id:
        raise XinshuError(_("合作机构 #%(id)s 不在本个案所在的区（%(code)s）", id=partner.id, code=district.code))
    if kind in CONSENT_REQUIRED_KINDS:
        consent = referral_consent(session, case)
        if consent is None or consent.decision != "granted":
            raise XinshuError(
                _(
                    "%(kind)s转介需要监护人对“转介”的书面同意（%(state)s；《个人信息保护法》第31条、《未成年人保护法》）",
                    kind=_(REFERRAL_KINDS.get(kind, kind)),
                    state=_("尚未记录")
                    if consent is None
                    else _(
                        "最近一次为：%(decision)s",
                        decision=_(CONSENT_DECISIONS.get(consent.decision, consent.decision)),
                    ),
                )
            )
    now = utcnow()
    referral = Referral(case_id=case.id, kind=kind, partner_id=partner.id, status="sent", sent_by=actor, sent_at=now)
    session.add(referral)
    session.flush()
    _event(session, case, "referral", actor, f"转介 #{referral.id}（{REFERRAL_KINDS[kind]}）：已转出", reason, now)
    log.info("referral %s (%s) on case %s to partner %s", referral.id, kind, case.id, partner.id)
    return referral


def acknowledge_referral(
    session: Session, referral: Referral, actor: str, reason: str = "", at: dt.datetime | None = None
) -> Referral:
    """The partner has received the referral (``sent`` → ``acknowledged``)."""
    when = _step(session, referral, "acknowledged", actor, at)
    referral.acknowledged_at = when
    return _record_step(session, referral, actor, reason)


def record_outcome(
    session: Session, referral: Referral, outcome: str, actor: str, reason: str = "", at: dt.datetime | None = None
) -> Referral:
    """The partner's outcome (assessment, treatment advice…) (``acknowledged`` → ``outcome``)."""
    outcome = _required(outcome, "outcome")
    when = _step(session, referral, "outcome", actor, at)
    referral.outcome, referral.outcome_at = outcome, when
    return _record_step(session, referral, actor, reason)


def record_return_plan(
    session: Session, referral: Referral, plan: str, actor: str, reason: str = "", at: dt.datetime | None = None
) -> Referral:
    """The return-to-school plan (返校复学计划) closes the loop (``outcome`` → ``returned``)."""
    plan = _required(plan, "return plan")
    when = _step(session, referral, "returned", actor, at)
    referral.return_plan, referral.returned_at = plan, when
    return _record_step(session, referral, actor, reason)


def _step(session: Session, referral: Referral, target: str, actor: str, at: dt.datetime | None) -> dt.datetime:
    """Check the loop order and the step's time; return the time and set the status."""
    _required(actor, "actor")
    if NEXT_STATUS.get(referral.status) != target:
        expected = next((s for s, t in NEXT_STATUS.items() if t == target), "?")
        raise XinshuError(
            f"referral {referral.id} is {referral.status!r}: {target!r} comes only after {expected!r} "
            "(sent → acknowledged → outcome → returned)"
        )
    when = _when(at, utcnow())
    previous = {"acknowledged": referral.sent_at, "outcome": referral.acknowledged_at, "returned": referral.outcome_at}
    if previous[target] is not None and when < previous[target]:
        raise XinshuError("the time of a referral step cannot be before the previous step")
    referral.status = target
    return when


def _record_step(session: Session, referral: Referral, actor: str, reason: str) -> Referral:
    case = session.get(Case, referral.case_id)
    summary = f"转介 #{referral.id}（{REFERRAL_KINDS.get(referral.kind, referral.kind)}）："
    summary += REFERRAL_STATUSES[referral.status]
    _event(session, case, "referral", actor.strip(), summary, reason)
    session.flush()
    log.info("referral %s on case %s: %s", referral.id, referral.case_id, referral.status)
    return referral


# --- parent ledger and consent --------------------------------------------------


def add_parent_contact(
    session: Session,
    case: Case,
    by: str,
    channel: str,
    content: str,
    parent_response: str = "",
    at: dt.datetime | None = None,
) -> ParentContact:
    """Append an entry to the case's parent communication ledger (家校沟通记录).

    ``at`` is when the conversation took place (default now). The case
    timeline gets an event of kind ``contact`` naming the channel, never the content.

    :raises XinshuError: unknown channel, empty content or author, a time in the future.
    """
    if channel not in CONTACT_CHANNELS:
        raise XinshuError(f"unknown channel {channel!r} (one of {', '.join(CONTACT_CHANNELS)})")
    by, content = _required(by, "by"), _required(content, "content")
    now = utcnow()
    when = _when(at, now)
    contact = ParentContact(
        case_id=case.id, at=when, by=by, channel=channel, content=content, parent_response=_text(parent_response)
    )
    session.add(contact)
    session.flush()
    _event(session, case, "contact", by, f"家校沟通 #{contact.id}（{CONTACT_CHANNELS[channel]}）", "", now)
    log.info("parent contact %s on case %s (%s)", contact.id, case.id, channel)
    return contact


def record_consent(
    session: Session,
    student: Student,
    purpose: str,
    decision: str,
    relation: str,
    evidence: str,
    recorded_by: str,
    case: Case | None = None,
) -> GuardianConsent:
    """Record a guardian's decision (granted, refused or withdrawn) for ``purpose``.

    ``relation`` is one of :data:`GUARDIAN_RELATIONS`; ``evidence`` says where
    the signed form or the record of an oral consent is kept. Attached to a
    case (same student), the case timeline gets an event of kind ``consent``.

    :raises XinshuError: unknown purpose format, decision or relation, no
        evidence, or a case of another student.
    """
    purpose = (purpose or "").strip()
    if not PURPOSE_PATTERN.match(purpose):
        raise XinshuError(f"purpose {purpose!r} must be a lower-case identifier such as 'referral'")
    if decision not in CONSENT_DECISIONS:
        raise XinshuError(f"unknown decision {decision!r} (one of {', '.join(CONSENT_DECISIONS)})")
    if relation not in GUARDIAN_RELATIONS:
        raise XinshuError(f"unknown guardian relation {relation!r} (one of {', '.join(GUARDIAN_RELATIONS)})")
    evidence, recorded_by = _required(evidence, "evidence"), _required(recorded_by, "recorded_by")
    if case is not None and case.student_id != student.id:
        raise XinshuError(f"case {case.id} is not a case of student {student.id}")
    now = utcnow()
    consent = GuardianConsent(
        student_id=student.id,
        case_id=case.id if case is not None else None,
        purpose=purpose,
        decision=decision,
        guardian_relation=relation,
        evidence=evidence,
        recorded_by=recorded_by,
        at=now,
    )
    session.add(consent)
    session.flush()
    if case is not None:
        what = f"监护人{CONSENT_DECISIONS[decision]} #{consent.id}（{CONSENT_PURPOSES.get(purpose, purpose)}）"
        _event(session, case, "consent", recorded_by, what, "", now)
    log.info("guardian consent %s for student %s: %s %s", consent.id, student.id, purpose, decision)
    return consent


def _event(
    session: Session, case: Case, kind: str, actor: str, summary: str, reason: str, at: dt.datetime | None = None
) -> CaseEvent:
    """A timeline entry that does not change the case's state."""
    reason = _text(reason)
    entry = CaseEvent(
        from_state=case.state,
        to_state=case.state,
        kind=kind,
        actor=actor,
        reason=f"{summary}；{reason}" if reason else summary,
        at=at or utcnow(),
    )
    case.events.append(entry)
    return entry


def _when(at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """``at`` as naive UTC (default ``now``); never in the future."""
    if at is None:
        return now
    when = at.astimezone(dt.UTC).replace(tzinfo=None) if at.tzinfo is not None else at
    if when > now + CLOCK_SKEW:
        raise XinshuError(_("记录时间不能晚于现在"))
    return when


#: Names of the required inputs of :func:`_required` (key → Chinese msgid).
REQUIRED_NAMES = {
    "actor": N_("操作人"),
    "reason": N_("理由"),
    "outcome": N_("转介结果"),
    "return plan": N_("回归计划"),
    "by": N_("沟通人"),
    "content": N_("沟通内容"),
    "evidence": N_("同意凭据"),
    "recorded_by": N_("记录人"),
}


def _required(value: str | None, what: str) -> str:
    text = _text(value)
    if not text:
        raise XinshuError(_("请填写%(what)s", what=_(REQUIRED_NAMES.get(what, what))))
    return text


def _text(value: str | None) -> str:
    text = (value or "").strip()
    if len(text) > MAX_TEXT:
        raise XinshuError(_("内容不能超过 %(n)s 个字符", n=MAX_TEXT))
    return text


@event.listens_for(ParentContact, "before_update")
@event.listens_for(ParentContact, "before_delete")
@event.listens_for(GuardianConsent, "before_update")
@event.listens_for(GuardianConsent, "before_delete")
def _append_only(mapper, connection, target) -> None:
    """The parent ledger and consent records are append-only."""
    raise XinshuError(f"{type(target).__name__} rows are append-only: add a new entry instead")


# --- directories ------------------------------------------------------------------


@dataclass
class ImportSummary:
    """What an import did: rows created, updated and unchanged."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


PARTNER_FIELDS = ("district", "kind", "name", "department", "phone", "address", "notes", "active")
RESOURCE_FIELDS = ("code", "kind", "title", "audience", "url", "description")


def safe_resource_url(url: str) -> bool:
    """True for a blank URL, a relative path (``resources/x.pdf``, ``/files/x.pdf``)
    or an ``https://`` address — never ``javascript:`` and the like."""
    if not url:
        return True
    if any(ch.isspace() or ord(ch) < 32 for ch in url) or "\\" in url:
        return False
    if url.startswith("https://"):
        return len(url) > len("https://")
    if url.startswith("//"):
        return False
    head = url.split("/", 1)[0]
    return ":" not in head


def load_yaml_list(path: Path) -> list[dict[str, Any]]:
    """A YAML file holding a list of mappings.

    :raises XinshuError: unreadable file or not a list of mappings.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise XinshuError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise XinshuError(f"{path}: expected a YAML list of mappings")
    return data


def import_partners(session: Session, rows: list[dict[str, Any]]) -> ImportSummary:
    """Upsert partner institutions; a partner is identified by (district, kind, name, department).

    Each row: ``district`` (org-unit code of a district), ``kind``
    (:data:`PARTNER_KINDS`), ``name``, optional ``department``, ``phone``,
    ``address``, ``notes``, ``active`` (default true). All-or-nothing: any
    invalid row rejects the import before anything is written.

    :raises XinshuError: listing every invalid row.
    """
    summary, prepared = ImportSummary(), []
    districts = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.kind == "district"))}
    seen: set[tuple] = set()
    for number, row in enumerate(rows, start=1):
        problems = _unknown_keys(row, PARTNER_FIELDS)
        district = districts.get(str(row.get("district", "")))
        if district is None:
            problems.append(f"district {row.get('district')!r} is not the code of a district")
        if row.get("kind") not in PARTNER_KINDS:
            problems.append(f"kind {row.get('kind')!r} is not one of {', '.join(PARTNER_KINDS)}")
        values = {key: _str(row.get(key)) for key in ("name", "department", "phone", "address", "notes")}
        if not values["name"]:
            problems.append("name is required")
        limits = {"name": 200, "department": 200, "phone": 40, "address": 255, "notes": MAX_TEXT}
        problems += [f"{key} is longer than {n} characters" for key, n in limits.items() if len(values[key]) > n]
        active = row.get("active", True)
        if not isinstance(active, bool):
            problems.append("active must be true or false")
        key = (row.get("district"), row.get("kind"), values["name"], values["department"])
        if key in seen:
            problems.append("the same district, kind, name and department appear twice")
        seen.add(key)
        if problems:
            summary.errors += [f"partner {number}: {p}" for p in problems]
            continue
        prepared.append((district, row["kind"], values, active))
    if summary.errors:
        raise XinshuError("partners rejected, nothing written:\n" + "\n".join(summary.errors))
    for district, kind, values, active in prepared:
        partner = session.scalar(
            select(Partner).where(
                Partner.district_id == district.id,
                Partner.kind == kind,
                Partner.name == values["name"],
                Partner.department == values["department"],
            )
        )
        _upsert(
            session, summary, partner, Partner, {"district_id": district.id, "kind": kind, **values, "active": active}
        )
    session.flush()
    return summary


def import_resources(session: Session, rows: list[dict[str, Any]]) -> ImportSummary:
    """Upsert resource-library entries by ``code``.

    Each row: ``code``, ``kind`` (:data:`RESOURCE_KINDS`), ``title``,
    ``audience`` (:data:`RESOURCE_AUDIENCES`), optional ``url`` (a relative
    path or an https address) and ``description``. All-or-nothing.

    :raises XinshuError: listing every invalid row.
    """
    summary, prepared, seen = ImportSummary(), [], set()
    for number, row in enumerate(rows, start=1):
        problems = _unknown_keys(row, RESOURCE_FIELDS)
        values = {key: _str(row.get(key)) for key in RESOURCE_FIELDS}
        if not CODE_PATTERN.match(values["code"]):
            problems.append(f"code {values['code']!r} must be lower-case letters, digits, '_', '.', '-'")
        elif values["code"] in seen:
            problems.append(f"code {values['code']!r} appears twice")
        seen.add(values["code"])
        if values["kind"] not in RESOURCE_KINDS:
            problems.append(f"kind {values['kind']!r} is not one of {', '.join(RESOURCE_KINDS)}")
        if values["audience"] not in RESOURCE_AUDIENCES:
            problems.append(f"audience {values['audience']!r} is not one of {', '.join(RESOURCE_AUDIENCES)}")
        if not values["title"]:
            problems.append("title is required")
        if len(values["title"]) > 255 or len(values["url"]) > 500 or len(values["description"]) > MAX_TEXT:
            problems.append("title, url or description is too long")
        if not safe_resource_url(values["url"]):
            problems.append(f"url {values['url']!r} must be blank, a relative path or an https:// address")
        if problems:
            summary.errors += [f"resource {number}: {p}" for p in problems]
            continue
        prepared.append(values)
    if summary.errors:
        raise XinshuError("resources rejected, nothing written:\n" + "\n".join(summary.errors))
    for values in prepared:
        resource = session.scalar(select(Resource).where(Resource.code == values["code"]))
        _upsert(session, summary, resource, Resource, values)
    session.flush()
    return summary


def _upsert(session: Session, summary: ImportSummary, row: Any, model: type, values: dict[str, Any]) -> None:
    if row is None:
        session.add(model(**values))
        summary.created += 1
        return
    changed = {key: value for key, value in values.items() if getattr(row, key) != value}
    for key, value in changed.items():
        setattr(row, key, value)
    if changed:
        summary.updated += 1
    else:
        summary.unchanged += 1


def _unknown_keys(row: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    return [f"unknown key {key!r}" for key in row if key not in allowed]


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def resources_by_code(session: Session, codes: list[str]) -> dict[str, Resource]:
    """The library entries with these codes (missing codes are absent from the result)."""
    wanted = [code for code in codes if isinstance(code, str)]
    if not wanted:
        return {}
    return {r.code: r for r in session.scalars(select(Resource).where(Resource.code.in_(wanted)))}


def template_resource_gaps(session: Session, templates: Any) -> list[tuple[str, str, str]]:
    """Resource codes that intervention-template tasks hand out but the library lacks.

    The check the declarations cannot make themselves (the library lives in the
    database): ``(template id, task id, code)`` for each missing code, in template order.

    :param templates: ``Declarations.templates`` (template id → template with ``tasks``).
    """
    named = [
        (template_id, task.id, code)
        for template_id, template in templates.items()
        for task in template.tasks
        for code in getattr(task, "resources", ())
    ]
    known = resources_by_code(session, sorted({code for _t, _k, code in named}))
    return [entry for entry in named if entry[2] not in known]
