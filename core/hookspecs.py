"""Every xinshu hook specification, and nothing else.

Plugins implement these with ``@xinshu.hookimpl``. An implementation may take
fewer arguments than the spec lists (pluggy's "opt-in arguments"); argument
names are never renamed, only added. Built-in features are plugins too (the
``xinshu`` entry-point group in ``setup.cfg``). ``docs/plugins.md`` documents
each hook with an example, and ``tests/test_hooks.py`` checks that every hook
here is documented and has a ``test_hook_<name>`` test.

Collect hooks (``register_*``) return lists that core folds; a duplicate name
across plugins is a :class:`xinshu.errors.StartupError`. Event hooks
(``warning_raised``, ``notification_attempted``) are broadcast: return values
are ignored and an exception in one implementation is logged, never allowed
to stop the pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:  # pragma: no cover
    from flask import Flask
    from flask_admin import Admin

    from xinshu.channels import Channel, Delivery
    from xinshu.scoring import Scorer

hookspec = HookspecMarker("xinshu")
hookimpl = HookimplMarker("xinshu")

__all__ = [
    "hookimpl",
    "hookspec",
    "notification_attempted",
    "register_admin_views",
    "register_channels",
    "register_commands",
    "register_declaration_dirs",
    "register_scorers",
    "warning_raised",
]


@hookspec
def register_scorers() -> list[type[Scorer]]:
    """Return :class:`xinshu.scoring.Scorer` subclasses.

    Each class has a unique ``name``; a scale in an instrument YAML selects it
    with ``method: <name>``. Its ``options_schema`` (a JSON Schema object) is
    used to validate that scale's ``options`` mapping, so a plugin's method is
    validated like a built-in one.

    :return: a list of Scorer subclasses (classes, not instances).
    """


@hookspec
def register_channels() -> list[type[Channel]]:
    """Return :class:`xinshu.channels.Channel` subclasses.

    Each class has a unique ``name``. ``rules/levels.yaml`` lists, per warning
    level, the channels a notification goes through. The dispatcher calls
    ``Channel.send(notification)`` once per outbox row, catching every
    exception, so one failing channel never stops the others.

    :return: a list of Channel subclasses (classes, not instances).
    """


@hookspec
def register_declaration_dirs() -> list[str]:
    """Return extra directories holding declaration YAML shipped by a plugin.

    Each directory may contain ``instruments/`` and ``rules/`` laid out like
    the project's own. Files are validated exactly like the project's.

    :return: a list of filesystem paths (``str`` or ``os.PathLike``).
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands or command groups to the ``xinshu`` command line.

    Called once when :mod:`xinshu.cli` is imported, with the plugins chosen by
    ``XINSHU_PLUGINS``, ``XINSHU_BLOCK_PLUGINS`` and ``XINSHU_LOAD_PLUGINS``
    (datasette's ``register_commands`` works the same way).

    :param cli: the ``xinshu`` :class:`click.Group`; use ``@cli.command()`` or
        ``cli.add_command(...)``.
    """


@hookspec
def register_admin_views(admin: Admin, db: Any, app: Flask) -> None:
    """Add Flask-Admin views or menu links to the back office.

    Views must subclass :class:`xinshu.admin.views.SecureModelView` or
    :class:`xinshu.admin.views.SecureView` so that login, CSRF and org-unit
    scoping apply to them.

    :param admin: the application's :class:`flask_admin.Admin`.
    :param db: the :class:`xinshu.db.Database` (``db.session`` is the
        request-scoped session).
    :param app: the Flask application.
    """


@hookspec
def warning_raised(warning: Any, session: Any) -> None:
    """Called after a warning is created or its level rises, in its transaction.

    For audit or analytics. Must not commit or roll back the session, and must
    not block. Return value ignored.

    :param warning: the :class:`xinshu.models.RiskWarning` row.
    :param session: the SQLAlchemy session holding it.
    """


@hookspec
def notification_attempted(notification: Any, delivery: Delivery) -> None:
    """Called after each channel attempt to deliver a notification.

    Success and failure alike; for the audit trail. Return value ignored.

    :param notification: the :class:`xinshu.models.Notification` row.
    :param delivery: the :class:`xinshu.channels.Delivery` result.
    """
