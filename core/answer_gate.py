"""The answer gate (security.md J1, K2; PIPL Arts. 28, 31): may a student answer under a campaign?

:func:`answer_allowed` decides whether a student may answer at a given time:
outside the window, for a student who is not enrolled and active, or outside the
campaign's org unit, it refuses. With basis ``consent`` a student under 14 on the
day of answering (Beijing date) needs a guardian's consent for the campaign
(:class:`~xinshu.models.GuardianConsent` with purpose ``screening``, recorded through
:mod:`xinshu.consent`): the latest decision recorded up to that time must be
``granted`` (a later ``withdrawn`` or ``refused`` ends it).

**Unknown birth date.** A student whose birth date is not on the roster is treated
as under 14, whatever the grade: grade is no proxy for age (grades 8 and 9 hold
13- and 14-year-olds alike), and PIPL Art. 31 puts the burden on the processor.
The refusal says so, and the fix is to complete the roster or record the consent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from xinshu.campaigns import closing_text, in_campaign_unit, local_text, to_local, to_utc
from xinshu.consent import consent_state
from xinshu.errors import RowError
from xinshu.models import Campaign, Student

#: Students below this age (in whole years, on the day of answering) need a guardian's consent.
CONSENT_AGE = 14


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Age in whole years on ``day`` (a 29 February birthday is reached on 1 March in other years)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


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
