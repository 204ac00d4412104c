"""Plain back-office pages: the registered plugins and the active declarations."""

from __future__ import annotations

from flask_admin import expose

from xinshu.admin.base import SecureView
from xinshu.admin.formatting import current_services
from xinshu.plugin_manager import list_plugins


class PluginsView(SecureView):
    """Lists the registered plugins: name, distribution, version and hooks."""

    @expose("/")
    def index(self):
        return self.render("admin/xinshu_plugins.html", plugins=list_plugins(current_services().pm))


class DeclarationsView(SecureView):
    """Lists the active declarations: instruments, levels, rules, templates."""

    @expose("/")
    def index(self):
        return self.render("admin/xinshu_declarations.html", decl=current_services().declarations)
