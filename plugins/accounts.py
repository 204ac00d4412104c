"""Staff accounts and the audit log in the back office: user management within one's own
scope (roles and org units, before/after audited) and the read-only audit log (审计日志).

This module holds the plugin's hook implementations only:

* 用户管理 (endpoint ``user``, ``/admin/user/``): :mod:`xinshu.admin.users_view`, with its
  forms in :mod:`xinshu.admin.account_forms`; who manages whom is
  :mod:`xinshu.account_scope`, the audited changes :mod:`xinshu.account_changes`;
* 审计日志 (endpoint ``audit``, ``/admin/audit/``): :mod:`xinshu.admin.audit_view`;
* command line (``register_commands``, :mod:`xinshu.plugins.accounts_cli`):
  ``xinshu users unlock USERNAME`` and ``xinshu audit purge --keep-days N``.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from xinshu import hookimpl
from xinshu.admin.audit_view import AuditLogView
from xinshu.admin.users_view import UserAdminView
from xinshu.plugins.accounts_cli import audit_cli, users_cli


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    category = _l("系统管理")
    admin.add_view(UserAdminView(db, name=_l("用户管理"), endpoint="user", category=category))
    admin.add_view(AuditLogView(db, name=_l("审计日志"), endpoint="audit", category=category))


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(users_cli)
    cli.add_command(audit_cli)


__all__ = ["AuditLogView", "UserAdminView", "audit_cli", "register_admin_views", "register_commands", "users_cli"]
