"""The org tree: city → district → school → grade → class.

Each unit stores a materialised ``path`` of ancestor ids (``/1/3/7/``) so that
"everything under this unit" is a prefix test (:mod:`xinshu.scoping`).
Grades and classes are created by roster imports; cities, districts and
schools by :func:`create_org_unit` (``xinshu add-org-unit``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.errors import XinshuError
from xinshu.models import ORG_KINDS, OrgUnit

#: The kind each kind's parent must have (a city has no parent).
PARENT_KIND = {"city": None, "district": "city", "school": "district", "grade": "school", "class": "grade"}


def add_org_unit(session: Session, code: str, name: str, kind: str, parent: OrgUnit | None) -> OrgUnit:
    """Create an org unit with its materialised path (flushes to get the id)."""
    unit = OrgUnit(code=code, name=name, kind=kind, parent=parent)
    session.add(unit)
    session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    return unit


def create_org_unit(session: Session, code: str, name: str, kind: str, parent_code: str | None) -> OrgUnit:
    """Add a unit under the unit ``parent_code``, checking the tree's shape.

    :raises XinshuError: unknown kind, code already used, missing parent or a
        parent of the wrong kind (e.g. a school directly under the city).
    """
    if kind not in ORG_KINDS:
        raise XinshuError(f"unknown kind {kind!r} (one of {', '.join(ORG_KINDS)})")
    if session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is not None:
        raise XinshuError(f"org unit code {code!r} is already used")
    parent = None
    if parent_code:
        parent = session.scalar(select(OrgUnit).where(OrgUnit.code == parent_code))
        if parent is None:
            raise XinshuError(f"no org unit with code {parent_code!r}")
    wanted = PARENT_KIND[kind]
    if (parent.kind if parent else None) != wanted:
        where = f"under a {wanted}" if wanted else "at the top (no --parent)"
        raise XinshuError(f"a {kind} must be created {where}")
    return add_org_unit(session, code, name, kind, parent)
