"""Back-office pages for referrals, the partner directory, the parent ledger, consent and resources.

Model views (all :class:`~xinshu.admin.views.SecureModelView`, CSRF through its
form base class):

* 合作机构 (:class:`~xinshu.models.Partner`): the partner institutions of each
  district. A user sees the partners of every district under their org units
  and of the district above them (a school's staff see their own district's
  directory). District and bureau administrators create and edit partners of
  the districts they administer; nobody deletes (set 停用 instead).
* 资源库 (:class:`~xinshu.models.Resource`): city-wide; everyone holding a
  role reads it, the bureau administrator edits it.
* 转介, 家校沟通记录, 监护人同意 (:class:`~xinshu.models.Referral`,
  :class:`~xinshu.models.ParentContact`, :class:`~xinshu.models.GuardianConsent`):
  read-only lists scoped like the case (or student) they belong to.

Free text about a child (contact content and the parent's response, referral
outcome and return plan, consent evidence, the timeline's entries) is a case
note: it is shown only to users holding ``notes`` for the student
(:mod:`xinshu.permissions`: the psychology teacher; principals, directors,
class teachers and escalated district or bureau administrators after
recording a break-glass reason). Others see that an entry exists, when and by
whom. Every case page and list is audited before it is shown (security.md I1).

The page 转介与家校沟通 (endpoint ``casedesk``) lists the open cases a user
sees; ``/admin/casedesk/case/<id>/`` shows one case's referrals, parent
ledger, consent records, the resources its plan hands out and its district's
partners, with forms to refer, advance a referral's loop and record consent
(:data:`ACT_ROLES`) and to add a parent contact (:data:`CONTACT_ROLES`).
Everything is done through :mod:`xinshu.referrals`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import false, func, or_, select
from wtforms import DateTimeLocalField, HiddenField, RadioField, SelectField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from xinshu import hookimpl
from xinshu.admin.formatting import (
    CASE_STATE_LABELS,
    CHINA_TZ,
    ROLE_LABELS,
    choices,
    level_badge,
    local_time,
    select_choices,
)
from xinshu.admin.views import (
    SecureDbView,
    SecureModelView,
    audit_read,
    logged_in_user,
    role_covers,
    student_access,
)
from xinshu.errors import XinshuError
from xinshu.i18n import lazy_labels
from xinshu.models import (
    OPEN_CASE_STATES,
    Case,
    GuardianConsent,
    OrgUnit,
    ParentContact,
    Partner,
    PlanTask,
    Referral,
    Resource,
    Student,
    User,
)
from xinshu.permissions import has_capability
from xinshu.referrals import (
    CODE_PATTERN,
    CONSENT_DECISIONS,
    CONSENT_PURPOSES,
    CONSENT_REQUIRED_KINDS,
    CONTACT_CHANNELS,
    GUARDIAN_RELATIONS,
    MAX_TEXT,
    NEXT_STATUS,
    PARTNER_KINDS,
    REFERRAL_KINDS,
    REFERRAL_STATUSES,
    RESOURCE_AUDIENCES,
    RESOURCE_KINDS,
    acknowledge_referral,
    add_parent_contact,
    case_district,
    record_consent,
    record_outcome,
    record_return_plan,
    refer,
    referral_consent,
    resources_by_code,
    safe_resource_url,
)
from xinshu.scoping import scope_prefixes, scope_query

log = logging.getLogger(__name__)

#: Who may refer, advance a referral and record consent (where they hold the role).
ACT_ROLES = ("psychology_teacher", "principal")
#: Who may add to the parent ledger.
CONTACT_ROLES = ("psychology_teacher", "class_teacher", "principal")
#: Who edits the partner directory (for the districts under their org unit).
PARTNER_EDITOR_ROLES = ("district_admin", "bureau_admin")
#: Who edits the resource library.
RESOURCE_EDITOR_ROLES = ("bureau_admin",)
#: Case-timeline entries shown on the case page (the case workflow shows the rest).
TIMELINE_KINDS = ("referral", "contact", "consent")
#: Open cases listed on the desk's index page.
DESK_LIST_LIMIT = 200
HIDDEN_TEXT = _l("（受保护的个案记录：须有查看权限或登记查看理由）")
STEP_LABELS = {"acknowledged": _l("登记对方已接收"), "outcome": _l("登记转介结果"), "returned": _l("登记返校复学计划")}
STEP_TEXT_LABELS = {
    "acknowledged": _l("备注（可选）"),
    "outcome": _l("转介结果（评估、诊疗建议等）"),
    "returned": _l("返校复学计划"),
}


#: The label dictionaries of xinshu.referrals (stored in Chinese in case timelines), shown translated.
PARTNER_KIND_LABELS = lazy_labels(PARTNER_KINDS)
REFERRAL_KIND_LABELS = lazy_labels(REFERRAL_KINDS)
REFERRAL_STATUS_LABELS = lazy_labels(REFERRAL_STATUSES)
CONTACT_CHANNEL_LABELS = lazy_labels(CONTACT_CHANNELS)
CONSENT_DECISION_LABELS = lazy_labels(CONSENT_DECISIONS)
CONSENT_PURPOSE_LABELS = lazy_labels(CONSENT_PURPOSES)
GUARDIAN_RELATION_LABELS = lazy_labels(GUARDIAN_RELATIONS)
RESOURCE_KIND_LABELS = lazy_labels(RESOURCE_KINDS)
RESOURCE_AUDIENCE_LABELS = lazy_labels(RESOURCE_AUDIENCES)


# --- scoping helpers ------------------------------------------------------------


def ancestor_paths(prefixes: list[str]) -> set[str]:
    """Every org-unit path above or equal to each prefix (``/1/3/7/`` → ``/1/``, ``/1/3/``, ``/1/3/7/``)."""
    paths = set()
    for prefix in prefixes:
        parts = [p for p in prefix.split("/") if p]
        paths.update("/" + "/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1))
    return paths


def visible_district_ids(user: User | None):
    """A ``select`` of org-unit ids whose partners ``user`` may see: units under the user's
    org units and the units above them (a school's staff see their district's partners)."""
    prefixes = scope_prefixes(user)
    if not prefixes:
        return select(OrgUnit.id).where(false())
    under = [OrgUnit.path.startswith(prefix, autoescape=True) for prefix in prefixes]
    return select(OrgUnit.id).where(or_(*under, OrgUnit.path.in_(sorted(ancestor_paths(prefixes)))))


def editor_prefixes(user: User | None, roles: tuple[str, ...]) -> list[str]:
    """Org-unit paths where ``user`` holds one of ``roles``."""
    if user is None or not user.is_active:
        return []
    return sorted({a.org_unit.path for a in user.roles if a.role in roles and a.org_unit is not None})


def visible_case_ids(user: User | None):
    return scope_query(select(Case.id), Case, user)


def may_read_text(user: User | None, student: Student | None) -> bool:
    """True when ``user`` holds ``notes`` for ``student`` now (a break-glass reason included)."""
    if student is None or user is None:
        return False
    if user is logged_in_user():
        return "notes" in student_access(student)
    return has_capability(user, student, "notes")


def _student_of(view: SecureModelView, model: Any) -> Student | None:
    if isinstance(model, GuardianConsent):
        return view.session.get(Student, model.student_id)
    case = view.session.get(Case, model.case_id)
    return case.student if case is not None else None


def fmt_case_text(view, context, model, name) -> Markup | str:
    """Free text, for users holding ``notes`` for the student only."""
    value = getattr(model, name)
    if not value:
        return ""
    if not may_read_text(logged_in_user(), _student_of(view, model)):
        return Markup("<span class='text-muted'>{}</span>").format(HIDDEN_TEXT)
    return Markup("<span style='white-space: pre-wrap'>{}</span>").format(value)


def fmt_case_link(view, context, model, name) -> Markup:
    case_id = getattr(model, name)
    if case_id is None:
        return Markup("")
    return Markup("<a href='{}'>{}</a>").format(
        url_for("casedesk.case_view", case_id=case_id), _("个案 #%(id)s", id=case_id)
    )


def fmt_student_link(view, context, model, name) -> Markup:
    student_id = getattr(model, name)
    return Markup("<a href='{}'>#{}</a>").format(url_for("student.details_view", id=student_id), student_id)


def fmt_resource_url(view, context, model, name) -> Markup | str:
    """An https address or a site path as a link; a path relative to the bureau's file store as text."""
    url = model.url or ""
    if safe_resource_url(url) and (url.startswith(("https://", "/"))):
        return Markup("<a href='{}' rel='noopener noreferrer'>{}</a>").format(url, url)
    return Markup("<code>{}</code>").format(url) if url else ""


def _labels(labels: dict[str, str]):
    def formatter(view, context, model, name) -> str:
        value = getattr(model, name)
        return labels.get(value, value or "")

    return formatter


def _has_role(user: User | None, roles: tuple[str, ...]) -> bool:
    return user is not None and any(a.role in roles for a in user.roles)


# --- model views ----------------------------------------------------------------


class PartnerView(SecureModelView):
    """合作机构: the partner directory of each district."""

    can_delete = False
    column_list = ("id", "district", "kind", "name", "department", "phone", "address", "active")
    column_details_list = ("id", "district", "kind", "name", "department", "phone", "address", "notes", "active")
    form_columns = ("district", "kind", "name", "department", "phone", "address", "notes", "active")
    column_labels: ClassVar[dict[str, str]] = {
        "id": _l("编号"),
        "district": _l("所属区"),
        "district.name": _l("所属区"),
        "kind": _l("类型"),
        "name": _l("机构名称"),
        "department": _l("科室/部门"),
        "phone": _l("联系电话"),
        "address": _l("地址"),
        "notes": _l("说明"),
        "active": _l("启用"),
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"kind": choices(PARTNER_KIND_LABELS)}
    form_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"kind": choices(PARTNER_KIND_LABELS)}
    column_searchable_list = ("name", "department")
    column_filters = ("kind", "active", "district.name")
    column_sortable_list = ("id", "kind", "name", "active")
    column_default_sort = "id"

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return bool(editor_prefixes(logged_in_user(), PARTNER_EDITOR_ROLES))

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.can_create

    def _restrict(self, query):
        return query.filter(Partner.district_id.in_(visible_district_ids(logged_in_user())))

    def _editable_districts(self) -> list[OrgUnit]:
        prefixes = editor_prefixes(logged_in_user(), PARTNER_EDITOR_ROLES)
        if not prefixes:
            return []
        under = or_(*[OrgUnit.path.startswith(prefix, autoescape=True) for prefix in prefixes])
        return list(
            self.session.scalars(select(OrgUnit).where(OrgUnit.kind == "district", under).order_by(OrgUnit.code))
        )

    def _may_edit_district(self, district: OrgUnit | None) -> bool:
        return district is not None and any(d.id == district.id for d in self._editable_districts())

    def create_form(self, obj=None):
        form = super().create_form(obj)
        form.district.query_factory = self._editable_districts
        return form

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        form.district.query_factory = self._editable_districts
        return form

    def update_model(self, form, model) -> bool:
        if not self._may_edit_district(model.district):
            flash(_("只能修改本人所管辖区的合作机构"), "error")
            return False
        return super().update_model(form, model)

    def on_model_change(self, form, model: Partner, is_created: bool) -> None:
        if not self._may_edit_district(model.district):
            raise ValidationError(_("只能在本人所管辖的区登记合作机构"))
        if model.kind not in PARTNER_KINDS:
            raise ValidationError(_("未知的机构类型"))
        model.name = (model.name or "").strip()
        if not model.name:
            raise ValidationError(_("请填写机构名称"))
        for attr in ("department", "phone", "address", "notes"):
            setattr(model, attr, (getattr(model, attr) or "").strip())
        log.info("partner %s %s by user id %s", model.id or "(new)", "created" if is_created else "edited",
                 logged_in_user().id)  # fmt: skip


class ResourceView(SecureModelView):
    """资源库: guidance sheets, class-meeting and course packs, parent guidance."""

    can_delete = False
    column_list = ("code", "kind", "title", "audience", "url")
    column_details_list = ("id", "code", "kind", "title", "audience", "url", "description")
    form_columns = ("code", "kind", "title", "audience", "url", "description")
    column_labels: ClassVar[dict[str, str]] = {
        "id": _l("编号"),
        "code": _l("代码"),
        "kind": _l("类别"),
        "title": _l("标题"),
        "audience": _l("适用对象"),
        "url": _l("文件地址"),
        "description": _l("简介"),
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {
        "kind": choices(RESOURCE_KIND_LABELS),
        "audience": choices(RESOURCE_AUDIENCE_LABELS),
    }
    form_choices: ClassVar[dict[str, list[tuple[str, str]]]] = column_choices
    column_formatters: ClassVar[dict[str, Any]] = {"url": fmt_resource_url}
    column_searchable_list = ("code", "title")
    column_filters = ("kind", "audience")
    column_sortable_list = ("code", "kind", "title", "audience")
    column_default_sort = "code"

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return _has_role(logged_in_user(), RESOURCE_EDITOR_ROLES)

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.can_create

    def _restrict(self, query):
        # City-wide reference material: anyone holding a role reads it; nobody else.
        return query if scope_prefixes(logged_in_user()) else query.filter(false())

    def on_model_change(self, form, model: Resource, is_created: bool) -> None:
        if not _has_role(logged_in_user(), RESOURCE_EDITOR_ROLES):
            raise ValidationError(_("只有市教育局管理员可以编辑资源库"))
        model.code = (model.code or "").strip()
        model.url = (model.url or "").strip()
        if not CODE_PATTERN.match(model.code):
            raise ValidationError(_("代码只能含小写字母、数字和 _ . -，例如 safety-plan-guide"))
        if model.kind not in RESOURCE_KINDS or model.audience not in RESOURCE_AUDIENCES:
            raise ValidationError(_("请选择类别和适用对象"))
        if not safe_resource_url(model.url):
            raise ValidationError(_("文件地址须为空、相对路径或 https:// 地址"))


class _CaseScopedView(SecureModelView):
    """Rows belonging to a case: visible when the case is; reads audited."""

    audit_list = True

    def _restrict(self, query):
        return query.filter(self.model.case_id.in_(visible_case_ids(logged_in_user())))


class ReferralView(_CaseScopedView):
    audit_type = "referral"
    column_list = ("id", "case_id", "kind", "partner", "status", "sent_by", "sent_at", "acknowledged_at",
                   "outcome_at", "returned_at")  # fmt: skip
    column_details_list = (*column_list, "outcome", "return_plan")
    column_labels: ClassVar[dict[str, str]] = {
        "id": _l("编号"),
        "case_id": _l("个案"),
        "kind": _l("转介类型"),
        "partner": _l("合作机构"),
        "status": _l("进展"),
        "sent_by": _l("转出人"),
        "sent_at": _l("转出时间"),
        "acknowledged_at": _l("接收时间"),
        "outcome": _l("转介结果"),
        "outcome_at": _l("结果时间"),
        "return_plan": _l("返校复学计划"),
        "returned_at": _l("返校计划时间"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {
        "case_id": fmt_case_link,
        "partner": lambda v, c, m, n: f"{m.partner.name} {m.partner.department}".strip() if m.partner else "",
        "outcome": fmt_case_text,
        "return_plan": fmt_case_text,
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {
        "kind": choices(REFERRAL_KIND_LABELS),
        "status": choices(REFERRAL_STATUS_LABELS),
    }
    column_filters = ("kind", "status")
    column_sortable_list = ("id", "case_id", "kind", "status", "sent_at")
    column_default_sort = ("sent_at", True)


class ParentContactView(_CaseScopedView):
    audit_type = "parent_contact"
    column_list = ("id", "case_id", "at", "by", "channel", "content", "parent_response")
    column_details_list = column_list
    column_labels: ClassVar[dict[str, str]] = {
        "id": _l("编号"),
        "case_id": _l("个案"),
        "at": _l("沟通时间"),
        "by": _l("沟通人"),
        "channel": _l("方式"),
        "content": _l("沟通内容"),
        "parent_response": _l("家长反馈"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {
        "case_id": fmt_case_link,
        "content": fmt_case_text,
        "parent_response": fmt_case_text,
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"channel": choices(CONTACT_CHANNEL_LABELS)}
    column_filters = ("channel",)
    column_sortable_list = ("id", "case_id", "at", "channel")
    column_default_sort = ("at", True)


class GuardianConsentView(SecureModelView):
    audit_type = "guardian_consent"
    audit_list = True
    column_list = ("id", "student_id", "case_id", "purpose", "decision", "guardian_relation", "recorded_by", "at")
    column_details_list = (*column_list, "evidence")
    column_labels: ClassVar[dict[str, str]] = {
        "id": _l("编号"),
        "student_id": _l("学生"),
        "case_id": _l("个案"),
        "purpose": _l("事项"),
        "decision": _l("决定"),
        "guardian_relation": _l("监护人关系"),
        "evidence": _l("凭证"),
        "recorded_by": _l("登记人"),
        "at": _l("登记时间"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {
        "student_id": fmt_student_link,
        "case_id": fmt_case_link,
        "purpose": _labels(CONSENT_PURPOSE_LABELS),
        "guardian_relation": _labels(GUARDIAN_RELATION_LABELS),
        "evidence": fmt_case_text,
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"decision": choices(CONSENT_DECISION_LABELS)}
    column_filters = ("purpose", "decision")
    column_sortable_list = ("id", "purpose", "decision", "at")
    column_default_sort = ("at", True)

    def _restrict(self, query):
        visible = scope_query(select(Student.id), Student, logged_in_user())
        return query.filter(GuardianConsent.student_id.in_(visible))


# --- the case desk --------------------------------------------------------------


class ReferForm(FlaskForm):
    kind = SelectField(_l("转介类型"), choices=select_choices(REFERRAL_KIND_LABELS))
    partner = SelectField(_l("合作机构"), coerce=int, validate_choice=True)
    reason = TextAreaField(
        _l("转介理由"),
        validators=[DataRequired(message=_l("请填写转介理由")), Length(max=MAX_TEXT, message=_l("最多4000字"))],
    )
    submit = SubmitField(_l("转介"))


class StepForm(FlaskForm):
    status = HiddenField()
    text = TextAreaField(_l("内容"), validators=[Length(max=MAX_TEXT, message=_l("最多4000字"))])
    submit = SubmitField(_l("登记"))


class ContactForm(FlaskForm):
    channel = SelectField(_l("沟通方式"), choices=select_choices(CONTACT_CHANNEL_LABELS))
    at = DateTimeLocalField(_l("沟通时间（北京时间，默认现在）"), format="%Y-%m-%dT%H:%M", validators=[Optional()])
    content = TextAreaField(
        _l("沟通内容"),
        validators=[DataRequired(message=_l("请填写沟通内容")), Length(max=MAX_TEXT, message=_l("最多4000字"))],
    )
    parent_response = TextAreaField(_l("家长反馈"), validators=[Length(max=MAX_TEXT, message=_l("最多4000字"))])
    submit = SubmitField(_l("记录"))


class ConsentForm(FlaskForm):
    purpose = SelectField(_l("事项"), choices=select_choices(CONSENT_PURPOSE_LABELS))
    decision = RadioField(
        _l("监护人决定"), choices=select_choices(CONSENT_DECISION_LABELS), validators=[DataRequired(_l("请选择"))]
    )
    relation = SelectField(_l("监护人关系"), choices=select_choices(GUARDIAN_RELATION_LABELS))
    evidence = TextAreaField(
        _l("凭证（签字同意书存档位置、谈话记录等）"),
        validators=[DataRequired(message=_l("请填写凭证")), Length(max=MAX_TEXT, message=_l("最多4000字"))],
    )
    submit = SubmitField(_l("登记"))


class CaseDeskView(SecureDbView):
    """转介与家校沟通: one case's referrals, parent ledger, consent and plan resources."""

    @expose("/")
    def index(self):
        user = logged_in_user()
        stmt = (
            scope_query(select(Case), Case, user)
            .where(Case.state.in_(OPEN_CASE_STATES))
            .order_by(Case.opened_at.desc(), Case.id.desc())
            .limit(DESK_LIST_LIMIT)
        )
        cases = list(self._session().scalars(stmt))
        ids = [case.id for case in cases]
        if ids:
            audit_read("read", "case", "", page="casedesk", ids=ids)
        open_referrals = self._counts(Referral, ids, Referral.status != "returned")
        contacts = self._counts(ParentContact, ids)
        return self.render(
            "admin/xinshu_case_desk.html",
            case=None,
            cases=cases,
            open_referrals=open_referrals,
            contacts=contacts,
            state_labels=CASE_STATE_LABELS,
            level_badge=level_badge,
            local_time=local_time,
            limit=DESK_LIST_LIMIT,
        )

    @expose("/case/<int:case_id>/")
    def case_view(self, case_id: int):
        case = self._case(case_id)
        audit_read("read", "case", case.id, page="casedesk")
        return self._page(case)

    @expose("/case/<int:case_id>/refer", methods=("POST",))
    def refer_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(case, ACT_ROLES)
        form = self._refer_form(case)
        if form.validate_on_submit():
            error = self._apply(
                lambda s: refer(s, case, form.kind.data, form.partner.data, user.username, form.reason.data)
            )
            if error is None:
                flash(_("已登记转介"), "success")
                return self._back(case)
            form.reason.errors = [*form.reason.errors, error]
        return self._page(case, refer_form=form, status=400)

    @expose("/case/<int:case_id>/referral/<int:referral_id>/step", methods=("POST",))
    def step_view(self, case_id: int, referral_id: int):
        case = self._case(case_id)
        user = self._require(case, ACT_ROLES)
        referral = self._session().get(Referral, referral_id)
        if referral is None or referral.case_id != case.id:
            abort(404)
        form = StepForm(prefix=f"step{referral.id}")
        if form.validate_on_submit():
            if form.status.data != referral.status:
                form.text.errors = [*form.text.errors, _("此转介已被他人更新，请刷新后再登记")]
            else:
                target, text = NEXT_STATUS.get(referral.status), form.text.data or ""
                error = self._apply(lambda s: self._advance(s, referral, target, text, user.username))
                if error is None:
                    flash(_("已登记：%(status)s", status=REFERRAL_STATUS_LABELS.get(target, target)), "success")
                    return self._back(case)
                form.text.errors = [*form.text.errors, error]
        return self._page(case, step_forms={referral.id: form}, status=400)

    @expose("/case/<int:case_id>/contact", methods=("POST",))
    def contact_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(case, CONTACT_ROLES)
        form = ContactForm(prefix="contact")
        if form.validate_on_submit():
            at = form.at.data.replace(tzinfo=CHINA_TZ) if form.at.data else None
            error = self._apply(
                lambda s: add_parent_contact(
                    s, case, user.username, form.channel.data, form.content.data, form.parent_response.data or "", at
                )
            )
            if error is None:
                flash(_("已记录家校沟通"), "success")
                return self._back(case)
            form.content.errors = [*form.content.errors, error]
        return self._page(case, contact_form=form, status=400)

    @expose("/case/<int:case_id>/consent", methods=("POST",))
    def consent_view(self, case_id: int):
        case = self._case(case_id)
        user = self._require(case, ACT_ROLES)
        form = ConsentForm(prefix="consent")
        if form.validate_on_submit():
            error = self._apply(
                lambda s: record_consent(
                    s, case.student, form.purpose.data, form.decision.data, form.relation.data,
                    form.evidence.data, user.username, case=case,
                )
            )  # fmt: skip
            if error is None:
                flash(_("已登记监护人意见"), "success")
                return self._back(case)
            form.evidence.errors = [*form.evidence.errors, error]
        return self._page(case, consent_form=form, status=400)

    # --- helpers

    def _session(self):
        return self.db.session

    def _case(self, case_id: int) -> Case:
        """The case if the current user may see it; 404 otherwise (missing or out of scope alike)."""
        stmt = scope_query(select(Case).where(Case.id == case_id), Case, logged_in_user())
        case = self._session().scalar(stmt)
        if case is None:
            abort(404)
        return case

    @staticmethod
    def _require(case: Case, roles: tuple[str, ...]) -> User:
        user = logged_in_user()
        if not role_covers(user, roles, case.student):
            abort(403)
        return user

    def _apply(self, action) -> str | None:
        """Run ``action(session)`` and commit; the error message on a refusal."""
        session = self._session()
        try:
            action(session)
            session.commit()
        except XinshuError as exc:
            session.rollback()
            return _("未能保存：%(error)s", error=exc)
        except Exception:
            session.rollback()
            raise
        return None

    @staticmethod
    def _advance(session, referral: Referral, target: str | None, text: str, actor: str) -> None:
        if target == "acknowledged":
            acknowledge_referral(session, referral, actor, reason=text)
        elif target == "outcome":
            record_outcome(session, referral, text, actor)
        elif target == "returned":
            record_return_plan(session, referral, text, actor)
        else:
            raise XinshuError(_("此转介已完成闭环"))

    def _back(self, case: Case):
        return redirect(self.get_url(".case_view", case_id=case.id))

    def _counts(self, model: type, case_ids: list[int], *where) -> dict[int, int]:
        if not case_ids:
            return {}
        stmt = select(model.case_id, func.count()).where(model.case_id.in_(case_ids), *where).group_by(model.case_id)
        return dict(self._session().execute(stmt).all())

    def _district_partners(self, case: Case) -> list[Partner]:
        try:
            district = case_district(self._session(), case)
        except XinshuError:
            return []
        stmt = (
            select(Partner)
            .where(Partner.district_id == district.id, Partner.active.is_(True))
            .order_by(Partner.kind, Partner.name, Partner.id)
        )
        return list(self._session().scalars(stmt))

    def _refer_form(self, case: Case) -> ReferForm:
        form = ReferForm(prefix="refer")
        form.partner.choices = {
            p.id: f"[{REFERRAL_KIND_LABELS[p.kind]}] {p.name} {p.department}".strip()
            for p in self._district_partners(case)
            if p.kind in REFERRAL_KINDS
        }
        return form

    def _plan_resources(self, case: Case) -> list[tuple[PlanTask, list[tuple[str, Resource | None]]]]:
        tasks = [task for task in sorted(case.tasks, key=lambda t: (t.due_at, t.id)) if task.resources]
        codes = [code for task in tasks for code in task.resources]
        library = resources_by_code(self._session(), codes)
        return [(task, [(str(code), library.get(code)) for code in task.resources]) for task in tasks]

    def _page(self, case: Case, status: int = 200, **forms: Any):
        session = self._session()
        user = logged_in_user()
        student = case.student
        referrals = list(session.scalars(select(Referral).where(Referral.case_id == case.id).order_by(Referral.id)))
        contacts = list(
            session.scalars(
                select(ParentContact)
                .where(ParentContact.case_id == case.id)
                .order_by(ParentContact.at, ParentContact.id)
            )
        )
        consents = list(
            session.scalars(
                select(GuardianConsent)
                .where(GuardianConsent.student_id == student.id)
                .order_by(GuardianConsent.at, GuardianConsent.id)
            )
        )
        may_act = role_covers(user, ACT_ROLES, student)
        step_forms = forms.get("step_forms", {})
        for referral in referrals:
            if referral.status in NEXT_STATUS and referral.id not in step_forms:
                form = StepForm(prefix=f"step{referral.id}", formdata=None)
                form.status.data = referral.status
                step_forms[referral.id] = form
        consent = referral_consent(session, case)
        partners = self._district_partners(case)
        timeline = [event for event in case.events if event.kind in TIMELINE_KINDS]
        resource_view = next((v for v in self.admin._views if isinstance(v, ResourceView)), None)
        # The six-step workflow page of the case, when the case-workflow plugin provides one.
        workflow = "caseflow.case_view"
        workflow_url = url_for(workflow, case_id=case.id) if workflow in current_app.view_functions else None
        return (
            self.render(
                "admin/xinshu_case_desk.html",
                case=case,
                student=student,
                is_open=case.state in OPEN_CASE_STATES,
                referrals=referrals,
                timeline=timeline,
                contacts=contacts,
                consents=consents,
                consent=consent,
                consent_kinds=[REFERRAL_KIND_LABELS[k] for k in CONSENT_REQUIRED_KINDS],
                partners=partners,
                plan_resources=self._plan_resources(case),
                resource_url=(lambda r: url_for(f"{resource_view.endpoint}.details_view", id=r.id))
                if resource_view
                else None,
                workflow_url=workflow_url,
                may_act=may_act,
                may_contact=role_covers(user, CONTACT_ROLES, student),
                may_read=may_read_text(user, student),
                break_glass=student_access(student).break_glass,
                refer_form=forms.get("refer_form") or self._refer_form(case),
                step_forms=step_forms,
                contact_form=forms.get("contact_form") or ContactForm(prefix="contact", formdata=None),
                consent_form=forms.get("consent_form") or ConsentForm(prefix="consent", formdata=None),
                hidden_text=HIDDEN_TEXT,
                labels={
                    "state": CASE_STATE_LABELS,
                    "partner": PARTNER_KIND_LABELS,
                    "referral": REFERRAL_KIND_LABELS,
                    "status": REFERRAL_STATUS_LABELS,
                    "step": STEP_LABELS,
                    "step_text": STEP_TEXT_LABELS,
                    "next": NEXT_STATUS,
                    "channel": CONTACT_CHANNEL_LABELS,
                    "decision": CONSENT_DECISION_LABELS,
                    "purpose": CONSENT_PURPOSE_LABELS,
                    "relation": GUARDIAN_RELATION_LABELS,
                    "resource": RESOURCE_KIND_LABELS,
                    "role": ROLE_LABELS,
                },
                level_badge=level_badge,
                local_time=local_time,
            ),
            status,
        )


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    directory, casework = _l("专家资源"), _l("分类干预")
    partners, referrals = lazy_pgettext("menu", "合作机构"), lazy_pgettext("menu", "转介")
    consents = lazy_pgettext("menu", "监护人同意")
    admin.add_view(PartnerView(Partner, db, name=partners, endpoint="partner", category=directory))
    admin.add_view(ResourceView(Resource, db, name=_l("资源库"), endpoint="resource", category=directory))
    admin.add_view(CaseDeskView(db, name=_l("转介与家校沟通"), endpoint="casedesk", category=casework))
    admin.add_view(ReferralView(Referral, db, name=referrals, endpoint="referral", category=casework))
    admin.add_view(
        ParentContactView(ParentContact, db, name=_l("家校沟通记录"), endpoint="parentcontact", category=casework)
    )
    admin.add_view(GuardianConsentView(GuardianConsent, db, name=consents, endpoint="consent", category=casework))
