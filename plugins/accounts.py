"""Staff accounts and the audit log in the back office: user management within one's own
scope (roles and org units, before/after audited) and the read-only audit log (审计日志).

用户管理 (endpoint ``user``, ``/admin/user/``), for bureau and district administrators:

* a bureau administrator manages every account; a district administrator
  manages the accounts whose every role assignment lies inside a district they
  administer (an account without any role is the bureau's), and grants only
  roles at or below that district: never ``bureau_admin``, never an org unit
  outside it (anything else is answered 403 and audited, security.md A13);
* nobody manages their own account here (no self-granted roles or unlocks);
* create an account (initial password under the password policy), edit its
  display name, email, active flag and expiry date, add and remove role
  assignments (a role is held at the kind of unit :data:`ROLE_UNIT_KINDS`
  names), reset its password, lift a lockout;
* every page is a plain form (Flask-WTF, CSRF token); only the fields of the
  form are read, so extra POST fields (``password_hash``, ``is_superuser``,
  ``failed_logins``...) change nothing (A8); the password hash is never shown,
  searched or filtered (A10);
* every change writes one audit row (action ``create`` or ``update``,
  object ``user``/id) whose detail holds ``op``, ``before`` and ``after`` with
  the role assignments as ``[role, org_unit_id]`` pairs and the changed
  non-identifying fields with their values (``active``, ``expires_on``,
  ``failed_logins``, ``locked_until``); changes to the display name or email
  are recorded by field name only (``changed``), as staff names and
  addresses are personal data (A12).

审计日志 (endpoint ``audit``, ``/admin/audit/``): read-only (one GET route,
nothing else), filters by action, actor, object type and id and a date range
(Asia/Shanghai dates), sorting only by :data:`AUDIT_SORTS` (anything else is
ignored, security.md F1), 50 rows a page, times in Asia/Shanghai. A bureau
administrator sees every row; a district administrator the rows whose actor is
an account of their district (every role inside it). Each view of the page is
itself audited (``read`` of ``audit_log``), before anything is shown.

Command line (``register_commands``): ``xinshu users unlock USERNAME`` and
``xinshu audit purge --keep-days N`` (N ≥ 183; the database refuses younger
deletions too).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click
from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import Select, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from wtforms import BooleanField, DateField, Form, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError

from xinshu import hookimpl
from xinshu.admin.formatting import CHINA_TZ, ORG_KIND_LABELS, ROLE_LABELS, local_time
from xinshu.admin.views import SecureView, logged_in_user
from xinshu.audit import (
    ACTIONS,
    AUDIT_MIN_DAYS,
    AuditUnavailable,
    end_read_transaction,
    purge_audit,
    record,
    record_now,
    record_read,
)
from xinshu.auth import (
    create_user,
    is_expired,
    is_locked,
    password_problems,
    safe_next,
    set_password,
    unlock,
)
from xinshu.errors import XinshuError
from xinshu.models import ROLES, AuditEvent, OrgUnit, RoleAssignment, User, utcnow

log = logging.getLogger(__name__)

#: Roles that manage accounts (each within the scope of its org unit).
MANAGER_ROLES = ("bureau_admin", "district_admin")
#: The kind of org unit each role is held at.
ROLE_UNIT_KINDS: dict[str, tuple[str, ...]] = {
    "bureau_admin": ("city",),
    "district_admin": ("district",),
    "principal": ("school",),
    "moral_education_director": ("school",),
    "psychology_teacher": ("school",),
    "class_teacher": ("class",),
}
#: Account fields audited with their values when they change (neither secret nor identifying).
AUDITED_FIELDS = ("active", "expires_on", "failed_logins", "locked_until")
#: Account fields audited by name only when they change (staff names and addresses are personal data).
NAMED_FIELDS = ("display_name", "email")
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,79}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
PAGE_SIZE = 50
#: Audit-log columns the list may be sorted by (``?sort=``); anything else is ignored.
AUDIT_SORTS = {
    "at": AuditEvent.at,
    "action": AuditEvent.action,
    "actor": AuditEvent.actor,
    "object_type": AuditEvent.object_type,
    "outcome": AuditEvent.outcome,
}
DETAIL_SHOWN_CHARS = 600
#: Actor of audit rows written by the command line.
CLI_ACTOR = "cli"


class NotPermitted(XinshuError):
    """The manager may not do this (answered 403 and audited as denied)."""


# --- who manages whom -------------------------------------------------------------


@dataclass(frozen=True)
class Manager:
    """A logged-in account administrator: the bureau (everyone) or the org-unit paths they administer."""

    user: User
    bureau: bool
    prefixes: tuple[str, ...]

    def covers(self, unit: OrgUnit | None) -> bool:
        """True when ``unit`` lies inside what this manager administers."""
        if unit is None:
            return False
        return self.bureau or any(unit.path.startswith(prefix) for prefix in self.prefixes)


def manager_of(user: User | None) -> Manager | None:
    """The :class:`Manager` ``user`` is, or None when they administer no accounts."""
    if user is None or not user.is_active:
        return None
    held = [a for a in user.roles if a.role in MANAGER_ROLES and a.org_unit is not None]
    if not held:
        return None
    bureau = any(a.role == "bureau_admin" for a in held)
    return Manager(user, bureau, tuple(sorted({a.org_unit.path for a in held})))


def may_manage(manager: Manager, target: User) -> bool:
    """True when ``manager`` may change ``target`` (never their own account)."""
    if target.id == manager.user.id:
        return False
    if manager.bureau:
        return True
    return bool(target.roles) and all(manager.covers(a.org_unit) for a in target.roles)


def may_grant(manager: Manager, role: str, unit: OrgUnit) -> bool:
    """True when ``manager`` may give (or take away) ``role`` held at ``unit``."""
    if role not in ROLES or (role == "bureau_admin" and not manager.bureau):
        return False
    return manager.covers(unit)


def role_fits_unit(role: str, unit: OrgUnit) -> bool:
    """True when ``role`` is held at this kind of unit (:data:`ROLE_UNIT_KINDS`)."""
    return unit.kind in ROLE_UNIT_KINDS.get(role, ())


def _inside(prefixes: Iterable[str]):
    return or_(*[OrgUnit.path.startswith(prefix, autoescape=True) for prefix in prefixes])


def users_within(prefixes: Iterable[str]) -> Select:
    """Ids of the users holding at least one role, every one of them under ``prefixes``."""
    prefixes = list(prefixes)
    outside = (
        select(RoleAssignment.user_id)
        .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
        .where(not_(_inside(prefixes)))
    )
    return select(RoleAssignment.user_id).where(RoleAssignment.user_id.not_in(outside)).distinct()


def manageable_users(manager: Manager) -> Select:
    """``select(User)`` of the accounts ``manager`` may change."""
    stmt = select(User).where(User.id != manager.user.id)
    if manager.bureau:
        return stmt
    return stmt.where(User.id.in_(users_within(manager.prefixes)))


def grantable_units(session: Session, manager: Manager) -> list[OrgUnit]:
    """The org units ``manager`` may grant some role at, in tree order."""
    kinds = {kind for role, unit_kinds in ROLE_UNIT_KINDS.items() for kind in unit_kinds if role != "bureau_admin"}
    if manager.bureau:
        kinds.add("city")
    stmt = select(OrgUnit).where(OrgUnit.kind.in_(kinds)).order_by(OrgUnit.path, OrgUnit.id)
    if not manager.bureau:
        stmt = stmt.where(_inside(manager.prefixes))
    return list(session.scalars(stmt))


def grantable_roles(manager: Manager) -> list[str]:
    """The roles ``manager`` may grant, in :data:`ROLES` order."""
    return [role for role in ROLES if manager.bureau or role != "bureau_admin"]


# --- audited changes ------------------------------------------------------------------


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def snapshot(user: User) -> dict[str, Any]:
    """The audited state of an account: roles as ``[role, org_unit_id]`` and :data:`AUDITED_FIELDS`.

    :data:`NAMED_FIELDS` are included for comparison only; :func:`change_detail` never copies their values.
    """
    roles = sorted([a.role, a.org_unit_id if a.org_unit_id is not None else a.org_unit.id] for a in user.roles)
    return {
        "roles": roles,
        "active": bool(user.active),
        "expires_on": _iso(user.expires_on),
        "failed_logins": int(user.failed_logins or 0),
        "locked_until": _iso(user.locked_until),
        "display_name": user.display_name or "",
        "email": user.email or "",
    }


def change_detail(op: str, before: dict[str, Any], after: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The ``detail`` of an account change: ``op``, roles and changed fields before and after."""
    changed = [name for name in AUDITED_FIELDS if before.get(name) != after.get(name)]
    detail: dict[str, Any] = {
        "op": op,
        "before": {"roles": before.get("roles", []), **{name: before.get(name) for name in changed}},
        "after": {"roles": after["roles"], **{name: after[name] for name in changed}},
        **extra,
    }
    named = [name for name in NAMED_FIELDS if before.get(name, "") != after[name]]
    if named:
        detail["changed"] = named
    return detail


def has_changes(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when anything audited (roles, fields, named fields) differs."""
    return any(before.get(key) != value for key, value in after.items())


@dataclass(frozen=True)
class AccountFields:
    """The editable, non-secret fields of an account."""

    display_name: str
    email: str | None
    active: bool
    expires_on: dt.date | None


def create_account(
    session: Session,
    manager: Manager,
    username: str,
    password: str,
    role: str,
    unit: OrgUnit,
    fields: AccountFields,
) -> User:
    """Create an account holding ``role`` at ``unit``; audited. The caller commits.

    :raises NotPermitted: ``manager`` may not grant that role there.
    :raises WeakPassword: the password does not meet the policy.
    """
    if not may_grant(manager, role, unit):
        raise NotPermitted(_("无权在该机构授予该角色"))
    user = create_user(
        session,
        username,
        password,
        role,
        unit,
        email=fields.email,
        display_name=fields.display_name,
        expires_on=fields.expires_on,
    )
    user.active = fields.active
    session.flush()
    after = snapshot(user)
    detail: dict[str, Any] = {
        "op": "create",
        "before": None,
        "after": {"roles": after["roles"], "active": after["active"], "expires_on": after["expires_on"]},
    }
    named = [name for name in NAMED_FIELDS if after[name]]
    if named:
        detail["changed"] = named
    record(session, "create", "user", user.id, detail=detail)
    return user


def update_account(session: Session, manager: Manager, target: User, fields: AccountFields) -> bool:
    """Change display name, email, active flag and expiry date; audited when anything changed.

    :return: True when something changed. The caller commits.
    :raises NotPermitted: ``manager`` may not manage ``target``.
    """
    _require_manage(manager, target)
    before = snapshot(target)
    target.display_name = fields.display_name
    target.email = fields.email
    target.active = fields.active
    target.expires_on = fields.expires_on
    after = snapshot(target)
    if not has_changes(before, after):
        return False
    record(session, "update", "user", target.id, detail=change_detail("edit", before, after))
    return True


def grant_role(session: Session, manager: Manager, target: User, role: str, unit: OrgUnit) -> RoleAssignment:
    """Give ``target`` ``role`` at ``unit``; audited. The caller commits.

    :raises NotPermitted: not ``target``'s manager, or the role or unit is beyond the manager.
    :raises ValueError: the role is not held at that kind of unit, or ``target`` holds it already.
    """
    _require_manage(manager, target)
    if not may_grant(manager, role, unit):
        raise NotPermitted(_("无权在该机构授予该角色"))
    if not role_fits_unit(role, unit):
        raise ValueError(_("该角色不能设在此类机构"))
    if any(a.role == role and a.org_unit_id == unit.id for a in target.roles):
        raise ValueError(_("该用户已有此角色"))
    before = snapshot(target)
    assignment = RoleAssignment(role=role, org_unit=unit)
    target.roles.append(assignment)
    session.flush()
    record(session, "update", "user", target.id, detail=change_detail("grant", before, snapshot(target)))
    return assignment


def revoke_role(session: Session, manager: Manager, target: User, assignment: RoleAssignment) -> None:
    """Take one role assignment away from ``target``; audited. The caller commits.

    A district administrator cannot take away an account's last role (that
    would hand the account to the bureau): they disable it instead.

    :raises NotPermitted: not ``target``'s manager, or the assignment is beyond the manager.
    :raises ValueError: the last role, for a district administrator.
    """
    _require_manage(manager, target)
    if assignment.user_id != target.id or not may_grant(manager, assignment.role, assignment.org_unit):
        raise NotPermitted(_("无权撤销该角色"))
    if len(target.roles) == 1 and not manager.bureau:
        raise ValueError(_("不能撤销该用户的最后一个角色；如不再需要此账号，请停用"))
    before = snapshot(target)
    target.roles.remove(assignment)
    session.flush()
    record(session, "update", "user", target.id, detail=change_detail("revoke", before, snapshot(target)))


def reset_password(session: Session, manager: Manager, target: User, password: str) -> None:
    """Set a new password (policy checked) and lift any lockout; audited without the password.

    :raises NotPermitted: ``manager`` may not manage ``target``.
    :raises WeakPassword: the password does not meet the policy.
    """
    _require_manage(manager, target)
    before = snapshot(target)
    set_password(target, password)
    record(session, "update", "user", target.id, detail=change_detail("reset_password", before, snapshot(target)))


def unlock_account(session: Session, target: User, actor: User | str | None = None) -> bool:
    """Lift ``target``'s lockout and failure count; audited when anything changed. The caller commits.

    :param actor: who unlocks (default: the logged-in user of the request).
    :return: True when the account was locked or had failed logins.
    """
    before = snapshot(target)
    unlock(target)
    after = snapshot(target)
    if not has_changes(before, after):
        return False
    record(session, "update", "user", target.id, detail=change_detail("unlock", before, after), actor=actor)
    return True


def _require_manage(manager: Manager, target: User) -> None:
    if not may_manage(manager, target):
        raise NotPermitted(_("无权管理该用户"))


# --- forms ------------------------------------------------------------------------------


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _policy(form: Any, field: Any) -> None:
    problems = password_problems(field.data or "")
    if problems:
        raise ValidationError(_("；").join(problems))


class AccountForm(FlaskForm):
    """The editable fields of an account (nothing else is read from the POST)."""

    display_name = StringField(_l("姓名"), filters=[_strip], validators=[Length(max=120)])
    email = StringField(
        _l("电子邮箱"),
        filters=[_strip],
        validators=[Optional(), Length(max=255), Regexp(EMAIL_PATTERN, message=_l("电子邮箱格式不正确"))],
    )
    active = BooleanField(_l("启用"), default=True)
    expires_on = DateField(_l("账号有效期至（含当日，留空为长期）"), validators=[Optional()])
    submit = SubmitField(_l("保存"))

    def fields_value(self) -> AccountFields:
        """The submitted values."""
        return AccountFields(
            display_name=self.display_name.data or "",
            email=self.email.data or None,
            active=bool(self.active.data),
            expires_on=self.expires_on.data,
        )


class RoleFields:
    """A role and an org unit; choices are filled per request, the scope is checked by the view."""

    role = SelectField(_l("角色"), validate_choice=False, validators=[DataRequired(message=_l("请选择角色"))])
    org_unit = SelectField(
        _l("机构"), coerce=int, validate_choice=False, validators=[DataRequired(message=_l("请选择机构"))]
    )


class PasswordFields:
    password = PasswordField(_l("密码"), validators=[DataRequired(message=_l("请填写密码")), _policy])
    confirm = PasswordField(
        _l("再次输入密码"),
        validators=[
            DataRequired(message=_l("请再次输入密码")),
            EqualTo("password", message=_l("两次输入的密码不一致")),
        ],
    )


class CreateUserForm(RoleFields, PasswordFields, AccountForm):
    """A new account: username, initial password, first role and the account fields."""

    username = StringField(
        _l("用户名"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("请填写用户名")),
            Regexp(USERNAME_PATTERN, message=_l("用户名为3–80位字母、数字或 _.@-，以字母或数字开头")),
        ],
    )
    submit = SubmitField(_l("创建"))


class GrantForm(RoleFields, FlaskForm):
    submit = SubmitField(_l("添加角色"))


class PasswordForm(PasswordFields, FlaskForm):
    submit = SubmitField(_l("重置密码"))


class ConfirmForm(FlaskForm):
    """A button with the CSRF token (unlock, remove a role)."""

    submit = SubmitField(_l("确定"))


def _role_choices(manager: Manager) -> list[tuple[str, str]]:
    return [("", _("请选择")), *[(role, ROLE_LABELS.get(role, role)) for role in grantable_roles(manager)]]


def unit_labels(units: list[OrgUnit], session: Session) -> dict[int, str]:
    """Each unit's name with its ancestors', e.g. ``一区 / 一中 / 七年级 / 1班``."""
    ids = {int(part) for unit in units for part in unit.path.strip("/").split("/") if part.isdigit()}
    names = dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids))).all()) if ids else {}
    labels = {}
    for unit in units:
        chain = [names.get(int(part), "?") for part in unit.path.strip("/").split("/") if part.isdigit()]
        if not chain or chain[-1] != unit.name:
            chain.append(unit.name)
        labels[unit.id] = _(
            "%(path)s（%(kind)s）", path=" / ".join(chain), kind=ORG_KIND_LABELS.get(unit.kind, unit.kind)
        )
    return labels


def _fill_role_fields(form: Any, session: Session, manager: Manager) -> None:
    form.role.choices = _role_choices(manager)
    units = grantable_units(session, manager)
    labels = unit_labels(units, session)
    form.org_unit.choices = [(0, _("请选择")), *[(unit.id, labels[unit.id]) for unit in units]]


# --- 用户管理 --------------------------------------------------------------------------------


def role_text(assignment: RoleAssignment) -> str:
    """``心理教师 @ 一中``."""
    unit = assignment.org_unit.name if assignment.org_unit is not None else "?"
    return f"{ROLE_LABELS.get(assignment.role, assignment.role)} @ {unit}"


def account_status(user: User) -> list[str]:
    """Labels for a disabled, expired or locked account (empty: usable)."""
    labels = []
    if not user.active:
        labels.append(_("已停用"))
    if is_expired(user):
        labels.append(_("已过期"))
    if is_locked(user):
        labels.append(_("已锁定至 %(t)s", t=local_time(user.locked_until)))
    return labels


def _page_number() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


class UserAdminView(SecureView):
    """用户管理: accounts within the manager's scope (see the module docstring)."""

    required_roles = MANAGER_ROLES

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    def _session(self) -> Session:
        return self.db.session

    def _manager(self) -> Manager:
        manager = manager_of(logged_in_user())
        if manager is None:
            abort(403)
        return manager

    def _target(self, manager: Manager, user_id: int, op: str) -> User:
        target = self._session().get(User, user_id)
        if target is None:
            abort(404)
        if not may_manage(manager, target):
            self._deny(op, target.id)
        return target

    def _deny(self, op: str, user_id: Any, **detail: Any):
        """Audit the refusal in its own transaction, then answer 403."""
        actor = logged_in_user()
        actor_id = actor.id  # loaded before the request's transaction ends (SQLite: it holds the write lock)
        end_read_transaction(self._session())
        record_now(self.db, "update", "user", user_id, outcome="denied", detail={"op": op, **detail}, actor=actor)
        log.warning("account change refused: %s of user %s by user id %s", op, user_id, actor_id)
        abort(403)

    def _commit(self) -> None:
        try:
            self._session().commit()
        except Exception:
            self._session().rollback()
            raise

    # list

    @expose("/")
    def index(self):
        manager = self._manager()
        session = self._session()
        stmt = manageable_users(manager)
        query = (request.args.get("q") or "").strip()[:80]
        if query:
            stmt = stmt.where(
                or_(
                    User.username.contains(query, autoescape=True),
                    User.display_name.contains(query, autoescape=True),
                    User.email.contains(query, autoescape=True),
                )
            )
        role = request.args.get("role") or ""
        if role in ROLES:
            stmt = stmt.where(User.id.in_(select(RoleAssignment.user_id).where(RoleAssignment.role == role)))
        active = request.args.get("active") or ""
        if active in ("1", "0"):
            stmt = stmt.where(User.active == (active == "1"))
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(_page_number(), pages)
        users = session.scalars(stmt.order_by(User.username, User.id).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
        return self.render(
            "admin/xinshu_users.html",
            users=list(users),
            total=total,
            page=page,
            pages=pages,
            query=query,
            role=role if role in ROLES else "",
            active=active if active in ("1", "0") else "",
            role_labels=ROLE_LABELS,
            role_text=role_text,
            account_status=account_status,
            local_time=local_time,
        )

    # create

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self):
        manager = self._manager()
        session = self._session()
        form = CreateUserForm()
        _fill_role_fields(form, session, manager)
        if form.validate_on_submit():
            user = self._create(manager, form)
            if user is not None:
                flash(_("已创建用户 %(name)s", name=user.username), "success")
                return redirect(self.get_url(".edit_view", user_id=user.id))
        status = 400 if request.method == "POST" else 200
        return self.render("admin/xinshu_users_create.html", form=form), status

    def _create(self, manager: Manager, form: CreateUserForm) -> User | None:
        session = self._session()
        unit = self._unit(form)
        if unit is None:
            return None
        if not may_grant(manager, form.role.data, unit):
            self._deny("create", "", role=form.role.data, org_unit_id=unit.id)
        if not role_fits_unit(form.role.data, unit):
            form.org_unit.errors = [*form.org_unit.errors, _("该角色不能设在此类机构")]
            return None
        username = form.username.data
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            form.username.errors = [*form.username.errors, _("用户名已存在")]
            return None
        try:
            user = create_account(
                session, manager, username, form.password.data, form.role.data, unit, form.fields_value()
            )
            session.commit()
        except IntegrityError:
            session.rollback()
            form.username.errors = [*form.username.errors, _("用户名已存在")]
            return None
        except Exception:
            session.rollback()
            raise
        log.info("user id %s created by user id %s", user.id, manager.user.id)
        return user

    def _unit(self, form: Any) -> OrgUnit | None:
        """The chosen org unit when it exists and the role is a known one (else a form error)."""
        unit = self._session().get(OrgUnit, form.org_unit.data) if form.org_unit.data else None
        if unit is None:
            form.org_unit.errors = [*form.org_unit.errors, _("请选择机构")]
        if form.role.data not in ROLES:
            form.role.errors = [*form.role.errors, _("请选择角色")]
            return None
        return unit

    # one account

    @expose("/<int:user_id>/", methods=("GET", "POST"))
    def edit_view(self, user_id: int):
        manager = self._manager()
        target = self._target(manager, user_id, "edit" if request.method == "POST" else "open")
        form = AccountForm(formdata=None, obj=target) if request.method == "GET" else AccountForm()
        if form.validate_on_submit():
            changed = update_account(self._session(), manager, target, form.fields_value())
            self._commit()
            flash(_("已保存") if changed else _("未作修改"), "success")
            return redirect(safe_next(request.args.get("url"), self.get_url(".edit_view", user_id=target.id)))
        return self._page(manager, target, account_form=form)

    @expose("/<int:user_id>/roles/", methods=("POST",))
    def grant_view(self, user_id: int):
        manager = self._manager()
        target = self._target(manager, user_id, "grant")
        form = GrantForm(prefix="grant")
        _fill_role_fields(form, self._session(), manager)
        if form.validate_on_submit():
            unit = self._unit(form)
            if unit is not None and not may_grant(manager, form.role.data, unit):
                self._deny("grant", target.id, role=form.role.data, org_unit_id=unit.id)

            def change() -> None:
                grant_role(self._session(), manager, target, form.role.data, unit)

            if unit is not None and self._apply(form.org_unit, change, "grant", target.id):
                flash(_("已添加角色"), "success")
                return redirect(self.get_url(".edit_view", user_id=target.id))
        return self._page(manager, target, grant_form=form)

    @expose("/<int:user_id>/roles/<int:assignment_id>/delete/", methods=("POST",))
    def revoke_view(self, user_id: int, assignment_id: int):
        manager = self._manager()
        target = self._target(manager, user_id, "revoke")
        assignment = next((a for a in target.roles if a.id == assignment_id), None)
        if assignment is None:
            abort(404)
        if not may_grant(manager, assignment.role, assignment.org_unit):
            self._deny("revoke", target.id, role=assignment.role, org_unit_id=assignment.org_unit_id)
        form = ConfirmForm()

        def change() -> None:
            revoke_role(self._session(), manager, target, assignment)

        if form.validate_on_submit():
            if self._apply(form.submit, change, "revoke", target.id):
                flash(_("已撤销角色"), "success")
            else:
                flash(_("；").join(str(e) for e in form.submit.errors), "error")
            return redirect(self.get_url(".edit_view", user_id=target.id))
        abort(400)

    @expose("/<int:user_id>/password/", methods=("POST",))
    def password_view(self, user_id: int):
        manager = self._manager()
        target = self._target(manager, user_id, "reset_password")
        form = PasswordForm(prefix="pw")

        def change() -> None:
            reset_password(self._session(), manager, target, form.password.data)

        if form.validate_on_submit() and self._apply(form.password, change, "reset_password", target.id):
            flash(_("已重置密码"), "success")
            return redirect(self.get_url(".edit_view", user_id=target.id))
        return self._page(manager, target, password_form=form)

    @expose("/<int:user_id>/unlock/", methods=("POST",))
    def unlock_view(self, user_id: int):
        manager = self._manager()
        target = self._target(manager, user_id, "unlock")
        form = ConfirmForm()
        if not form.validate_on_submit():
            abort(400)
        changed = unlock_account(self._session(), target)
        self._commit()
        flash(_("已解除锁定") if changed else _("该账号未被锁定"), "success")
        return redirect(self.get_url(".edit_view", user_id=target.id))

    def _apply(self, field: Any, change: Callable[[], Any], op: str, user_id: int) -> bool:
        """Run ``change`` and commit; a ValueError becomes an error on ``field``, NotPermitted a 403."""
        try:
            change()
            self._session().commit()
        except ValueError as exc:
            self._session().rollback()
            field.errors = [*field.errors, str(exc)]
            return False
        except NotPermitted:
            self._session().rollback()
            self._deny(op, user_id)
        except Exception:
            self._session().rollback()
            raise
        return True

    def _page(self, manager: Manager, target: User, **forms: Any):
        """The account page; status 400 when it shows a rejected POST."""
        session = self._session()
        account_form = forms.get("account_form") or AccountForm(formdata=None, obj=target)
        grant_form = forms.get("grant_form") or GrantForm(formdata=None, prefix="grant")
        if grant_form.role.choices is None:
            _fill_role_fields(grant_form, session, manager)
        roles = sorted(target.roles, key=lambda a: (a.org_unit.path if a.org_unit else "", a.role))
        status = 400 if request.method == "POST" else 200
        return (
            self.render(
                "admin/xinshu_users_edit.html",
                target=target,
                account_form=account_form,
                grant_form=grant_form,
                password_form=forms.get("password_form") or PasswordForm(formdata=None, prefix="pw"),
                confirm_form=ConfirmForm(formdata=None),
                roles=[(a, role_text(a), may_grant(manager, a.role, a.org_unit)) for a in roles],
                status_labels=account_status(target),
                locked=is_locked(target) or bool(target.failed_logins),
                local_time=local_time,
            ),
            status,
        )


# --- 审计日志 ------------------------------------------------------------------------------


class AuditFilterForm(Form):
    """The audit-log filters (a GET form: no state changes, no CSRF token needed)."""

    action = StringField(_l("操作"), filters=[_strip], validators=[Optional(), Length(max=32)])
    actor = StringField(_l("操作人"), filters=[_strip], validators=[Optional(), Length(max=80)])
    object_type = StringField(_l("对象类型"), filters=[_strip], validators=[Optional(), Length(max=40)])
    object_id = StringField(_l("对象编号"), filters=[_strip], validators=[Optional(), Length(max=64)])
    since = DateField(_l("起始日期"), validators=[Optional()])
    until = DateField(_l("截止日期（含）"), validators=[Optional()])

    def applied(self) -> dict[str, str]:
        """The valid, non-empty filters as text (for the page links and the audit row)."""
        return {
            name: field.data.isoformat() if isinstance(field.data, dt.date) else str(field.data)
            for name, field in self._fields.items()
            if field.data and not field.errors
        }


def local_day_start(day: dt.date) -> dt.datetime:
    """Midnight of ``day`` in Asia/Shanghai as naive UTC."""
    return dt.datetime.combine(day, dt.time(), CHINA_TZ).astimezone(dt.UTC).replace(tzinfo=None)


def filter_events(stmt: Select, filters: dict[str, str], form: AuditFilterForm) -> Select:
    """Apply the audit-log filters to ``stmt`` (a ``select`` over :class:`AuditEvent`)."""
    if "action" in filters:
        stmt = stmt.where(AuditEvent.action == filters["action"])
    if "actor" in filters:
        stmt = stmt.where(AuditEvent.actor == filters["actor"])
    if "object_type" in filters:
        stmt = stmt.where(AuditEvent.object_type == filters["object_type"])
    if "object_id" in filters:
        stmt = stmt.where(AuditEvent.object_id == filters["object_id"])
    if "since" in filters:
        stmt = stmt.where(AuditEvent.at >= local_day_start(form.since.data))
    if "until" in filters:
        stmt = stmt.where(AuditEvent.at < local_day_start(form.until.data + dt.timedelta(days=1)))
    return stmt


def sort_order(sort: str | None, descending: bool) -> tuple[str, list[Any]]:
    """The ORDER BY for ``?sort=``: a key of :data:`AUDIT_SORTS`, anything else means ``at``."""
    key = sort if sort in AUDIT_SORTS else "at"
    column = AUDIT_SORTS[key]
    if descending:
        return key, [column.desc(), AuditEvent.id.desc()]
    return key, [column.asc(), AuditEvent.id.asc()]


def local_seconds(value: dt.datetime | None) -> str:
    """A naive-UTC timestamp as Asia/Shanghai ``YYYY-MM-DD HH:MM:SS``."""
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


def detail_text(detail: Any) -> str:
    """An audit row's detail as compact JSON (shortened), to be shown escaped."""
    text = json.dumps(detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= DETAIL_SHOWN_CHARS else text[: DETAIL_SHOWN_CHARS - 1] + "…"


class AuditLogView(SecureView):
    """审计日志: read-only, filtered, sorted by a whitelist, paginated; its own reads are audited."""

    required_roles = MANAGER_ROLES

    def __init__(self, db: Any, *args: Any, **kwargs: Any):
        self.db = db
        super().__init__(*args, **kwargs)

    def visible_events(self, manager: Manager) -> Select:
        """``select(AuditEvent)`` of the rows ``manager`` may read."""
        stmt = select(AuditEvent)
        if manager.bureau:
            return stmt
        return stmt.where(AuditEvent.actor_id.in_(users_within(manager.prefixes)))

    @expose("/")
    def index(self):
        manager = manager_of(logged_in_user())
        if manager is None:
            abort(403)
        form = AuditFilterForm(request.args)
        form.validate()
        filters = form.applied()
        descending = request.args.get("desc", "1") != "0"
        sort, order = sort_order(request.args.get("sort"), descending)
        page = _page_number()
        end_read_transaction(self.db.session)
        try:
            record_read(self.db, "read", "audit_log", "", detail={"filters": filters, "sort": sort, "page": page})
        except AuditUnavailable:
            abort(503)
        session = self.db.session
        stmt = filter_events(self.visible_events(manager), filters, form)
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        pages = max(1, math.ceil(total / PAGE_SIZE))
        page = min(page, pages)
        events = session.scalars(stmt.order_by(*order).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))
        return self.render(
            "admin/xinshu_audit.html",
            form=form,
            events=list(events),
            total=total,
            page=page,
            pages=pages,
            sort=sort,
            descending=descending,
            sorts=list(AUDIT_SORTS),
            filters=filters,
            actions=ACTIONS,
            local_seconds=local_seconds,
            detail_text=detail_text,
            bureau=manager.bureau,
        )


# --- command line ----------------------------------------------------------------------------


def _open_database(url: str | None) -> Any:
    from xinshu.db import Database
    from xinshu.services import config_from_env, database_url, default_database_url

    config = config_from_env({"DATABASE_URL": url} if url else {})
    db = Database(database_url(config.get("DATABASE_URL") or default_database_url()))
    db.upgrade()
    return db


@click.group("users")
def users_cli() -> None:
    """Staff accounts."""


@users_cli.command("unlock")
@click.argument("username")
@click.option("--database", help="Database URL.")
def users_unlock(username: str, database: str | None) -> None:
    """Lift USERNAME's lockout after too many failed logins (audited)."""
    db = _open_database(database)
    try:
        with db.transaction() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            changed = unlock_account(session, user, actor=CLI_ACTOR)
    finally:
        db.dispose()
    click.echo(f"unlocked {username}" if changed else f"{username} was not locked")


@click.group("audit")
def audit_cli() -> None:
    """The audit log."""


@audit_cli.command("purge")
@click.option("--keep-days", type=int, required=True, help=f"Keep rows of the last N days (N ≥ {AUDIT_MIN_DAYS}).")
@click.option("--database", help="Database URL.")
def audit_purge(keep_days: int, database: str | None) -> None:
    """Delete audit rows older than --keep-days days (never fewer than 183; audited)."""
    if keep_days < AUDIT_MIN_DAYS:
        raise click.BadParameter(
            f"audit rows are kept at least {AUDIT_MIN_DAYS} days (CSL Art. 21), not {keep_days}",
            param_hint="--keep-days",
        )
    db = _open_database(database)
    try:
        with db.transaction() as session:
            deleted = purge_audit(session, keep_days, now=utcnow())
            record(
                session,
                "retention",
                "audit_log",
                "",
                detail={"keep_days": keep_days, "deleted": deleted},
                actor=CLI_ACTOR,
            )
    finally:
        db.dispose()
    click.echo(f"deleted {deleted} audit rows older than {keep_days} days")


# --- hooks -------------------------------------------------------------------------------------


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    category = _l("系统管理")
    admin.add_view(UserAdminView(db, name=_l("用户管理"), endpoint="user", category=category))
    admin.add_view(AuditLogView(db, name=_l("审计日志"), endpoint="audit", category=category))


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(users_cli)
    cli.add_command(audit_cli)
