"""Audited changes to staff accounts (security.md A12): create an account, edit its fields,
grant and revoke roles, reset its password, lift a lockout. The caller commits.

Every change writes one audit row (action ``create`` or ``update``, object
``user``/id) whose detail holds ``op``, ``before`` and ``after`` with the role
assignments as ``[role, org_unit_id]`` pairs and the changed non-identifying
fields with their values (:data:`AUDITED_FIELDS`: ``active``, ``expires_on``,
``failed_logins``, ``locked_until``); changes to the display name or email are
recorded by field name only (``changed``, :data:`NAMED_FIELDS`), as staff names
and addresses are personal data. The password and its hash are never audited.

Who may change what is :mod:`xinshu.account_scope`; a change beyond the manager
raises :class:`~xinshu.account_scope.NotPermitted`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from sqlalchemy.orm import Session

from xinshu.account_scope import Manager, NotPermitted, may_grant, may_manage, role_fits_unit
from xinshu.audit import record
from xinshu.auth import create_user, set_password, unlock
from xinshu.models import OrgUnit, RoleAssignment, User

#: Account fields audited with their values when they change (neither secret nor identifying).
AUDITED_FIELDS = ("active", "expires_on", "failed_logins", "locked_until")
#: Account fields audited by name only when they change (staff names and addresses are personal data).
NAMED_FIELDS = ("display_name", "email")


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
