"""The objects every entry point (web app, CLI, scheduler) works with.

:func:`build_services` loads plugins, collects scorers and channels, and loads
the declarations; :class:`Services` bundles them with the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pluggy

from xinshu.channels import Channel
from xinshu.db import Database
from xinshu.declarations.registry import Declarations, DeclarationStore
from xinshu.errors import StartupError
from xinshu.plugin_manager import collect_named, get_plugin_manager
from xinshu.scoring import Scorer
from xinshu.timeline import TimelineImmutable  # noqa: F401 - the case timeline is append-only

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_declaration_root() -> Path:
    """``XINSHU_DECLARATIONS`` if set, else the project checkout, else the cwd."""
    if os.environ.get("XINSHU_DECLARATIONS"):
        return Path(os.environ["XINSHU_DECLARATIONS"])
    if (PROJECT_ROOT / "instruments").is_dir():
        return PROJECT_ROOT
    return Path.cwd()


#: Settings read from ``XINSHU_<NAME>`` environment variables when the config lacks them.
ENV_SETTINGS = (
    "DATABASE_URL", "PUBLIC_URL", "MAIL_SERVER", "MAIL_PORT", "MAIL_USE_TLS",
    "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_FROM", "MAIL_TIMEOUT",
    "WECOM_WEBHOOK_URL", "DINGTALK_WEBHOOK_URL", "DINGTALK_SECRET", "WEBHOOK_TIMEOUT",
    "SMS_GATEWAY_URL", "SMS_GATEWAY_TOKEN", "SMS_RECIPIENTS", "SMS_TIMEOUT", "ESCALATION_CHANNELS",
)  # fmt: skip


def config_from_env(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` plus every :data:`ENV_SETTINGS` key it lacks that the environment sets."""
    merged = dict(config)
    for name in ENV_SETTINGS:
        value = os.environ.get(f"XINSHU_{name}")
        if value not in (None, "") and merged.get(name) in (None, ""):
            merged[name] = value
    if isinstance(merged.get("MAIL_USE_TLS"), str):
        merged["MAIL_USE_TLS"] = merged["MAIL_USE_TLS"].strip().lower() in ("1", "true", "yes", "on")
    return merged


def database_url(value: str) -> str:
    """A SQLAlchemy URL; a plain file path means a SQLite file."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def default_database_url() -> str:
    """``sqlite:///instance/xinshu.db`` in the current directory."""
    return f"sqlite:///{Path.cwd() / 'instance' / 'xinshu.db'}"


def plugin_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Plugin-manager options from config or the environment: ``XINSHU_PLUGINS``
    (extra modules), ``XINSHU_BLOCK_PLUGINS``, ``XINSHU_LOAD_PLUGINS`` (only these
    distributions' entry points) and ``XINSHU_TRACE_PLUGINS``."""

    def names(key: str) -> list[str]:
        value = config.get(key, os.environ.get(key, ""))
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return list(value)

    trace = str(config.get("XINSHU_TRACE_PLUGINS", os.environ.get("XINSHU_TRACE_PLUGINS", ""))) == "1"
    load = config.get("XINSHU_LOAD_PLUGINS", os.environ.get("XINSHU_LOAD_PLUGINS"))
    return {
        "extra_modules": names("XINSHU_PLUGINS"),
        "blocked": names("XINSHU_BLOCK_PLUGINS"),
        "trace": trace,
        "distributions": None if load is None else names("XINSHU_LOAD_PLUGINS"),
    }


@dataclass
class Services:
    """Plugins, scorers, channels, declarations, database and config."""

    pm: pluggy.PluginManager
    scorer_classes: dict[str, type[Scorer]]
    channel_classes: dict[str, type[Channel]]
    store: DeclarationStore
    db: Database | None
    config: Mapping[str, Any]
    _scorers: dict[str, Scorer] | None = field(default=None, repr=False)

    @property
    def declarations(self) -> Declarations:
        return self.store.current

    def scorers(self) -> dict[str, Scorer]:
        """One instance per scorer class, made once (scoring is a hot path)."""
        if self._scorers is None:
            self._scorers = {name: cls() for name, cls in self.scorer_classes.items()}
        return self._scorers

    def channel(self, name: str) -> Channel:
        return self.channel_classes[name]()

    def configured_channels(self) -> set[str]:
        return {name for name, cls in self.channel_classes.items() if cls.configured(self.config)}


def load_plugins(config: Mapping[str, Any]) -> tuple[pluggy.PluginManager, dict, dict]:
    """Build the plugin manager and collect scorers and channels."""
    pm = get_plugin_manager(**plugin_options(config))
    scorers = collect_named(pm.hook.register_scorers(), "scorer")
    for name, cls in scorers.items():
        try:
            jsonschema.validators.validator_for(cls.options_schema).check_schema(cls.options_schema)
        except jsonschema.exceptions.SchemaError as exc:
            raise StartupError(f"scorer {name!r}: invalid options_schema: {exc.message}") from exc
    channels = collect_named(pm.hook.register_channels(), "channel")
    return pm, scorers, channels


def declaration_roots(pm: pluggy.PluginManager, config: Mapping[str, Any]) -> list[Path]:
    """The project root plus any directories plugins register."""
    roots = [Path(config.get("DECLARATION_ROOT") or default_declaration_root())]
    for extra in pm.hook.register_declaration_dirs():
        roots.extend(Path(p) for p in extra or [])
    return roots


def build_services(config: Mapping[str, Any] | None = None, with_db: bool = True) -> Services:
    """Load plugins and declarations; open the database unless ``with_db`` is False.

    :raises StartupError: plugin problems.
    :raises DeclarationsInvalid: a declaration has errors.
    """
    config = config_from_env(config or {})
    pm, scorers, channels = load_plugins(config)
    store = DeclarationStore(declaration_roots(pm, config), scorers, channels)
    db = None
    if with_db:
        db = Database(database_url(config.get("DATABASE_URL") or default_database_url()))
    return Services(pm, scorers, channels, store, db, config)
