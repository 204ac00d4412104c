"""测评活动 (endpoint ``campaigns``, ``/admin/campaigns/``): the campaigns a user sees (those at
or below their org units and those covering them from above); bureau administrators, and
district administrators within their district, create and edit them. Per campaign: the
guardian notice (``/notice/<id>``, J5) and the consent records (``/consents/<id>``): school
staff see and record their students' decisions, district and bureau administrators see
counts per school only.

Every POST carries the CSRF token; changes go through :mod:`xinshu.campaigns` and
:mod:`xinshu.consent`, which write the audit rows.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import abort, current_app, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from sqlalchemy import func, or_, select

from xinshu.admin.access import MAX_ID, logged_in_user
from xinshu.admin.base import SecureDbView
from xinshu.admin.formatting import current_services, local_time
from xinshu.admin.privacy_forms import BASIS_LABELS, DECISION_LABELS, CampaignForm, ConsentForm, options
from xinshu.admin.privacy_scope import LIST_LIMIT, find_student, role_prefixes, students_under
from xinshu.campaigns import (
    CAMPAIGN_UNIT_KINDS,
    MANAGER_ROLES,
    CampaignInput,
    closing_text,
    create_campaign,
    local_text,
    may_manage,
    parse_local_bound,
    response_count,
    to_local,
    update_campaign,
    visible_campaigns,
)
from xinshu.consent import CONSENT_ROLES, SCREENING_PURPOSE, record_campaign_consent
from xinshu.consent_notice import consent_notice, notice_settings
from xinshu.errors import XinshuError
from xinshu.i18n import lazy_labels
from xinshu.models import ROLES, Campaign, GuardianConsent, OrgUnit, Student, User
from xinshu.referrals import GUARDIAN_RELATIONS

log = logging.getLogger(__name__)


def bound_input(value: dt.datetime | None, end: bool) -> str:
    """A stored bound as the form shows it: a date when it falls on Beijing midnight, else date and time."""
    if value is None:
        return ""
    local = to_local(value)
    if local.time() == dt.time(0, 0):
        return (local.date() - dt.timedelta(days=1 if end else 0)).isoformat()
    return local.strftime("%Y-%m-%d %H:%M")


def _instrument_titles() -> dict[str, str]:
    instruments = current_services().declarations.instruments
    return {i: inst.title.get("zh") or i for i, inst in instruments.items()}


class CampaignAdminView(SecureDbView):
    """测评活动: campaigns, their guardian notice and consent records."""

    def _campaign(self, campaign_id: int) -> Campaign:
        """The campaign if the user sees it; 404 otherwise (missing and out of scope alike)."""
        if not 0 < campaign_id <= MAX_ID:
            abort(404)
        campaign = self.session.scalar(visible_campaigns(logged_in_user()).where(Campaign.id == campaign_id))
        if campaign is None:
            abort(404)
        return campaign

    def _manageable_units(self) -> list[OrgUnit]:
        prefixes = role_prefixes(logged_in_user(), MANAGER_ROLES)
        if not prefixes:
            return []
        under = or_(*[OrgUnit.path.startswith(p, autoescape=True) for p in prefixes])
        stmt = select(OrgUnit).where(OrgUnit.kind.in_(CAMPAIGN_UNIT_KINDS), under).order_by(OrgUnit.path)
        return list(self.session.scalars(stmt))

    def _form(self, campaign: Campaign | None) -> CampaignForm:
        form = CampaignForm(obj=None)
        form.org_unit.choices = options(
            (u.id, _("%(name)s（%(code)s）", name=u.name, code=u.code)) for u in self._manageable_units()
        )
        form.instruments.choices = options(sorted(_instrument_titles().items()))
        if campaign is not None and request.method == "GET":
            for name in ("code", "name", "legal_basis", "legal_basis_ref", "purpose", "retention_days"):
                getattr(form, name).data = getattr(campaign, name)
            form.org_unit.data = campaign.org_unit_id
            form.instruments.data = list(campaign.instruments or [])
            form.opens.data = bound_input(campaign.opens_at, end=False)
            form.closes.data = bound_input(campaign.closes_at, end=True)
        return form

    @staticmethod
    def _input(form: CampaignForm) -> CampaignInput:
        return CampaignInput(
            code=form.code.data,
            name=form.name.data,
            org_unit_id=form.org_unit.data,
            instruments=list(form.instruments.data or []),
            opens_at=parse_local_bound(form.opens.data, end=False),
            closes_at=parse_local_bound(form.closes.data, end=True),
            legal_basis=form.legal_basis.data,
            legal_basis_ref=form.legal_basis_ref.data or "",
            purpose=form.purpose.data or "",
            retention_days=form.retention_days.data,
        )

    @expose("/")
    def index(self):
        user = logged_in_user()
        stmt = visible_campaigns(user).order_by(Campaign.opens_at.desc(), Campaign.id.desc()).limit(LIST_LIMIT)
        campaigns = list(self.session.scalars(stmt))
        return self.render(
            "admin/xinshu_campaign_list.html",
            campaigns=campaigns,
            may_create=bool(self._manageable_units()),
            may_edit={c.id: may_manage(user, c.org_unit) for c in campaigns},
            basis_labels=BASIS_LABELS,
            local_text=local_text,
            closing_text=closing_text,
        )

    @expose("/new", methods=("GET", "POST"))
    def create_view(self):
        if not self._manageable_units():
            abort(403)
        form = self._form(None)
        if form.validate_on_submit():
            try:
                campaign = create_campaign(
                    self.session, self._input(form), logged_in_user(), set(current_services().declarations.instruments)
                )
                self.session.commit()
            except XinshuError as exc:
                self.session.rollback()
                form.code.errors = [*form.code.errors, str(exc)]
            except Exception:
                self.session.rollback()
                raise
            else:
                log.info("campaign %s created by user id %s", campaign.id, logged_in_user().id)
                flash(_("已新建测评活动 %(code)s", code=campaign.code), "success")
                return redirect(self.get_url(".index"))
        status = 400 if request.method == "POST" else 200
        return self.render("admin/xinshu_campaign_form.html", form=form, campaign=None), status

    @expose("/<int:campaign_id>/edit", methods=("GET", "POST"))
    def edit_view(self, campaign_id: int):
        campaign = self._campaign(campaign_id)
        if not may_manage(logged_in_user(), campaign.org_unit):
            abort(403)
        form = self._form(campaign)
        if form.validate_on_submit():
            try:
                changed = update_campaign(
                    self.session,
                    campaign,
                    self._input(form),
                    logged_in_user(),
                    set(current_services().declarations.instruments),
                )
                self.session.commit()
            except XinshuError as exc:
                self.session.rollback()
                form.code.errors = [*form.code.errors, str(exc)]
            except Exception:
                self.session.rollback()
                raise
            else:
                log.info("campaign %s edited by user id %s: %s", campaign.id, logged_in_user().id, changed)
                flash(_("已保存测评活动 %(code)s", code=campaign.code), "success")
                return redirect(self.get_url(".index"))
        status = 400 if request.method == "POST" else 200
        responses = response_count(self.session, campaign)
        return self.render("admin/xinshu_campaign_form.html", form=form, campaign=campaign, responses=responses), status

    @expose("/<int:campaign_id>/notice")
    def notice_view(self, campaign_id: int):
        campaign = self._campaign(campaign_id)
        sections = consent_notice(campaign, _instrument_titles(), notice_settings(current_app.config))
        return self.render("admin/xinshu_campaign_notice.html", campaign=campaign, sections=sections)

    @expose("/<int:campaign_id>/consents", methods=("GET", "POST"))
    def consents_view(self, campaign_id: int):
        campaign = self._campaign(campaign_id)
        user = logged_in_user()
        staff_prefixes = role_prefixes(user, CONSENT_ROLES)
        form = ConsentForm()
        form.relation.choices = options(lazy_labels(GUARDIAN_RELATIONS))
        if staff_prefixes and form.validate_on_submit():
            if self._record_consent(campaign, form, staff_prefixes):
                return redirect(self.get_url(".consents_view", campaign_id=campaign.id))
        elif request.method == "POST" and not staff_prefixes:
            abort(403)
        rows = self._student_rows(campaign, staff_prefixes)
        status = 400 if request.method == "POST" else 200
        return (
            self.render(
                "admin/xinshu_campaign_consents.html",
                campaign=campaign,
                form=form if staff_prefixes else None,
                rows=rows,
                school_counts=self._school_counts(campaign, user),
                decision_labels=DECISION_LABELS,
                local_time=local_time,
                limit=LIST_LIMIT,
            ),
            status,
        )

    def _record_consent(self, campaign: Campaign, form: ConsentForm, prefixes: list[str]) -> bool:
        try:
            student = find_student(self.session, form.student.data, prefixes)
            at = parse_local_bound(form.at.data, end=False) if (form.at.data or "").strip() else None
            consent = record_campaign_consent(
                self.session,
                campaign,
                student,
                form.decision.data,
                form.relation.data,
                form.evidence.data,
                logged_in_user(),
                at,
            )
            self.session.commit()
        except XinshuError as exc:
            self.session.rollback()
            form.student.errors = [*form.student.errors, str(exc)]
            return False
        except Exception:
            self.session.rollback()
            raise
        log.info("campaign consent %s recorded by user id %s", consent.id, logged_in_user().id)
        flash(_("已登记学生 #%(id)s 的监护人意见", id=student.id), "success")
        return True

    def _student_rows(self, campaign: Campaign, prefixes: list[str]) -> list[dict[str, Any]]:
        """The students the user is school staff for, in the campaign's unit, with their decision."""
        if not prefixes:
            return []
        stmt = (
            select(Student)
            .where(Student.id.in_(students_under(prefixes, campaign.org_unit)), Student.status == "enrolled")
            .order_by(Student.class_id, Student.id)
            .limit(LIST_LIMIT)
        )
        students = list(self.session.scalars(stmt))
        latest = self._latest_consents(campaign, [s.id for s in students])
        rows = []
        for student in students:
            consent = latest.get(student.id)
            rows.append({"student": student, "decision": consent.decision if consent else None, "consent": consent})
        return rows

    def _latest_consents(self, campaign: Campaign, ids: list[int]) -> dict[int, GuardianConsent]:
        latest: dict[int, GuardianConsent] = {}
        for start in range(0, len(ids), 900):
            stmt = (
                select(GuardianConsent)
                .where(
                    GuardianConsent.campaign_id == campaign.id,
                    GuardianConsent.purpose == SCREENING_PURPOSE,
                    GuardianConsent.student_id.in_(ids[start : start + 900]),
                )
                .order_by(GuardianConsent.at, GuardianConsent.id)
            )
            for consent in self.session.scalars(stmt):
                latest[consent.student_id] = consent
        return latest

    def _school_counts(self, campaign: Campaign, user: User | None) -> list[dict[str, Any]]:
        """Per school under the user's org units and the campaign's unit: enrolled students and the
        guardians' current decisions (counts only, no names; roles.md aggregates)."""
        students = select(Student.id).where(
            Student.id.in_(students_under(role_prefixes(user, ROLES), campaign.org_unit)), Student.status == "enrolled"
        )
        totals = dict(
            self.session.execute(
                select(Student.school_id, func.count()).where(Student.id.in_(students)).group_by(Student.school_id)
            ).all()
        )
        latest: dict[int, tuple[int, str]] = {}  # student -> (school, decision); the last recorded wins
        decisions = self.session.execute(
            select(GuardianConsent.student_id, Student.school_id, GuardianConsent.decision)
            .join(Student, Student.id == GuardianConsent.student_id)
            .where(
                GuardianConsent.campaign_id == campaign.id,
                GuardianConsent.purpose == SCREENING_PURPOSE,
                GuardianConsent.student_id.in_(students),
            )
            .order_by(GuardianConsent.at, GuardianConsent.id)
        )
        for student_id, school_id, decision in decisions:
            latest[student_id] = (school_id, decision)
        counts = {school: {"students": n, "granted": 0, "refused": 0, "withdrawn": 0} for school, n in totals.items()}
        for school_id, decision in latest.values():
            counts[school_id][decision] = counts[school_id].get(decision, 0) + 1
        schools = {u.id: u for u in self.session.scalars(select(OrgUnit).where(OrgUnit.id.in_(list(counts))))}
        rows = []
        for school_id, entry in sorted(counts.items(), key=lambda item: schools[item[0]].code):
            recorded = entry["granted"] + entry["refused"] + entry["withdrawn"]
            rows.append({"school": schools[school_id], **entry, "none": entry["students"] - recorded})
        return rows
