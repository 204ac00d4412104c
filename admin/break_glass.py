"""Break-glass (查看理由登记): a reason recorded before reading protected information of one student.

Roles that do not see item answers, interview and case notes (or, for class
teachers, results) by default may see them for one student after recording a
reason of at least five characters (roles.md; security.md A6). The POST
(``/admin/breakglass/<student id>/``, CSRF-checked) writes the audit row
``break_glass/student/<id>`` with the reason through
:func:`xinshu.permissions.record_break_glass` and sends the user back to the
page they came from; the access lasts 60 minutes. The form is drawn by the
macro in ``admin/xinshu_break_glass.html`` on the student, response, warning
and case pages. The view has no menu entry; its index lists the user's own
reasons still in force.
"""

from __future__ import annotations

import logging

from flask import abort, current_app, flash, redirect, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, TextAreaField
from wtforms.validators import DataRequired, Length

from xinshu.admin.access import AUDIT_DOWN_MESSAGE, forget_access, logged_in_user
from xinshu.admin.base import SecureView
from xinshu.admin.formatting import local_time
from xinshu.audit import AuditUnavailable, end_read_transaction
from xinshu.auth import safe_next
from xinshu.models import AuditEvent, Student, utcnow
from xinshu.permissions import (
    BREAK_GLASS_WINDOW,
    MAX_REASON_CHARS,
    MIN_REASON_CHARS,
    break_glass_grants,
    record_break_glass,
)
from xinshu.scoping import scope_query

log = logging.getLogger(__name__)


class BreakGlassForm(FlaskForm):
    """The reason (required, at least five characters) and the page to return to."""

    reason = TextAreaField(
        _l("查看理由"),
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[
            DataRequired(message=_l("请填写查看理由")),
            Length(min=MIN_REASON_CHARS, max=MAX_REASON_CHARS, message=_l("查看理由须为5至1000字")),
        ],
    )
    next = HiddenField()


class BreakGlassView(SecureView):
    """Records break-glass reasons; no page of its own."""

    def is_visible(self) -> bool:
        return False

    @expose("/")
    def index(self):
        """The current user's break-glass reasons still in force (student id, time, reason)."""
        user = logged_in_user()
        session = current_app.extensions["xinshu"].db.session
        since = utcnow() - BREAK_GLASS_WINDOW
        stmt = (
            select(AuditEvent)
            .where(AuditEvent.action == "break_glass", AuditEvent.actor_id == user.id, AuditEvent.at >= since)
            .order_by(AuditEvent.at.desc())
        )
        events = list(session.scalars(stmt))
        return self.render("admin/xinshu_break_glass_list.html", events=events, local_time=local_time)

    @expose("/<int:student_id>/", methods=("POST",))
    def grant(self, student_id: int):
        """Record the reason for ``student_id`` and return to the page (``next``)."""
        user = logged_in_user()
        session = current_app.extensions["xinshu"].db.session
        student = session.scalar(scope_query(select(Student).where(Student.id == student_id), Student, user))
        if student is None:
            abort(404)  # missing or out of scope: the same answer
        form = BreakGlassForm()
        back = safe_next(form.next.data, default=url_for("student.details_view", id=student.id))
        if not form.validate_on_submit():
            for message in form.reason.errors:
                flash(str(message), "error")
            return redirect(back)
        grants = break_glass_grants(user, student, session)
        if not grants:
            abort(403)
        end_read_transaction(session)  # before the audit transaction (SQLite write lock)
        try:
            record_break_glass(current_app.extensions["xinshu"].db, user, student, form.reason.data, grants=grants)
        except AuditUnavailable:
            abort(503, description=str(AUDIT_DOWN_MESSAGE))
        forget_access()
        log.info("break-glass recorded by user id %s for student id %s", user.id, student.id)
        flash(_("已登记查看理由，60分钟内可查看该学生的受保护信息。本次查看已记入审计日志。"), "success")
        return redirect(back)
