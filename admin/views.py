"""Back-office views: the public names plugins import, and the built-in views in menu order.

The classes live in small modules: :mod:`xinshu.admin.base` (login, CSRF,
scoping, audited reads), :mod:`xinshu.admin.access` (the user, capabilities per
student, audit of reads), :mod:`xinshu.admin.home` (the index page),
:mod:`xinshu.admin.model_views` (students, responses), :mod:`xinshu.admin.case_view`,
:mod:`xinshu.admin.warning_view`, :mod:`xinshu.admin.message_views`,
:mod:`xinshu.admin.org_units`, :mod:`xinshu.admin.exporting`,
:mod:`xinshu.admin.break_glass`, :mod:`xinshu.admin.pages` and
:mod:`xinshu.admin.rules_page`. Plugins import from here::

    from xinshu.admin.views import SecureModelView, SecureView, logged_in_user

Staff accounts are managed by the ``accounts`` plugin (endpoint ``user``).
"""

from __future__ import annotations

from typing import Any

from flask_admin import BaseView
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext

from xinshu.admin.access import (
    MAX_ID,
    audit_read,
    guarded,
    logged_in_user,
    may,
    role_covers,
    student_access,
    user_roles,
)
from xinshu.admin.base import FlaskWTFCSRF, SecureDbView, SecureModelView, SecureView, XinshuSecureForm, parse_id
from xinshu.admin.break_glass import BreakGlassView
from xinshu.admin.case_view import CaseView
from xinshu.admin.exporting import ExportColumn, ExportMixin
from xinshu.admin.formatting import current_services, explain_inputs, level_badge, local_time
from xinshu.admin.home import SecureIndexView, scope_counts
from xinshu.admin.message_views import InboxMessageView, NotificationView
from xinshu.admin.model_views import ResponseView, StudentView
from xinshu.admin.org_units import OrgUnitView
from xinshu.admin.pages import DeclarationsView, PluginsView
from xinshu.admin.rules_page import RulesBacktestView
from xinshu.admin.warning_view import JUDGE_ROLES, JudgeForm, WarningView
from xinshu.models import Case, InboxMessage, Notification, OrgUnit, Response, Student
from xinshu.models import RiskWarning as WarningModel


def build_views(db: Any) -> list[BaseView]:
    """The built-in back-office views, in menu order."""
    return [
        OrgUnitView(OrgUnit, db, name=_l("组织机构"), endpoint="orgunit"),
        StudentView(Student, db, name=lazy_pgettext("menu", "学生"), endpoint="student"),
        ResponseView(Response, db, name=lazy_pgettext("menu", "答卷"), endpoint="response"),
        WarningView(WarningModel, db, name=lazy_pgettext("menu", "预警"), endpoint="warning"),
        CaseView(Case, db, name=lazy_pgettext("menu", "个案"), endpoint="case"),
        NotificationView(Notification, db, name=_l("通知"), endpoint="notification"),
        InboxMessageView(InboxMessage, db, name=_l("收件箱"), endpoint="inbox"),
        PluginsView(name=_l("插件 Plugins"), endpoint="plugins"),
        DeclarationsView(name=_l("声明 Declarations"), endpoint="declarations"),
        RulesBacktestView(name=_l("规则回测"), endpoint="rules"),
        BreakGlassView(name=_l("查看理由登记"), endpoint="breakglass"),
    ]


__all__ = [
    "JUDGE_ROLES",
    "MAX_ID",
    "BreakGlassView",
    "CaseView",
    "DeclarationsView",
    "ExportColumn",
    "ExportMixin",
    "FlaskWTFCSRF",
    "InboxMessageView",
    "JudgeForm",
    "NotificationView",
    "OrgUnitView",
    "PluginsView",
    "ResponseView",
    "RulesBacktestView",
    "SecureDbView",
    "SecureIndexView",
    "SecureModelView",
    "SecureView",
    "StudentView",
    "WarningView",
    "XinshuSecureForm",
    "audit_read",
    "build_views",
    "current_services",
    "explain_inputs",
    "guarded",
    "level_badge",
    "local_time",
    "logged_in_user",
    "may",
    "parse_id",
    "role_covers",
    "scope_counts",
    "student_access",
    "user_roles",
]
