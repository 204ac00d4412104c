"""更正与删除请求 (endpoint ``datarequests``, ``/admin/datarequests/``): the correction and
deletion requests of the students under the user's org units; school staff receive and
complete, the principal (or a district or bureau administrator above the school) approves or
rejects. Only school staff see the student's name.

Every POST carries the CSRF token; changes go through :mod:`xinshu.data_requests`, which
writes the audit rows.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_babel import gettext as _
from sqlalchemy import false, or_, select
from sqlalchemy.orm import aliased

from xinshu.admin.access import MAX_ID, logged_in_user
from xinshu.admin.base import SecureDbView
from xinshu.admin.formatting import current_services, local_time
from xinshu.admin.privacy_forms import RequestForm, options
from xinshu.admin.privacy_scope import LIST_LIMIT, find_student, role_prefixes
from xinshu.data_requests import (
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
from xinshu.models import DataRequest, OrgUnit

log = logging.getLogger(__name__)


class DataRequestAdminView(SecureDbView):
    """更正与删除请求: receive, approve or reject, complete."""

    required_roles = REQUEST_ROLES

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
