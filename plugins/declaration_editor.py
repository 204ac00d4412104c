"""The YAML editor (声明编辑): instruments, rules, intervention templates and import profiles,
validated with line numbers, diffed against the active version, every version kept.

Pages (endpoint ``yaml``, bureau administrators only; anyone else logged in
gets 403, an anonymous visitor the login page):

* ``/admin/yaml/`` lists the editable files of the active declaration root by
  folder, each with its active version number and the date of its last change;
* ``/admin/yaml/new?folder=rules/alerts&filename=x.yaml`` starts a new file;
* ``/admin/yaml/edit?path=<relpath>[&version=<id>]`` edits one file:
  ``textarea#yaml-content[name=content]``, ``textarea#yaml-reason[name=reason]``
  and the buttons ``button[name=validate]`` (validate with the whole set, diff,
  and for alert rules and levels the warning back-test), ``button[name=save]``
  (store a draft version) and ``button[name=activate]``. Errors are listed in
  ``ul#yaml-errors`` (one ``li`` per error, ``file:line: path: message``), the
  diff against the active version in ``pre#yaml-diff``, the history in
  ``table#yaml-versions``;
* ``/admin/yaml/version/<id>`` shows a version, ``.../diff`` its diff against
  the active file, ``.../restore`` (POST) copies it into a new draft.

Activating alert rules or levels needs the back-test of exactly that content
against exactly the active set: the validate step hands out a signed token
(user, path, content digest, active declarations digest, one hour) and
activation refuses content without a matching token, then runs the back-test
again and stores its summary with the version. A reason is always required.
Re-activating an old version goes the same way (restore as draft, validate,
activate). See :mod:`xinshu.declaration_versions` for storage and installing.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, current_app, flash, redirect, request, url_for
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from wtforms import HiddenField, TextAreaField
from wtforms.validators import Length

from xinshu import hookimpl
from xinshu.admin.formatting import current_services, level_text, local_time
from xinshu.admin.views import MAX_ID, SecureView, logged_in_user
from xinshu.backtest import backtest, rules_digest
from xinshu.declaration_versions import (
    EDITABLE_FOLDERS,
    LEVELS_PATH,
    SYSTEM_AUTHOR,
    EditableFile,
    InvalidPath,
    activate_version,
    active_text,
    candidate_set,
    diff_texts,
    editable_file,
    files_on_disk,
    modified_at,
    new_file,
    normalize,
    numbered,
    reject,
    save_draft,
    sha256_text,
    versions,
)
from xinshu.declarations.registry import Declarations
from xinshu.errors import DeclarationsInvalid, XinshuError
from xinshu.models import DeclarationVersion, RulesetActivation, Student
from xinshu.scoping import scope_query

log = logging.getLogger(__name__)

#: Section titles of the list page, by folder (``rules/levels.yaml`` is its own section).
GROUP_LABELS = {
    "instruments": _l("量表 instruments/"),
    "rules/alerts": _l("预警规则 rules/alerts/"),
    "rules/interventions": _l("干预方案 rules/interventions/"),
    "rules/imports": _l("导入配置 rules/imports/"),
    "rules/interviews": _l("访谈表单 rules/interviews/"),
    LEVELS_PATH: _l("预警等级 rules/levels.yaml"),
}
STATUS_LABELS = {
    "draft": _l("草稿"),
    "active": _l("现行"),
    "superseded": _l("已替换"),
    "rejected": _l("已拒绝"),
}
#: Longest reason or note accepted (characters).
MAX_REASON = 4000
#: How long a back-test stays good for activation (seconds).
BACKTEST_MAX_AGE = 3600
#: Changed students listed under a back-test (the counts cover everyone).
SHOWN_CHANGES = 200
#: Namespace of the signed back-test tokens.
SIGNING_NAMESPACE = "xinshu.declaration_editor.backtest"


class YamlEditForm(FlaskForm):
    """The editor's fields; the buttons (``validate``, ``save``, ``activate``) are read from the form data."""

    content = TextAreaField(_l("内容（YAML）"))
    reason = TextAreaField(_l("理由"), validators=[Length(max=MAX_REASON, message=_l("理由最多4000字"))])
    base_sha = HiddenField()
    reviewed = HiddenField()


# --- helpers ------------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=SIGNING_NAMESPACE)


def backtest_token(user_id: int, relpath: str, sha: str, active_digest: str) -> str:
    """A signed token: this user back-tested content ``sha`` at ``relpath`` against ``active_digest``."""
    return _serializer().dumps([user_id, relpath, sha, active_digest])


def backtest_token_ok(token: str, user_id: int, relpath: str, sha: str, active_digest: str) -> bool:
    """True when ``token`` is :func:`backtest_token` of exactly these values, under an hour old."""
    if not token:
        return False
    try:
        payload = _serializer().loads(token, max_age=BACKTEST_MAX_AGE)
    except BadSignature:
        return False
    return payload == [user_id, relpath, sha, active_digest]


def _version_or_404(session, version_id: int) -> DeclarationVersion:
    if not 0 < version_id <= MAX_ID:
        abort(404)
    row = session.get(DeclarationVersion, version_id)
    if row is None:
        abort(404)
    try:
        editable_file(row.relpath)
    except InvalidPath:
        abort(404)
    return row


def _skeleton(file: EditableFile) -> str:
    """A starting text for a new file: its ``kind`` and ``id`` (the file name's stem)."""
    stem = file.name.removesuffix(".yaml").lower()
    return f"kind: {file.kind}\nid: {stem}\n"


def _visible_changes(changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first :data:`SHOWN_CHANGES` changed students the current user may see (scoped)."""
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


def _listing(session, root) -> list[dict[str, Any]]:
    """The list page's sections: each folder's files with active version and last change."""
    rows = versions(session)
    numbers = numbered(rows)
    by_path: dict[str, list[DeclarationVersion]] = {}
    for row in rows:
        by_path.setdefault(row.relpath, []).append(row)
    files = {f.relpath: f for f in files_on_disk(root)}
    for relpath in by_path:
        try:
            files.setdefault(relpath, editable_file(relpath))
        except InvalidPath:
            continue
    sections = []
    for group in (*EDITABLE_FOLDERS, LEVELS_PATH):
        entries = []
        for relpath in sorted(p for p, f in files.items() if f.folder == group or p == group):
            entries.append(_entry(root, files[relpath], by_path.get(relpath, []), numbers))
        sections.append({"folder": group, "label": GROUP_LABELS[group], "files": entries, "new": group != LEVELS_PATH})
    return sections


def _entry(root, file: EditableFile, rows: list[DeclarationVersion], numbers: dict[int, int]) -> dict[str, Any]:
    text = active_text(root, file)
    sha = sha256_text(text) if text is not None else None
    active = next((r for r in reversed(rows) if r.status == "active" and r.sha256 == sha), None)
    entry: dict[str, Any] = {"file": file, "drafts": sum(1 for r in rows if r.status == "draft")}
    if active is not None:
        entry.update(number=numbers[active.id], changed=active.activated_at or active.created_at, note="")
    elif text is not None:
        entry.update(number=len(rows) + 1, changed=modified_at(root, file))
        entry["note"] = _("上线版本") if not rows else _("编辑器外更改")
    else:
        entry.update(number=None, changed=rows[-1].created_at if rows else None, note=_("未激活"))
    return entry


# --- the view -----------------------------------------------------------------------


class YamlEditorView(SecureView):
    """声明编辑: edit, validate, diff, version and activate declaration files (bureau administrator only)."""

    required_roles = ("bureau_admin",)

    @expose("/")
    def index(self):
        services = current_services()
        sections = _listing(services.db.session, services.store.roots[0])
        return self.render("admin/xinshu_yaml_index.html", sections=sections, local_time=local_time)

    @expose("/new")
    def new(self):
        folder = request.args.get("folder", "")
        filename = request.args.get("filename", "").strip()
        error = ""
        if folder not in EDITABLE_FOLDERS:
            folder = "rules/alerts"
        if filename:
            try:
                file = new_file(folder, filename)
            except InvalidPath:
                error = _("文件名只能含字母、数字、._-，以字母或数字开头、以 .yaml 结尾，例如 phq9.yaml")
            else:
                return redirect(url_for(".edit", path=file.relpath))
        return (
            self.render(
                "admin/xinshu_yaml_new.html",
                folders=EDITABLE_FOLDERS,
                labels=GROUP_LABELS,
                folder=folder,
                filename=filename,
                error=error,
            ),
            400 if error else 200,
        )

    @expose("/edit", methods=("GET", "POST"))
    def edit(self):
        services = current_services()
        session = services.db.session
        try:
            file = editable_file(request.args.get("path", ""))
        except InvalidPath:
            abort(400)
        active = active_text(services.store.roots[0], file)
        form = YamlEditForm()
        if request.method == "GET":
            text, loaded = self._initial(session, file, active)
            return self._page(file, form, text, active, loaded=loaded)
        if not form.validate_on_submit():
            return self._page(file, form, normalize(form.content.data or ""), active, status=400)
        text = normalize(form.content.data or "")
        if "activate" in request.form:
            return self._activate(file, form, text, active)
        if "save" in request.form:
            return self._save(file, form, text, active)
        return self._validate(file, form, text, active)

    @expose("/version/<int:version_id>")
    def version(self, version_id: int):
        return self._version_page(version_id, with_diff=False)

    @expose("/version/<int:version_id>/diff")
    def version_diff(self, version_id: int):
        return self._version_page(version_id, with_diff=True)

    @expose("/version/<int:version_id>/restore", methods=("POST",))
    def restore(self, version_id: int):
        services = current_services()
        session = services.db.session
        row = _version_or_404(session, version_id)
        file = editable_file(row.relpath)
        number = numbered(versions(session, row.relpath))[row.id]
        _candidate, errors = self._check(file, row.content)
        if errors:  # e.g. a rejected version, or one another file no longer fits: fix it in the editor first
            flash(_("第%(number)s版现在无法通过校验，已载入编辑器，请修改后再保存。", number=number), "error")
            return redirect(url_for(".edit", path=file.relpath, version=row.id))
        user = logged_in_user()
        note = f"恢复自第{number}版"  # stored text, not translated
        draft = save_draft(session, services.store.roots[0], file, row.content, user, note, restored_from=row.id)
        session.commit()
        log.info("declaration %s: version %s restored as draft %s", file.relpath, row.id, draft.id)
        flash(_("已将第%(number)s版恢复为草稿；激活前须重新校验。", number=number), "success")
        return redirect(url_for(".edit", path=file.relpath, version=draft.id))

    # --- steps ---

    def _initial(self, session, file: EditableFile, active: str | None) -> tuple[str, DeclarationVersion | None]:
        """The text to edit: the version asked for (``?version=``), else the active file, else a skeleton."""
        version_id = request.args.get("version", type=int)
        if version_id is not None:
            row = _version_or_404(session, version_id)
            if row.relpath != file.relpath:
                abort(404)
            return row.content, row
        return (active if active is not None else _skeleton(file)), None

    def _check(self, file: EditableFile, text: str) -> tuple[Declarations | None, list[str]]:
        """The candidate set, or the loader's errors as ``file:line: path: message``."""
        try:
            return candidate_set(current_services(), file, text), []
        except DeclarationsInvalid as exc:
            return None, [str(error) for error in exc.errors]

    def _backtest(self, decls: Declarations) -> dict[str, Any]:
        services = current_services()
        result = backtest(services.db.session, services.declarations, decls).as_dict()
        return {"backtest": result, "changed": _visible_changes(result["students_changed"])}

    def _validate(self, file: EditableFile, form: YamlEditForm, text: str, active: str | None):
        decls, errors = self._check(file, text)
        context: dict[str, Any] = {"errors": errors, "checked": True}
        if decls is not None and file.needs_backtest:
            context.update(self._review(file, form, text, decls))
        return self._page(file, form, text, active, status=400 if errors else 200, **context)

    def _review(self, file: EditableFile, form: YamlEditForm, text: str, decls: Declarations) -> dict[str, Any]:
        """Run the back-test and hand out the token that lets this exact content be activated."""
        context = self._backtest(decls)
        user = logged_in_user()
        digest = current_services().declarations.digest
        form.reviewed.data = backtest_token(user.id, file.relpath, sha256_text(text), digest)
        return context

    def _save(self, file: EditableFile, form: YamlEditForm, text: str, active: str | None):
        services = current_services()
        session = services.db.session
        user = logged_in_user()
        note = (form.reason.data or "").strip()
        _candidate, errors = self._check(file, text)
        if errors:
            row = reject(session, services.store.roots[0], file, text, user, len(errors), "create", note)
            session.commit()
            log.info("declaration %s: invalid draft rejected (version %s)", file.relpath, row.id if row else "-")
            return self._page(file, form, text, active, status=400, errors=errors, checked=True, rejected=row)
        row = save_draft(session, services.store.roots[0], file, text, user, note)
        session.commit()
        number = numbered(versions(session, file.relpath))[row.id]
        log.info("declaration %s: draft version %s saved by user id %s", file.relpath, row.id, user.id)
        flash(_("已保存为草稿（第%(number)s版），尚未生效。", number=number), "success")
        return redirect(url_for(".edit", path=file.relpath, version=row.id))

    def _activate(self, file: EditableFile, form: YamlEditForm, text: str, active: str | None):
        services = current_services()
        session = services.db.session
        user = logged_in_user()
        reason = (form.reason.data or "").strip()
        if not reason:
            form.reason.errors = [*form.reason.errors, _("激活须填写理由")]
        refused: list[str] = []
        if form.base_sha.data != (sha256_text(active) if active is not None else ""):
            refused.append(_("您编辑期间现行版本已被更改：差异已按新的现行版本重新计算，请检查后再激活。"))
        decls, errors = self._check(file, text)
        context: dict[str, Any] = {"errors": errors, "checked": True, "refused": refused}
        if errors:
            row = reject(session, services.store.roots[0], file, text, user, len(errors), "activate", reason)
            session.commit()
            log.info("declaration %s: invalid activation rejected (version %s)", file.relpath, row.id if row else "-")
            return self._page(file, form, text, active, status=400, rejected=row, **context)
        if active is not None and text == active:
            refused.append(_("内容与现行版本相同，无需激活。"))
        sha, digest = sha256_text(text), services.declarations.digest
        if file.needs_backtest and not backtest_token_ok(form.reviewed.data, user.id, file.relpath, sha, digest):
            refused.append(_("激活预警规则或预警等级前须对这一内容完成回测：回测结果见下方，确认后再点击“激活”。"))
        if refused or form.reason.errors:
            if file.needs_backtest:
                context.update(self._review(file, form, text, decls))
            return self._page(file, form, text, active, status=400, **context)
        return self._install(file, form, text, reason, decls)

    def _install(self, file: EditableFile, form: YamlEditForm, text: str, reason: str, decls: Declarations):
        services = current_services()
        session = services.db.session
        user = logged_in_user()
        summary: dict[str, Any] = {}
        extra: list[Any] = []
        if file.needs_backtest:
            result = backtest(session, services.declarations, decls).as_dict()
            summary = {k: v for k, v in result.items() if k != "students_changed"}
        if file.kind == "alert_rules":
            digest, files = rules_digest(decls)
            record = RulesetActivation(digest=digest, files=files, activated_by=user.username, reason=reason)
            record.backtest = summary
            extra.append(record)
        try:
            row = activate_version(session, services, file, text, user, reason, summary, extra)
        except DeclarationsInvalid as exc:
            errors = [str(error) for error in exc.errors]
            active = active_text(services.store.roots[0], file)
            return self._page(file, form, text, active, 400, errors=errors, checked=True)
        except XinshuError as exc:
            flash(str(exc), "error")
            return redirect(url_for(".edit", path=file.relpath))
        number = numbered(versions(session, file.relpath))[row.id]
        log.info(
            "declaration %s: version %s activated by user id %s (%s students change level)",
            file.relpath,
            row.id,
            user.id,
            summary.get("changed", 0),
        )
        if file.needs_backtest:
            message = _(
                "第%(number)s版已激活并生效；回测中%(changed)s名学生的等级会变化（已有预警不会被重新定级）。",
                number=number,
                changed=summary.get("changed", 0),
            )
        else:
            message = _("第%(number)s版已激活并生效。", number=number)
        flash(message, "success")
        return redirect(url_for(".edit", path=file.relpath))

    # --- rendering ---

    def _page(
        self,
        file: EditableFile,
        form: YamlEditForm,
        text: str,
        active: str | None,
        status: int = 200,
        **context: Any,
    ):
        session = current_services().db.session
        rows = versions(session, file.relpath)
        numbers = numbered(rows)
        active_sha = sha256_text(active) if active is not None else ""
        form.base_sha.data = active_sha  # the diff shown is against this version
        diff = diff_texts(active, text, file.relpath) if context.get("checked") else None
        return (
            self.render(
                "admin/xinshu_yaml_edit.html",
                file=file,
                form=form,
                content=text,
                active_exists=active is not None,
                active_sha=active_sha,
                diff=diff,
                history=list(reversed(rows)),
                numbers=numbers,
                status_labels=STATUS_LABELS,
                system_author=SYSTEM_AUTHOR,
                local_time=local_time,
                level_text=level_text,
                group_label=GROUP_LABELS[file.folder if file.kind != "levels" else LEVELS_PATH],
                errors=context.pop("errors", []),
                **context,
            ),
            status,
        )

    def _version_page(self, version_id: int, with_diff: bool):
        services = current_services()
        session = services.db.session
        row = _version_or_404(session, version_id)
        file = editable_file(row.relpath)
        active = active_text(services.store.roots[0], file)
        number = numbered(versions(session, row.relpath))[row.id]
        diff = diff_texts(active, row.content, file.relpath, new_label=f"v{number}") if with_diff else None
        return self.render(
            "admin/xinshu_yaml_version.html",
            file=file,
            row=row,
            number=number,
            diff=diff,
            is_active=active is not None and sha256_text(active) == row.sha256,
            status_labels=STATUS_LABELS,
            local_time=local_time,
        )


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    """Add the YAML editor (endpoint ``yaml``, ``/admin/yaml/``)."""
    admin.add_view(YamlEditorView(name=_l("声明编辑"), endpoint="yaml"))
