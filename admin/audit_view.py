"""审计日志 (endpoint ``audit``, ``/admin/audit/``): read-only (one GET route, nothing else),
filters by action, actor, object type and id and a date range (Asia/Shanghai dates), sorting
only by :data:`AUDIT_SORTS` (anything else is ignored, security.md F1), 50 rows a page, times
in Asia/Shanghai. A bureau administrator sees every row; a district administrator the rows
whose actor is an account of their district (every role inside it;
:func:`xinshu.account_scope.users_within`). Each view of the page is itself audited
(``read`` of ``audit_log``), before anything is shown.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from flask import abort, request
from flask_admin import expose
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, select
from wtforms import DateField, Form, StringField
from wtforms.validators import Length, Optional

from xinshu.account_scope import MANAGER_ROLES, Manager, manager_of, users_within
from xinshu.admin.access import logged_in_user
from xinshu.admin.base import SecureDbView
from xinshu.admin.formatting import CHINA_TZ
from xinshu.admin.paging import PAGE_SIZE, page_number
from xinshu.audit import ACTIONS, AuditUnavailable, end_read_transaction, record_read
from xinshu.models import AuditEvent

#: Audit-log columns the list may be sorted by (``?sort=``); anything else is ignored.
AUDIT_SORTS = {
    "at": AuditEvent.at,
    "action": AuditEvent.action,
    "actor": AuditEvent.actor,
    "object_type": AuditEvent.object_type,
    "outcome": AuditEvent.outcome,
}
DETAIL_SHOWN_CHARS = 600


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


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


class AuditLogView(SecureDbView):
    """审计日志: read-only, filtered, sorted by a whitelist, paginated; its own reads are audited."""

    required_roles = MANAGER_ROLES

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
        page = page_number()
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
