"""The Flask-Admin back office (管理后台).

:func:`init_admin` builds the :class:`flask_admin.Admin` for one application:
the built-in views from :mod:`xinshu.admin.views`, then whatever plugins add
through the ``register_admin_views`` hook. The package's ``templates/``
directory (``admin/xinshu_*.html``) is made available to the application's
Jinja loader. A sensitive read whose audit row cannot be written is answered
503 (:class:`xinshu.audit.AuditUnavailable`, security.md I4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from flask_babel import lazy_gettext as _l

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
ADMIN_NAME = _l("心数 xinshu")


def _audit_unavailable(_exc: Exception):
    from xinshu.admin.access import AUDIT_DOWN_MESSAGE

    return str(AUDIT_DOWN_MESSAGE), 503, {"Content-Type": "text/plain; charset=utf-8"}


def init_admin(app: Flask, services: Any) -> Admin:
    """Create the back office on ``app`` and let plugins add their views.

    :param app: the Flask application (before its first request).
    :param services: the :class:`xinshu.services.Services` of the application.
    :return: the :class:`flask_admin.Admin` instance.
    """
    # Imported here: the views import xinshu.auth, which imports TEMPLATE_DIR from this package.
    from xinshu.admin.language import register_template_globals
    from xinshu.admin.views import SecureIndexView, build_views
    from xinshu.audit import AuditUnavailable

    app.register_blueprint(Blueprint("xinshu_admin", __name__, template_folder=str(TEMPLATE_DIR)))
    register_template_globals(app)
    app.register_error_handler(AuditUnavailable, _audit_unavailable)
    admin = Admin(
        app,
        name=ADMIN_NAME,
        theme=Bootstrap4Theme(base_template="admin/xinshu_base.html"),
        index_view=SecureIndexView(name=_l("首页"), template="admin/xinshu_index.html"),
    )
    for view in build_views(services.db):
        admin.add_view(view)
    services.pm.hook.register_admin_views(admin=admin, db=services.db, app=app)
    return admin
