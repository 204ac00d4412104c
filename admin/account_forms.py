"""The forms of the 用户管理 pages (:mod:`xinshu.admin.users_view`): plain Flask-WTF forms with
a CSRF token. Only the fields of a form are read, so extra POST fields (``password_hash``,
``is_superuser``, ``failed_logins``...) change nothing (security.md A8); the password is
checked against the password policy (:func:`xinshu.auth.password_problems`) and never shown.
The role and org-unit choices are filled per request (:func:`fill_role_fields`) with what the
manager may grant; the view checks the scope again.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import BooleanField, DateField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, Regexp, ValidationError

from xinshu.account_changes import AccountFields
from xinshu.account_scope import Manager, grantable_roles, grantable_units
from xinshu.admin.formatting import ORG_KIND_LABELS, ROLE_LABELS
from xinshu.auth import password_problems
from xinshu.models import OrgUnit

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{2,79}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _policy(form: Any, field: Any) -> None:
    problems = password_problems(field.data or "")
    if problems:
        raise ValidationError(_("；").join(problems))


class AccountForm(FlaskForm):
    """The editable fields of an account (nothing else is read from the POST)."""

    display_name = StringField(_l("姓名"), filters=[_strip], validators=[Length(max=120)])
    email = StringField(
        _l("电子邮箱"),
        filters=[_strip],
        validators=[Optional(), Length(max=255), Regexp(EMAIL_PATTERN, message=_l("电子邮箱格式不正确"))],
    )
    active = BooleanField(_l("启用"), default=True)
    expires_on = DateField(_l("账号有效期至（含当日，留空为长期）"), validators=[Optional()])
    submit = SubmitField(_l("保存"))

    def fields_value(self) -> AccountFields:
        """The submitted values."""
        return AccountFields(
            display_name=self.display_name.data or "",
            email=self.email.data or None,
            active=bool(self.active.data),
            expires_on=self.expires_on.data,
        )


class RoleFields:
    """A role and an org unit; choices are filled per request, the scope is checked by the view."""

    role = SelectField(_l("角色"), validate_choice=False, validators=[DataRequired(message=_l("请选择角色"))])
    org_unit = SelectField(
        _l("机构"), coerce=int, validate_choice=False, validators=[DataRequired(message=_l("请选择机构"))]
    )


class PasswordFields:
    password = PasswordField(_l("密码"), validators=[DataRequired(message=_l("请填写密码")), _policy])
    confirm = PasswordField(
        _l("再次输入密码"),
        validators=[
            DataRequired(message=_l("请再次输入密码")),
            EqualTo("password", message=_l("两次输入的密码不一致")),
        ],
    )


class CreateUserForm(RoleFields, PasswordFields, AccountForm):
    """A new account: username, initial password, first role and the account fields."""

    username = StringField(
        _l("用户名"),
        filters=[_strip],
        validators=[
            DataRequired(message=_l("请填写用户名")),
            Regexp(USERNAME_PATTERN, message=_l("用户名为3–80位字母、数字或 _.@-，以字母或数字开头")),
        ],
    )
    submit = SubmitField(_l("创建"))


class GrantForm(RoleFields, FlaskForm):
    submit = SubmitField(_l("添加角色"))


class PasswordForm(PasswordFields, FlaskForm):
    submit = SubmitField(_l("重置密码"))


class ConfirmForm(FlaskForm):
    """A button with the CSRF token (unlock, remove a role)."""

    submit = SubmitField(_l("确定"))


def _role_choices(manager: Manager) -> list[tuple[str, str]]:
    return [("", _("请选择")), *[(role, ROLE_LABELS.get(role, role)) for role in grantable_roles(manager)]]


def unit_labels(units: list[OrgUnit], session: Session) -> dict[int, str]:
    """Each unit's name with its ancestors', e.g. ``一区 / 一中 / 七年级 / 1班``."""
    ids = {int(part) for unit in units for part in unit.path.strip("/").split("/") if part.isdigit()}
    names = dict(session.execute(select(OrgUnit.id, OrgUnit.name).where(OrgUnit.id.in_(ids))).all()) if ids else {}
    labels = {}
    for unit in units:
        chain = [names.get(int(part), "?") for part in unit.path.strip("/").split("/") if part.isdigit()]
        if not chain or chain[-1] != unit.name:
            chain.append(unit.name)
        labels[unit.id] = _(
            "%(path)s（%(kind)s）", path=" / ".join(chain), kind=ORG_KIND_LABELS.get(unit.kind, unit.kind)
        )
    return labels


def fill_role_fields(form: Any, session: Session, manager: Manager) -> None:
    """Fill ``form``'s role and org-unit choices with what ``manager`` may grant."""
    form.role.choices = _role_choices(manager)
    units = grantable_units(session, manager)
    labels = unit_labels(units, session)
    form.org_unit.choices = [(0, _("请选择")), *[(unit.id, labels[unit.id]) for unit in units]]
