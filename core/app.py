"""The Flask application factory (``create_app``).

One call builds one application with its own services (plugins,
declarations, database): Flask-WTF CSRF protection on every POST, Flask-Babel
(Simplified Chinese by default, ``?lang=en`` switches to English for the
session), Flask-Login sessions for staff, the ``auth`` blueprint and the
Flask-Admin back office under ``/admin/``.

Configuration: defaults below, then ``test_config``. With ``ENV_PRODUCTION``
(or ``XINSHU_ENV=production``) the application refuses to start without an
explicit strong ``SECRET_KEY`` or with debug on.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request, session
from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from xinshu import auth, web_reports
from xinshu.admin import init_admin
from xinshu.errors import StartupError
from xinshu.models import User
from xinshu.services import Services, build_services

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "zh_Hans_CN"
LOCALES = {"zh": DEFAULT_LOCALE, "zh_CN": DEFAULT_LOCALE, DEFAULT_LOCALE: DEFAULT_LOCALE, "en": "en"}
#: Values that are never acceptable as a production SECRET_KEY.
PLACEHOLDER_SECRETS = frozenset({"dev", "development", "test", "secret", "changeme", "change-me", "xinshu"})
MIN_SECRET_LENGTH = 16
_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in _TRUE


def default_config() -> dict[str, Any]:
    """Configuration defaults, from the environment where noted."""
    return {
        "SECRET_KEY": os.environ.get("XINSHU_SECRET_KEY") or None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _env_flag("XINSHU_SESSION_COOKIE_SECURE"),
        "PERMANENT_SESSION_LIFETIME": dt.timedelta(minutes=30),
        "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
        "BABEL_DEFAULT_LOCALE": DEFAULT_LOCALE,
        "WTF_CSRF_ENABLED": True,
        "ENV_PRODUCTION": os.environ.get("XINSHU_ENV", "").strip().lower() == "production",
    }


def check_production(config: Mapping[str, Any], debug: bool) -> None:
    """Refuse a production start with a missing or placeholder secret key, or debug on.

    :raises StartupError: the configuration is not fit for production.
    """
    if not config.get("ENV_PRODUCTION"):
        return
    secret = config.get("SECRET_KEY")
    text = secret.decode(errors="ignore") if isinstance(secret, bytes) else str(secret or "")
    if not text or text.strip().lower() in PLACEHOLDER_SECRETS or len(text) < MIN_SECRET_LENGTH:
        raise StartupError(
            f"production needs XINSHU_SECRET_KEY: a random secret of at least {MIN_SECRET_LENGTH} characters"
        )
    if debug or config.get("DEBUG"):
        raise StartupError("production must not run with DEBUG on")


def _ensure_secret_key(app: Flask) -> None:
    if app.config.get("SECRET_KEY"):
        return
    app.config["SECRET_KEY"] = os.urandom(32)
    log.warning("XINSHU_SECRET_KEY is not set: using a random key; sessions end when the process restarts")


def select_locale() -> str:
    """``?lang=`` (remembered in the session), else the session's choice, else zh_Hans_CN."""
    return LOCALES.get(session.get("lang", ""), DEFAULT_LOCALE)


def _remember_lang() -> None:
    lang = request.args.get("lang")
    if lang in LOCALES:
        session["lang"] = LOCALES[lang]


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _init_login(app: Flask, services: Services) -> LoginManager:
    manager = LoginManager(app)
    manager.login_view = "auth.login"
    manager.login_message = "请先登录。"
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        try:
            pk = int(user_id)
        except (TypeError, ValueError):
            return None
        user = services.db.session.get(User, pk)
        return user if user is not None and user.is_active else None

    return manager


def create_app(test_config: dict | None = None) -> Flask:
    """Build the web application.

    :param test_config: configuration overriding the defaults (tests, deployments).
    :raises StartupError: production configuration problems, plugin problems.
    :raises DeclarationsInvalid: a declaration has errors.
    """
    app = Flask(__name__)
    app.config.from_mapping(default_config())
    if test_config:
        app.config.from_mapping(test_config)
    check_production(app.config, app.debug)
    _ensure_secret_key(app)

    services = build_services(app.config)
    app.extensions["xinshu"] = services
    services.db.create_all()

    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None = None) -> None:
        services.db.session.remove()

    CSRFProtect(app)
    Babel(app, locale_selector=select_locale)
    app.before_request(_remember_lang)
    app.after_request(_security_headers)
    _init_login(app, services)
    app.register_blueprint(auth.bp)
    app.register_blueprint(web_reports.bp)
    init_admin(app, services)
    app.add_url_rule("/", "index", lambda: redirect("/admin/"))
    return app
