"""组织机构: the org tree within the user's scope; bureau and district administrators add and rename units.

Everyone sees the units under their assignments. A bureau or district
administrator adds a unit under a unit of their administrative scope, of the
kind the tree allows there (:data:`xinshu.orgs.PARENT_KIND`: a school under a
district, a district under the city...), and renames units of that scope. A
unit is never moved: the edit form has only code and name, so no POST can
place a unit (and its subtree) outside the editor's scope. Changes are audited.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flask import abort, flash, request
from flask_admin import expose
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length, Regexp

from xinshu.admin.access import logged_in_user
from xinshu.admin.base import SecureModelView, XinshuSecureForm
from xinshu.admin.formatting import ORG_KIND_LABELS, choices, select_choices
from xinshu.audit import record
from xinshu.models import ORG_KINDS, OrgUnit, User
from xinshu.orgs import PARENT_KIND, add_org_unit

#: Roles that add and rename org units (under the units where they hold the role).
ORG_EDITOR_ROLES = ("bureau_admin", "district_admin")
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class OrgUnitEditForm(XinshuSecureForm):
    """Rename a unit: code and name only (a unit is never moved)."""

    code = StringField(
        _l("代码"),
        filters=[_strip],
        validators=[DataRequired(_l("请填写代码")), Regexp(CODE_PATTERN, message=_l("代码只能含字母、数字和 _ . -"))],
    )
    name = StringField(_l("名称"), filters=[_strip], validators=[DataRequired(_l("请填写名称")), Length(max=200)])


class OrgUnitCreateForm(OrgUnitEditForm):
    """A new unit: code, name, kind and a parent within the editor's scope."""

    kind = SelectField(_l("类型"), choices=select_choices(ORG_KIND_LABELS))
    parent = SelectField(_l("上级"), coerce=int)


def editor_prefixes(user: User | None) -> list[str]:
    """Paths of the units where ``user`` administers the org tree."""
    if user is None or not user.is_active:
        return []
    return sorted({a.org_unit.path for a in user.roles if a.role in ORG_EDITOR_ROLES and a.org_unit is not None})


class OrgUnitView(SecureModelView):
    """组织机构 list, details, add and rename."""

    column_list = ("id", "code", "name", "kind", "parent")
    column_details_list = ("id", "code", "name", "kind", "parent", "path")
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "code": _l("代码"),
        "name": _l("名称"),
        "kind": _l("类型"),
        "parent": _l("上级"),
        "path": _l("路径"),
    }
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"kind": choices(ORG_KIND_LABELS)}
    column_searchable_list = ("code", "name")
    column_filters = ("kind",)
    column_sortable_list = ("id", "code", "name", "kind")
    column_default_sort = "path"
    form_columns = ("code", "name", "kind", "parent")

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return bool(editor_prefixes(logged_in_user()))

    @property
    def can_edit(self) -> bool:  # type: ignore[override]
        return self.can_create

    def get_create_form(self):
        return OrgUnitCreateForm

    def get_edit_form(self):
        return OrgUnitEditForm

    def editable_units(self) -> list[OrgUnit]:
        """Units of the current user's administrative scope (possible parents, editable units)."""
        prefixes = editor_prefixes(logged_in_user())
        if not prefixes:
            return []
        under = or_(*[OrgUnit.path.startswith(prefix, autoescape=True) for prefix in prefixes])
        return list(self.session.scalars(select(OrgUnit).where(under).order_by(OrgUnit.path)))

    def may_edit(self, unit: OrgUnit) -> bool:
        return any(unit.path.startswith(prefix) for prefix in editor_prefixes(logged_in_user()))

    def create_form(self, obj=None):
        form = super().create_form(obj)
        form.parent.choices = {
            unit.id: _(
                "%(kind)s %(name)s（%(code)s）",
                kind=ORG_KIND_LABELS.get(unit.kind, unit.kind),
                name=unit.name,
                code=unit.code,
            )
            for unit in self.editable_units()
            if unit.kind != "class"
        }
        return form

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        """Rename a unit of the user's administrative scope; 403 for any other visible unit."""
        unit = self.get_one(request.args.get("id"))
        if unit is not None and not self.may_edit(unit):
            abort(403)
        return super().edit_view()

    def create_model(self, form) -> OrgUnit | bool:
        """Add the unit under the chosen parent, if the tree and the user's scope allow it."""
        parent = next((unit for unit in self.editable_units() if unit.id == form.parent.data), None)
        kind = form.kind.data
        if parent is None or kind not in ORG_KINDS or PARENT_KIND[kind] != parent.kind:
            flash(_("上级单位不在您的管理范围内，或该类型不能建在此上级之下"), "error")
            return False
        if not self._code_free(form.code.data):
            return False
        try:
            unit = add_org_unit(self.session, form.code.data, form.name.data, kind, parent)
            record(self.session, "create", "org_unit", unit.id, detail={"kind": kind, "parent_id": parent.id})
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        return unit

    def update_model(self, form, model: OrgUnit) -> bool:
        """Rename the unit (code and name), audited."""
        if not self.may_edit(model):
            flash(_("只能修改本人管理范围内的单位"), "error")
            return False
        if form.code.data != model.code and not self._code_free(form.code.data):
            return False
        changed = [f for f in ("code", "name") if getattr(model, f) != getattr(form, f).data]
        model.code, model.name = form.code.data, form.name.data
        record(self.session, "update", "org_unit", model.id, detail={"changed": changed})
        try:
            self.session.commit()
        except Exception:
            self.session.rollback()
            raise
        return True

    def _code_free(self, code: str) -> bool:
        if self.session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is not None:
            flash(_("代码 %(code)s 已被使用", code=code), "error")
            return False
        return True
