"""用户管理 (endpoint ``user``, ``/admin/user/``): staff accounts within one's own scope, for
bureau and district administrators.

* a bureau administrator manages every account; a district administrator
  manages the accounts whose every role assignment lies inside a district they
  administer (an account without any role is the bureau's), and grants only
  roles at or below that district: never ``bureau_admin``, never an org unit
  outside it (anything else is answered 403 and audited, security.md A13;
  :mod:`xinshu.account_scope`);
* nobody manages their own account here (no self-granted roles or unlocks);
* create an account (initial password under the password policy), edit its
  display name, email, active flag and expiry date, add and remove role
  assignments (a role is held at the kind of unit
  :data:`~xinshu.account_scope.ROLE_UNIT_KINDS` names), reset its password,
  lift a lockout;
* every page is a plain form (Flask-WTF, CSRF token; :mod:`xinshu.admin.account_forms`);
  only the fields of the form are read, so extra POST fields (``password_hash``,
  ``is_superuser``, ``failed_logins``...) change nothing (A8); the password hash
  is never shown, searched or filtered (A10);
* every change writes one audit row (action ``create`` or ``update``,
  object ``user``/id) whose detail holds ``op``, ``before`` and ``after`` with
  the role assignments as ``[role, org_unit_id]`` pairs and the changed
  non-identifying fields with their values (``active``, ``expires_on``,
  ``failed_logins``, ``locked_until``); changes to the display name or email
  are recorded by field name only (``changed``), as staff names and
  addresses are personal data (A12; :mod:`xinshu.account_changes`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from xinshu.account_changes import (
    create_account,
    grant_role,
    reset_password,
    revoke_role,
    unlock_account,
    update_account,
)
from xinshu.account_scope import (
    MANAGER_ROLES,
    Manager,
    NotPermitted,
    manageable_users,
    manager_of,
    may_grant,
    may_manage,
    role_fits_unit,
)
from xinshu.admin.access import logged_in_user
from xinshu.admin.account_forms import (
    AccountForm,
    ConfirmForm,
    CreateUserForm,
    GrantForm,
    PasswordForm,
    fill_role_fields,
)
from xinshu.admin.base import SecureDbView
from xinshu.admin.formatting import ROLE_LABELS, local_time
from xinshu.admin.paging import PAGE_SIZE, page_number
from xinshu.audit import end_read_transaction, record_now
from xinshu.auth import is_expired, is_locked, safe_next
from xinshu.models import ROLES, OrgUnit, RoleAssignment, User

log = logging.getLogger(__name__)


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


class UserAdminView(SecureDbView):
    """用户管理: accounts within the manager's scope (see the module docstring)."""

    required_roles = MANAGER_ROLES

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
        page = min(page_number(), pages)
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
        fill_role_fields(form, session, manager)
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
        fill_role_fields(form, self._session(), manager)
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
            fill_role_fields(grant_form, session, manager)
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
