"""Every Flask-Admin view checks access (security.md A2; figures "admin views checked for an
is_accessible override" and "admin views without an is_accessible override").

Flask-Admin is open by default: ``BaseView.is_accessible`` returns True for everyone, and the
index view (``AdminIndexView``) inherits it. Flask-Admin 2.2 keeps its :class:`flask_admin.Admin`
instances in ``app.extensions["admin"]`` (a list, one per ``Admin``); each holds its views in
``_views``, the index view first. Every class must override ``is_accessible`` and
``inaccessible_callback``, and must actually refuse an anonymous visitor.
"""

from __future__ import annotations

import security_summary
from flask import Flask
from flask_admin import Admin, AdminIndexView, BaseView
from flask_admin.contrib.sqla import ModelView
from sec_world import World

from xinshu.admin.exporting import ExportMixin
from xinshu.admin.views import XinshuSecureForm


def all_views(app: Flask) -> list[BaseView]:
    admins = app.extensions["admin"]
    assert isinstance(admins, list) and admins and all(isinstance(a, Admin) for a in admins)
    views: list[BaseView] = []
    for admin in admins:
        assert admin.index_view in admin._views  # the index view is registered like any other
        views += admin._views
    return views


def test_a2_every_admin_view_overrides_is_accessible(world: World):
    views = all_views(world.app)
    open_views = [type(v).__name__ for v in views if type(v).is_accessible is BaseView.is_accessible]
    security_summary.count("admin_views_checked", len(views))
    security_summary.count("admin_views_open", len(open_views))
    assert len(views) >= 26  # 11 built-in views, the index and the plugins' views
    assert any(isinstance(v, AdminIndexView) for v in views)
    assert open_views == []
    assert [type(v).__name__ for v in views if type(v).inaccessible_callback is BaseView.inaccessible_callback] == []


def test_a2_every_view_refuses_an_anonymous_visitor(world: World):
    """Behaviour, not only the override: ``is_accessible()`` is False without a login."""
    with world.app.test_request_context("/admin/"):
        assert [type(v).__name__ for v in all_views(world.app) if v.is_accessible()] == []


def test_a2_model_views_use_the_csrf_form_and_the_safe_export(world: World):
    for view in all_views(world.app):
        if isinstance(view, ModelView):
            assert issubclass(view.form_base_class, XinshuSecureForm), type(view).__name__
            # exports only through xinshu's endpoint (rights, scope, cap, escaping, audit)
            assert isinstance(view, ExportMixin) or type(view).can_export is False, type(view).__name__
