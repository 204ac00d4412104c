"""Privacy of minors' data: campaigns with their legal basis, guardian consent per campaign,
correction and deletion requests, the retention job and de-identified exports.

Command line (``register_commands``):

* ``xinshu campaign add CODE NAME --org ORG --instrument ID ... --opens DAY --closes DAY
  --basis consent|statutory_duty [--basis-ref REF] --purpose TEXT [--retention-days N] --by WHO``;
  ``xinshu campaign list``; ``xinshu campaign notice CODE`` (the guardian notice as text);
* ``xinshu consent record CAMPAIGN STUDENT --decision granted|refused|withdrawn --relation R
  --evidence TEXT --by WHO [--at "YYYY-MM-DD HH:MM"]``;
* ``xinshu retention run [--dry-run]`` (:mod:`xinshu.retention`; prints the counts);
* ``xinshu export research --campaign CODE -o FILE.csv|FILE.xlsx --by WHO``: the
  de-identified research export (one row per score, pseudonyms keyed with
  ``XINSHU_PSEUDONYM_KEY`` or the secret key), audited.

Back office (``register_admin_views``, menu 隐私保护):

* 测评活动 (endpoint ``campaigns``): the campaigns a user sees (those at or below their
  org units and those covering them from above); bureau administrators, and district
  administrators within their district, create and edit them. Per campaign: the
  guardian notice (``/notice/<id>``, J5) and the consent records (``/consents/<id>``):
  school staff see and record their students' decisions, district and bureau
  administrators see counts per school only.
* 更正与删除请求 (endpoint ``datarequests``): the requests of the students under the
  user's org units; school staff receive and complete, the principal (or a district or
  bureau administrator above the school) approves or rejects. Only school staff see the
  student's name.
* 去标识化导出 (endpoint ``research_export``): bureau and district administrators download
  the de-identified export of a campaign, limited to the students under their org units.

Every POST carries the CSRF token; every change goes through :mod:`xinshu.campaigns` or
:mod:`xinshu.data_requests`, which write the audit rows.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import click
from flask import abort, current_app, flash, redirect, request, send_file
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import aliased
from wtforms import (
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from xinshu import hookimpl
from xinshu.admin.formatting import GENDER_LABELS, current_services, local_time
from xinshu.admin.views import MAX_ID, SecureView, logged_in_user
from xinshu.campaigns import (
    CAMPAIGN_UNIT_KINDS,
    CONSENT_ROLES,
    LEGAL_BASES,
    MANAGER_ROLES,
    MAX_RETENTION_DAYS,
    RESEARCH_FORMATS,
    SCREENING_PURPOSE,
    CampaignInput,
    closing_text,
    consent_notice,
    create_campaign,
    get_campaign,
    local_text,
    may_manage,
    notice_settings,
    notice_text,
    parse_local_bound,
    pseudonym_key,
    record_campaign_consent,
    response_count,
    to_local,
    update_campaign,
    visible_campaigns,
    write_research_export,
)
from xinshu.data_requests import (
    CHANNELS,
    CORRECTABLE,
    KINDS,
    RECEIVE_ROLES,
    REQUEST_ROLES,
    STATUS_LABELS,
    allowed_events,
    approve_request,
    complete_request,
    is_overdue,
    may_see_identity,
    purge_residue,
    receive_request,
    reject_request,
    requester_relations,
    visible_requests,
)
from xinshu.errors import XinshuError
from xinshu.i18n import lazy_labels
from xinshu.models import ROLES, Campaign, DataRequest, GuardianConsent, OrgUnit, Student, User
from xinshu.referrals import GUARDIAN_RELATIONS

log = logging.getLogger(__name__)

CATEGORY = _l("隐私保护")
BASIS_LABELS = {"consent": _l("监护人同意"), "statutory_duty": _l("法定职责")}
DECISION_LABELS = {"granted": _l("同意"), "refused": _l("拒绝"), "withdrawn": _l("撤回")}
#: Who downloads de-identified research exports (roles.md: "de-identified only").
EXPORT_ROLES = ("bureau_admin", "district_admin")
LIST_LIMIT = 500


# --- shared helpers -------------------------------------------------------------------


def role_prefixes(user: User | None, roles: tuple[str, ...]) -> list[str]:
    """Org-unit paths where ``user`` holds one of ``roles`` (empty: none, deny)."""
    if user is None or not user.is_active:
        return []
    return sorted({a.org_unit.path for a in user.roles if a.role in roles and a.org_unit is not None})


def students_under(prefixes: list[str], unit: OrgUnit | None = None):
    """A ``select`` of ids of students whose class lies under one of ``prefixes`` (and under ``unit``)."""
    if not prefixes:
        return select(Student.id).where(false())
    klass = aliased(OrgUnit)
    stmt = (
        select(Student.id)
        .join(klass, klass.id == Student.class_id)
        .where(or_(*[klass.path.startswith(p, autoescape=True) for p in prefixes]))
    )
    if unit is not None:
        stmt = stmt.where(klass.path.startswith(unit.path, autoescape=True))
    return stmt


def find_student(session, ref: str, prefixes: list[str]) -> Student:
    """The student named by system id, 学籍号 or 校内学号 among those under ``prefixes``.

    :raises XinshuError: none, or several (a 校内学号 used in two schools).
    """
    ref = (ref or "").strip()
    if not ref:
        raise XinshuError(_("请填写学生编号"))
    conditions = [Student.student_number == ref, Student.school_student_no == ref]
    if ref.isdigit() and 0 < int(ref) <= MAX_ID:
        conditions.append(Student.id == int(ref))
    found = list(session.scalars(select(Student).where(or_(*conditions), Student.id.in_(students_under(prefixes)))))
    if not found:
        raise XinshuError(_("在您负责的范围内没有编号为 %(ref)s 的学生", ref=ref))
    if len(found) > 1:
        raise XinshuError(_("编号 %(ref)s 对应多名学生，请改用系统编号", ref=ref))
    return found[0]


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


# --- forms ----------------------------------------------------------------------------


def options(pairs: Any) -> list[SelectChoice]:
    """WTForms choices from ``(value, label)`` pairs or a mapping (labels may be lazy strings)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return [SelectChoice(value, label) for value, label in items]


class CampaignForm(FlaskForm):
    """Create or edit a campaign; window bounds in Beijing time."""

    code = StringField(_l("活动代码"), validators=[DataRequired(), Length(max=64)])
    name = StringField(_l("活动名称"), validators=[DataRequired(), Length(max=200)])
    org_unit = SelectField(_l("面向单位"), coerce=int, validators=[InputRequired()])
    instruments = SelectMultipleField(_l("量表"), validators=[DataRequired(message=_l("请至少选择一个量表"))])
    opens = StringField(_l("开始（北京时间，YYYY-MM-DD 或 YYYY-MM-DD HH:MM）"), validators=[DataRequired()])
    closes = StringField(_l("结束（含当日；北京时间）"), validators=[DataRequired()])
    legal_basis = RadioField(_l("法律依据"), choices=options(BASIS_LABELS), default="consent")
    legal_basis_ref = TextAreaField(_l("文件依据（法定职责时必填，如通知文号）"), validators=[Length(max=4000)])
    purpose = TextAreaField(_l("处理目的"), validators=[DataRequired(), Length(max=4000)])
    retention_days = IntegerField(
        _l("保存期限（天）"), default=3 * 365, validators=[InputRequired(), NumberRange(1, MAX_RETENTION_DAYS)]
    )
    submit = SubmitField(_l("保存"))


class ConsentForm(FlaskForm):
    """A guardian's decision for a campaign."""

    student = StringField(_l("学生（系统编号、学籍号或校内学号）"), validators=[DataRequired(), Length(max=64)])
    decision = RadioField(_l("监护人意见"), choices=options(DECISION_LABELS), validators=[InputRequired()])
    relation = SelectField(_l("与学生关系"), validators=[InputRequired()])
    evidence = TextAreaField(
        _l("凭证（如“纸质回执存德育处”；请勿填写姓名、身份证号）"), validators=[DataRequired(), Length(max=4000)]
    )
    at = StringField(_l("监护人作出决定的时间（北京时间，可空）"), validators=[Optional(), Length(max=19)])
    submit = SubmitField(_l("登记"))


class RequestForm(FlaskForm):
    """A correction or deletion request as received."""

    student = StringField(_l("学生（系统编号、学籍号或校内学号）"), validators=[DataRequired(), Length(max=64)])
    kind = RadioField(_l("请求类型"), choices=options(KINDS), validators=[InputRequired()])
    relation = SelectField(_l("请求人"), validators=[InputRequired()])
    channel = SelectField(_l("受理渠道"), choices=options(CHANNELS), validators=[InputRequired()])
    details = TextAreaField(_l("请求内容（请勿填写身份证号）"), validators=[Length(max=4000)])
    new_name = StringField(_l("更正后的姓名"), validators=[Optional(), Length(max=100)])
    new_gender = SelectField(
        _l("更正后的性别"), choices=options([("", "—"), *GENDER_LABELS.items()]), validators=[Optional()]
    )
    new_birth_date = StringField(_l("更正后的出生日期（YYYY-MM-DD）"), validators=[Optional(), Length(max=10)])
    new_class = SelectField(_l("更正后的班级"), coerce=int, validators=[Optional()])
    submit = SubmitField(_l("受理"))


class ExportForm(FlaskForm):
    """Choose the campaign and the file format of a research export."""

    campaign = SelectField(_l("测评活动"), coerce=int, validators=[InputRequired()])
    fmt = RadioField(_l("格式"), choices=options([(f, f.upper()) for f in RESEARCH_FORMATS]), default="csv")
    submit = SubmitField(_l("导出"))


# --- campaigns ----------------------------------------------------------------------------


class CampaignAdminView(SecureView):
    """测评活动: campaigns, their guardian notice and consent records."""

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    @property
    def session(self):
        return self.db.session

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


# --- data requests ----------------------------------------------------------------------------


class DataRequestAdminView(SecureView):
    """更正与删除请求: receive, approve or reject, complete."""

    required_roles = REQUEST_ROLES

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    @property
    def session(self):
        return self.db.session

    def _request(self, request_id: int) -> DataRequest:
        if not 0 < request_id <= MAX_ID:
            abort(404)
        found = self.session.scalar(visible_requests(logged_in_user()).where(DataRequest.id == request_id))
        if found is None:
            abort(404)
        return found

    def _label(self, req: DataRequest) -> str:
        """The student as the user may see them: the name for school staff, else ``#id``."""
        student = req.student
        if may_see_identity(logged_in_user(), student):
            return _("%(name)s（#%(id)s）", name=student.name, id=student.id)
        return f"#{student.id}"

    @expose("/")
    def index(self):
        stmt = visible_requests(logged_in_user()).order_by(DataRequest.received_at.desc(), DataRequest.id.desc())
        requests = list(self.session.scalars(stmt.limit(LIST_LIMIT)))
        return self.render(
            "admin/xinshu_datarequest_list.html",
            requests=requests,
            label=self._label,
            may_receive=bool(role_prefixes(logged_in_user(), RECEIVE_ROLES)),
            kinds=KINDS,
            status_labels=STATUS_LABELS,
            is_overdue=is_overdue,
            local_time=local_time,
            limit=LIST_LIMIT,
        )

    def _request_form(self, prefixes: list[str]) -> RequestForm:
        form = RequestForm()
        form.relation.choices = options(lazy_labels(requester_relations()))
        klass = aliased(OrgUnit)
        under = or_(*[klass.path.startswith(p, autoescape=True) for p in prefixes]) if prefixes else false()
        classes = self.session.scalars(select(klass).where(klass.kind == "class", under).order_by(klass.path))
        form.new_class.choices = options(
            [(0, "—")] + [(c.id, _("%(name)s（%(code)s）", name=c.name, code=c.code)) for c in classes]
        )
        return form

    @staticmethod
    def _changes(form: RequestForm) -> dict[str, Any]:
        changes = {
            "name": (form.new_name.data or "").strip(),
            "gender": form.new_gender.data or "",
            "birth_date": (form.new_birth_date.data or "").strip(),
            "class_id": form.new_class.data or "",
        }
        return {k: v for k, v in changes.items() if v not in ("", None, 0)}

    @expose("/new", methods=("GET", "POST"))
    def create_view(self):
        prefixes = role_prefixes(logged_in_user(), RECEIVE_ROLES)
        if not prefixes:
            abort(403)
        form = self._request_form(prefixes)
        if form.validate_on_submit():
            try:
                student = find_student(self.session, form.student.data, prefixes)
                changes = self._changes(form) if form.kind.data == "correction" else None
                req = receive_request(
                    self.session,
                    student,
                    form.kind.data,
                    logged_in_user(),
                    relation=form.relation.data,
                    channel=form.channel.data,
                    details=form.details.data or "",
                    changes=changes,
                )
                self.session.commit()
            except XinshuError as exc:
                self.session.rollback()
                form.student.errors = [*form.student.errors, str(exc)]
            except Exception:
                self.session.rollback()
                raise
            else:
                log.info("data request %s received by user id %s", req.id, logged_in_user().id)
                flash(_("已受理请求 #%(id)s，办理期限 %(due)s", id=req.id, due=local_time(req.due_at)), "success")
                return redirect(self.get_url(".detail_view", request_id=req.id))
        status = 400 if request.method == "POST" else 200
        return self.render("admin/xinshu_datarequest_form.html", form=form, correctable=CORRECTABLE), status

    @expose("/<int:request_id>/")
    def detail_view(self, request_id: int):
        req = self._request(request_id)
        user = logged_in_user()
        pending = (req.result or {}).get("changes") or {}
        return self.render(
            "admin/xinshu_datarequest_detail.html",
            req=req,
            label=self._label(req),
            identity=may_see_identity(user, req.student),
            pending=pending,
            events=allowed_events(user, req),
            kinds=KINDS,
            status_labels=STATUS_LABELS,
            correctable=CORRECTABLE,
            overdue=is_overdue(req),
            local_time=local_time,
            counts=(req.result or {}).get("counts") or {},
            fields=(req.result or {}).get("fields") or [],
        )

    @expose("/<int:request_id>/<event>", methods=("POST",))
    def event_view(self, request_id: int, event: str):
        req = self._request(request_id)
        user = logged_in_user()
        if event not in allowed_events(user, req):
            abort(403)
        form = request.form
        reason, exception = form.get("reason", ""), form.get("legal_exception", "")
        erased = False
        try:
            if event == "approve":
                approve_request(self.session, req, user, reason, exception)
            elif event == "reject":
                reject_request(self.session, req, user, reason)
            else:
                complete_request(self.session, req, user, exception)
                erased = req.kind == "deletion"
            self.session.commit()
        except XinshuError as exc:
            self.session.rollback()
            flash(_("未能保存：%(error)s", error=str(exc)), "error")
            return redirect(self.get_url(".detail_view", request_id=request_id))
        except Exception:
            self.session.rollback()
            raise
        log.info("data request %s: %s by user id %s", req.id, event, user.id)
        if erased:
            self._purge_residue()
        flash(_("请求 #%(id)s：%(status)s", id=req.id, status=STATUS_LABELS.get(req.status, req.status)), "success")
        return redirect(self.get_url(".detail_view", request_id=request_id))

    def _purge_residue(self) -> None:
        """VACUUM the SQLite file after an erasure (the request's session is closed first)."""
        self.db.session.remove()
        try:
            report = purge_residue(current_services().db.engine)
        except Exception as exc:  # the erasure is committed; only the file clean-up failed
            log.error("purge of deleted rows from the database file failed: %s", type(exc).__name__)
            report = {"wal_truncated": False}
        if report.get("wal_truncated") is False:
            flash(_("数据已删除，但数据库文件整理（VACUUM）未完成，请通知运维人员执行"), "warning")


# --- research export ----------------------------------------------------------------------------


class ResearchExportView(SecureView):
    """去标识化导出: a campaign's scores without identifiers, for bureau and district administrators."""

    required_roles = EXPORT_ROLES

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    @expose("/", methods=("GET", "POST"))
    def index(self):
        session = self.db.session
        user = logged_in_user()
        prefixes = role_prefixes(user, EXPORT_ROLES)
        campaigns = list(session.scalars(visible_campaigns(user).order_by(Campaign.opens_at.desc())))
        form = ExportForm()
        form.campaign.choices = options((c.id, _("%(name)s（%(code)s）", name=c.name, code=c.code)) for c in campaigns)
        if form.validate_on_submit():
            campaign = next((c for c in campaigns if c.id == form.campaign.data), None)
            if campaign is None:
                abort(404)
            try:
                key = pseudonym_key(current_app.config)
                buffer = io.BytesIO()
                rows = write_research_export(
                    session, campaign, buffer, form.fmt.data, key, user, students_under(prefixes)
                )
                session.commit()  # the audit row; the file is sent only once it is committed
            except XinshuError as exc:
                session.rollback()
                form.campaign.errors = [*form.campaign.errors, str(exc)]
            except Exception:
                session.rollback()
                raise
            else:
                log.info("research export of campaign %s by user id %s: %s rows", campaign.id, user.id, rows)
                buffer.seek(0)
                name = f"research-{campaign.code}.{form.fmt.data}"
                return send_file(buffer, as_attachment=True, download_name=name, max_age=0)
        status = 400 if request.method == "POST" else 200
        own_key = bool(current_app.config.get("PSEUDONYM_KEY") or os.environ.get("XINSHU_PSEUDONYM_KEY"))
        return self.render("admin/xinshu_privacy_export.html", form=form, own_key=own_key), status


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    admin.add_view(CampaignAdminView(db, name=_l("测评活动"), endpoint="campaigns", category=CATEGORY))
    admin.add_view(DataRequestAdminView(db, name=_l("更正与删除请求"), endpoint="datarequests", category=CATEGORY))
    admin.add_view(ResearchExportView(db, name=_l("去标识化导出"), endpoint="research_export", category=CATEGORY))


# --- command line --------------------------------------------------------------------------------


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(campaign_group)
    cli.add_command(consent_group)
    cli.add_command(retention_group)
    cli.add_command(export_group)


def _open(database: str | None):
    from xinshu.cli import _services

    services = _services(DATABASE_URL=database)
    services.db.create_all()
    return services


def _reporting():
    from xinshu.cli import _reporting as reporting

    return reporting()


@click.group("campaign")
def campaign_group() -> None:
    """Screening campaigns: window, org unit, legal basis, retention (测评活动)."""


@campaign_group.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--org", "org_code", required=True, help="Code of the city, district or school it covers.")
@click.option("--instrument", "instruments", multiple=True, required=True, help="Instrument id; repeat for several.")
@click.option("--opens", required=True, help="First day (Beijing time), YYYY-MM-DD or 'YYYY-MM-DD HH:MM'.")
@click.option("--closes", required=True, help="Last day, inclusive (YYYY-MM-DD = until 24:00 Beijing time).")
@click.option("--basis", type=click.Choice(LEGAL_BASES), required=True, help="Legal basis (PIPL Art. 13).")
@click.option("--basis-ref", default="", help="The documented statutory basis (required with statutory_duty).")
@click.option("--purpose", required=True, help="Purpose of processing, as shown to guardians.")
@click.option("--retention-days", default=3 * 365, show_default=True, type=click.IntRange(1, MAX_RETENTION_DAYS))
@click.option("--by", "actor", required=True, help="Who creates it (recorded).")
@click.option("--database", help="Database URL.")
def campaign_add(**options: Any) -> None:
    """Add campaign CODE named NAME."""
    services = _open(options["database"])
    with _reporting(), services.db.transaction() as session:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == options["org_code"]))
        if unit is None:
            raise XinshuError(f"no org unit with code {options['org_code']!r}")
        data = CampaignInput(
            code=options["code"],
            name=options["name"],
            org_unit_id=unit.id,
            instruments=list(options["instruments"]),
            opens_at=parse_local_bound(options["opens"], end=False),
            closes_at=parse_local_bound(options["closes"], end=True),
            legal_basis=options["basis"],
            legal_basis_ref=options["basis_ref"],
            purpose=options["purpose"],
            retention_days=options["retention_days"],
        )
        campaign = create_campaign(session, data, options["actor"], set(services.declarations.instruments))
        click.echo(json.dumps(_campaign_summary(campaign), ensure_ascii=False))


def _campaign_summary(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "code": campaign.code,
        "name": campaign.name,
        "org_unit": campaign.org_unit.code if campaign.org_unit else campaign.org_unit_id,
        "instruments": list(campaign.instruments or []),
        "opens": local_text(campaign.opens_at),
        "closes": closing_text(campaign.closes_at),
        "legal_basis": campaign.legal_basis,
        "legal_basis_ref": campaign.legal_basis_ref,
        "retention_days": campaign.retention_days,
    }


@campaign_group.command("list")
@click.option("--database", help="Database URL.")
def campaign_list(database: str | None) -> None:
    """One JSON line per campaign (times in Beijing time)."""
    services = _open(database)
    with _reporting(), services.db.sessionmaker() as session:
        for campaign in session.scalars(select(Campaign).order_by(Campaign.opens_at, Campaign.id)):
            summary = _campaign_summary(campaign)
            summary["responses"] = response_count(session, campaign)
            click.echo(json.dumps(summary, ensure_ascii=False))


@campaign_group.command("notice")
@click.argument("code")
@click.option("--database", help="Database URL.")
def campaign_notice(code: str, database: str | None) -> None:
    """Print the guardian notice of campaign CODE (purpose, basis, storage, retention, rights, refusal)."""
    services = _open(database)
    with _reporting(), services.db.sessionmaker() as session:
        campaign = get_campaign(session, code)
        titles = {i: (inst.title.get("zh") or i) for i, inst in services.declarations.instruments.items()}
        click.echo(notice_text(campaign, consent_notice(campaign, titles, notice_settings(services.config))))


@click.group("consent")
def consent_group() -> None:
    """Guardians' consent, refusal or withdrawal per campaign."""


@consent_group.command("record")
@click.argument("campaign_code")
@click.argument("student_ref")
@click.option("--decision", type=click.Choice(["granted", "refused", "withdrawn"]), required=True)
@click.option("--relation", required=True, help="father, mother, grandparent or other_guardian.")
@click.option("--evidence", required=True, help="Where the signed receipt is kept (no names or ID numbers).")
@click.option("--at", "at_text", help="When the guardian decided (Beijing time; default now).")
@click.option("--by", "actor", required=True, help="Who records it.")
@click.option("--database", help="Database URL.")
def consent_record(campaign_code, student_ref, decision, relation, evidence, at_text, actor, database) -> None:
    """Record a guardian's decision on CAMPAIGN_CODE for STUDENT_REF (学籍号 or system id)."""
    from xinshu.cli import _student

    services = _open(database)
    with _reporting(), services.db.transaction() as session:
        campaign = get_campaign(session, campaign_code)
        at = parse_local_bound(at_text, end=False) if at_text else None
        consent = record_campaign_consent(
            session, campaign, _student(session, student_ref), decision, relation, evidence, actor, at
        )
        click.echo(f"recorded consent #{consent.id}: {decision} for campaign {campaign.code}")


@click.group("retention")
def retention_group() -> None:
    """Delete what is kept longer than its period (responses, audit rows, messages)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--database", help="Database URL.")
def retention_run(dry_run: bool, database: str | None) -> None:
    """Run the retention job once and print its counts as JSON (also written to the audit log)."""
    from xinshu.retention import RetentionPolicy, run_retention

    services = _open(database)
    with _reporting():
        policy = RetentionPolicy.from_config(services.config)
        with services.db.transaction() as session:
            report = run_retention(session, policy, dry_run=dry_run, actor="cli:retention")
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))


@click.group("export")
def export_group() -> None:
    """Exports."""


@export_group.command("research")
@click.option("--campaign", "campaign_code", required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.csv|.xlsx")
@click.option("--by", "actor", default="cli", show_default=True, help="Who exports (recorded).")
@click.option("--database", help="Database URL.")
def export_research(campaign_code: str, output: Path, actor: str, database: str | None) -> None:
    """Write the de-identified export of a campaign: one row per score, pseudonymous students."""
    fmt = output.suffix.lower().lstrip(".")
    services = _open(database)
    with _reporting():
        if fmt not in RESEARCH_FORMATS:
            raise XinshuError("the output file must end in .csv or .xlsx")
        key = pseudonym_key(services.config)
        try:
            with services.db.transaction() as session, output.open("wb") as out:
                campaign = get_campaign(session, campaign_code)
                rows = write_research_export(session, campaign, out, fmt, key, actor)
        except BaseException:
            output.unlink(missing_ok=True)  # no audit row, no file
            raise
        click.echo(json.dumps({"campaign": campaign_code, "rows": rows, "file": str(output)}, ensure_ascii=False))


__all__ = [
    "CampaignAdminView",
    "DataRequestAdminView",
    "ResearchExportView",
    "register_admin_views",
    "register_commands",
]
