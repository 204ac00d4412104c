"""Build the pluggy plugin manager for one application.

Built-in plugins and third-party plugins load the same way: through the
``xinshu`` entry-point group (see ``setup.cfg``). Extra plugin modules can be
named by dotted path (``XINSHU_PLUGINS`` config / environment variable, a
comma-separated list), which is how tests load the sample plugin under
``tests/``. ``XINSHU_BLOCK_PLUGINS`` blocks plugins by name, and
``XINSHU_TRACE_PLUGINS=1`` logs every hook call (after datasette's
``DATASETTE_TRACE_PLUGINS``).

Each application gets its own manager (architecture.md §3.3), so tests never
share plugin state.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

import pluggy

from xinshu import hookspecs
from xinshu.errors import StartupError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "xinshu"


@dataclass(frozen=True)
class PluginInfo:
    """What the back office's plugins page shows for one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def get_plugin_manager(
    extra_modules: Iterable[str] = (),
    blocked: Iterable[str] = (),
    trace: bool = False,
    distributions: Iterable[str] | None = None,
) -> pluggy.PluginManager:
    """Return a new manager with every ``xinshu`` entry point registered.

    :param extra_modules: dotted module names to import and register as well.
    :param blocked: plugin names never to register.
    :param distributions: load entry points only from these installed
        distributions (``XINSHU_LOAD_PLUGINS``, after datasette's
        ``DATASETTE_LOAD_PLUGINS``); None loads every installed plugin.
    :param trace: log each hook call and its result at DEBUG level.
    :raises StartupError: an extra module cannot be imported, or a plugin
        implements a hook that does not exist.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    try:
        _load_entry_points(pm, distributions)
        for dotted in extra_modules:
            if pm.is_blocked(dotted) or pm.get_plugin(dotted) is not None:
                continue
            try:
                module = importlib.import_module(dotted)
            except ImportError as exc:
                raise StartupError(f"plugin module {dotted!r} cannot be imported: {exc}") from exc
            if not pm.is_registered(module):  # also installed as an entry point: keep that registration
                pm.register(module, name=dotted)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise StartupError(str(exc)) from exc
    if trace:
        pm.trace.root.setwriter(log.debug)
        pm.enable_tracing()
    return pm


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _load_entry_points(pm: pluggy.PluginManager, distributions: Iterable[str] | None) -> None:
    if distributions is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    allowed = {_canonical(d) for d in distributions}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and _canonical(ep.dist.metadata["name"]) in allowed:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)


def collect_named(results: Iterable[list | None], what: str) -> dict[str, type]:
    """Fold the lists returned by a ``register_*`` hook into ``{name: class}``.

    :raises StartupError: two classes share a ``name``.
    """
    found: dict[str, type] = {}
    for result in results:
        for cls in result or []:
            name = cls.name
            if name in found and found[name] is not cls:
                raise StartupError(f"duplicate {what} name: {name!r}")
            found[name] = cls
    return found


def list_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """Describe every registered plugin: name, distribution, version, hooks."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        infos.append(
            PluginInfo(
                name=name,
                distribution=dist.metadata["name"] if dist else "",
                version=dist.version if dist else "",
                hooks=hooks,
            )
        )
    return sorted(infos, key=lambda p: p.name)


def installed_entry_points() -> list[str]:
    """Names of the ``xinshu`` entry points visible to this interpreter."""
    return sorted(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def notify_observers(pm: pluggy.PluginManager, hook_name: str, **kwargs) -> None:
    """Call every implementation of a broadcast hook, isolating failures.

    pluggy stops at the first exception (pytest-dev/pluggy#419); an observer
    must never stop a warning or a delivery, so each one is called on its own
    and an exception is logged.
    """
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):  # pluggy's call order
        if impl.wrapper or impl.hookwrapper:
            log.error("%s hook of plugin %s is a wrapper; not supported for event hooks", hook_name, impl.plugin_name)
            continue
        try:
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception:
            log.exception("%s hook of plugin %s failed", hook_name, impl.plugin_name)
