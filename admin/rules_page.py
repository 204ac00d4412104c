"""规则回测: back-test a pasted candidate alert-rule file on the stored data, then
activate it with a reason (bureau administrator only).

The candidate is validated like any declaration (``safe_load``, schema,
semantics) in a temporary directory; the back-test replays the stored answers
and lists who would change level (only students the user may see individually,
:func:`xinshu.scoping.scope_query`). Activation needs the exact back-tested
text, an unchanged active ruleset and a reason; it is recorded with who, when
and why (:mod:`xinshu.backtest`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import HiddenField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

from xinshu.admin.access import logged_in_user
from xinshu.admin.base import SecureView
from xinshu.admin.formatting import current_services, level_text, local_time
from xinshu.backtest import activate, backtest, candidate_declarations
from xinshu.errors import DeclarationsInvalid, XinshuError
from xinshu.models import RulesetActivation, Student
from xinshu.scoping import scope_query

log = logging.getLogger(__name__)


#: A candidate alert-rule file name: no directories, no leading dot.
RULE_FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.yaml$"
MAX_CANDIDATE_CHARS = 200_000
SHOWN_CHANGES = 200


class CandidateRulesForm(FlaskForm):
    """A pasted candidate alert-rule file; the back-test, then activation with a reason."""

    filename = StringField(
        _l("文件名"),
        default="phq9.yaml",
        validators=[
            DataRequired(message=_l("请填写文件名")),
            Regexp(RULE_FILE_NAME, message=_l("文件名只能含字母、数字、._-，以 .yaml 结尾，例如 phq9.yaml")),
        ],
    )
    text = TextAreaField(
        _l("候选规则（YAML）"),
        validators=[
            DataRequired(message=_l("请粘贴候选规则文件内容")),
            Length(max=MAX_CANDIDATE_CHARS, message=_l("内容过长（最多%(max)d字符）")),
        ],
    )
    reason = TextAreaField(_l("激活理由"), validators=[Length(max=4000, message=_l("理由最多4000字"))])
    reviewed = HiddenField()
    active_digest = HiddenField()
    run = SubmitField(_l("回测"))
    activate = SubmitField(_l("激活"))


def _candidate_digest(filename: str, text: str) -> str:
    return hashlib.sha256(f"{filename}\0{text}".encode()).hexdigest()


class RulesBacktestView(SecureView):
    """规则回测: back-test a pasted candidate alert-rule file on the stored data,
    then activate it with a reason (bureau administrator only)."""

    required_roles = ("bureau_admin",)

    @expose("/", methods=("GET", "POST"))
    def index(self):
        services = current_services()
        session = services.db.session
        form = CandidateRulesForm()
        context: dict[str, Any] = {"decl_errors": None, "result": None, "record": None}
        if form.validate_on_submit():
            filename = form.filename.data.strip()
            text = form.text.data.replace("\r\n", "\n")
            digest = _candidate_digest(filename, text)
            context["replaces"] = (services.store.roots[0] / "rules" / "alerts" / filename).is_file()
            if form.activate.data:
                context.update(self._activate(form, filename, text, digest))
            else:
                context.update(self._backtest(filename, text))
                reviewed = context["result"] is not None
                form.reviewed.data = digest if reviewed else ""
                form.active_digest.data = services.declarations.digest if reviewed else ""
        elif request.method == "POST":
            context["status"] = 400
        status = context.pop("status", 200)
        activations = session.scalars(
            select(RulesetActivation).order_by(RulesetActivation.activated_at.desc(), RulesetActivation.id.desc())
        ).all()
        return (
            self.render(
                "admin/xinshu_rules_backtest.html",
                form=form,
                activations=activations,
                level_text=level_text,
                local_time=local_time,
                **context,
            ),
            status,
        )

    def _backtest(self, filename: str, text: str) -> dict[str, Any]:
        """Validate and back-test the candidate: ``decl_errors``, or ``result`` and ``changed``."""
        services = current_services()
        with tempfile.TemporaryDirectory(prefix="xinshu-upload-") as tmp:
            path = Path(tmp) / filename
            path.write_text(text, encoding="utf-8")
            try:
                candidate, root = candidate_declarations(services, path)
            except DeclarationsInvalid as exc:
                return {"decl_errors": [str(error) for error in exc.errors], "status": 400}
            except XinshuError as exc:
                return {"decl_errors": [str(exc)], "status": 400}
            try:
                result = backtest(services.db.session, services.declarations, candidate)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        summary = result.as_dict()
        return {"result": summary, "changed": self._visible_changes(summary["students_changed"])}

    def _activate(self, form: CandidateRulesForm, filename: str, text: str, digest: str) -> dict[str, Any]:
        """Activate the back-tested candidate, if it is unchanged and a reason is given."""
        services = current_services()
        session = services.db.session
        reason = (form.reason.data or "").strip()
        if form.reviewed.data != digest:
            form.text.errors = [*form.text.errors, _("内容与回测时不同，请先重新回测")]
        elif form.active_digest.data != services.declarations.digest:
            form.text.errors = [*form.text.errors, _("回测后现行规则已变更，请重新回测")]
        if not reason:
            form.reason.errors = [*form.reason.errors, _("激活须填写理由")]
        if form.text.errors or form.reason.errors:
            context = self._backtest(filename, text) if not form.text.errors else {}
            return {**context, "status": 400}
        user = logged_in_user()
        with tempfile.TemporaryDirectory(prefix="xinshu-upload-") as tmp:
            path = Path(tmp) / filename
            path.write_text(text, encoding="utf-8")
            try:
                record, result = activate(session, services, path, user.username, reason)
                session.commit()
            except DeclarationsInvalid as exc:
                session.rollback()
                return {"decl_errors": [str(error) for error in exc.errors], "status": 400}
            except Exception:
                session.rollback()
                raise
        log.info(
            "alert rules activated by user id %s: activation %s, digest %s, %s students change level",
            user.id,
            record.id,
            record.digest[:12],
            len(result.changed),
        )
        form.reviewed.data = ""
        summary = result.as_dict()
        return {"record": record, "result": summary, "changed": self._visible_changes(summary["students_changed"])}

    def _visible_changes(self, changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The first :data:`SHOWN_CHANGES` changed students the user may see (scoped)."""
        session = current_services().db.session
        user = logged_in_user()
        shown: list[dict[str, Any]] = []
        for start in range(0, len(changed), 900):
            chunk = changed[start : start + 900]
            ids = [row["student_id"] for row in chunk]
            visible = set(session.scalars(scope_query(select(Student.id).where(Student.id.in_(ids)), Student, user)))
            shown += [row for row in chunk if row["student_id"] in visible]
            if len(shown) >= SHOWN_CHANGES:
                break
        return shown[:SHOWN_CHANGES]
