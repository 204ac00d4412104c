"""The case timeline is append-only.

A :class:`~xinshu.models.CaseEvent` is written once and never changed or
removed, whoever tries:

* the ORM unit of work: ``before_update`` / ``before_delete`` mapper events
  raise, so changing an event's attribute and flushing, ``session.delete(event)``
  or deleting a case that has a timeline (SQLAlchemy would null the events'
  ``case_id``) fail and the transaction rolls back;
* ORM bulk statements: ``session.execute(update(CaseEvent))`` or
  ``delete(CaseEvent)`` are refused before they run (``do_orm_execute``).

What this cannot stop is SQL sent around the ORM (a raw ``UPDATE`` on the
connection, or a database console). On PostgreSQL a trigger would close that
gap; it is not installed yet (it needs a migration).

Imported by :mod:`xinshu.services` and :mod:`xinshu.workflow`, so the listeners
are in place wherever the application, the CLI or the tests open a database.
"""

from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from xinshu.errors import XinshuError
from xinshu.models import CaseEvent


class TimelineImmutable(XinshuError):
    """Raised on any attempt to change or delete a case timeline entry."""


def _refuse_update(_mapper, _connection, target: CaseEvent) -> None:
    state = inspect(target)
    changed = [attr.key for attr in state.attrs if attr.history.has_changes()]
    if changed:
        raise TimelineImmutable(f"case timeline entry #{target.id} cannot be changed ({', '.join(sorted(changed))})")


def _refuse_delete(_mapper, _connection, target: CaseEvent) -> None:
    raise TimelineImmutable(f"case timeline entry #{target.id} cannot be deleted")


def _refuse_bulk(orm_execute_state) -> None:
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    mapper = orm_execute_state.bind_mapper
    if mapper is not None and mapper.class_ is CaseEvent:
        raise TimelineImmutable("the case timeline cannot be updated or deleted")


if not event.contains(CaseEvent, "before_update", _refuse_update):
    event.listen(CaseEvent, "before_update", _refuse_update)
    event.listen(CaseEvent, "before_delete", _refuse_delete)
    event.listen(Session, "do_orm_execute", _refuse_bulk)
