"""Who manages which staff accounts (security.md A13), for the back office's 用户管理 page
(:mod:`xinshu.admin.users_view`) and its audit log (:mod:`xinshu.admin.audit_view`).

* a bureau administrator manages every account; a district administrator
  manages the accounts whose every role assignment lies inside a district they
  administer (an account without any role is the bureau's), and grants only
  roles at or below that district: never ``bureau_admin``, never an org unit
  outside it;
* nobody manages their own account here (no self-granted roles or unlocks);
* a role is held at the kind of unit :data:`ROLE_UNIT_KINDS` names.

A manager is a :class:`Manager` (:func:`manager_of`); what they may do is
:func:`may_manage` and :func:`may_grant`; the accounts and org units within
their reach are :func:`manageable_users`, :func:`users_within` and
:func:`grantable_units`. A change beyond them raises :class:`NotPermitted`
(answered 403 and audited as denied).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Select, not_, or_, select
from sqlalchemy.orm import Session

from xinshu.errors import XinshuError
from xinshu.models import ROLES, OrgUnit, RoleAssignment, User

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


class NotPermitted(XinshuError):
    """The manager may not do this (answered 403 and audited as denied)."""


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
