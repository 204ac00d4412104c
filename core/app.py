"""The Flask application factory (``create_app``).

One call builds one application with its own services (plugins,
declarations, database): Flask-WTF CSRF protection on every POST, Flask-Babel
(Simplified Chinese by default, ``?lang=en`` switches to English for the
session), Flask-Login sessions for staff, the ``auth`` blueprint and the
Flask-Admin back office under ``/admin/``.

Configuration: defaults below, then ``test_config``. Security settings:
``XINSHU_LOCKOUT_ATTEMPTS`` (10) and ``XINSHU_LOCKOUT_MINUTES`` (15) for the
login lockout, ``XINSHU_IDLE_MINUTES`` (30) for the idle timeout (config keys
or environment variables of the same name). The session cookie is HttpOnly and
SameSite=Lax, Secure with ``XINSHU_SESSION_COOKIE_SECURE`` (default on in
production); remember-me cookies are never issued (and would be
Secure/HttpOnly/Lax). Flask adds ``Vary: Cookie`` to every response that
touches the session, which is every response (the idle check reads it).

With ``ENV_PRODUCTION`` (or ``XINSHU_ENV=production``) the application refuses
to start (:class:`~xinshu.errors.StartupError` naming each problem) without an
explicit strong ``SECRET_KEY``, with debug on, with a session cookie that is
not Secure, with CSRF protection or login switched off, or while a demo
account still has the demo password (security.md B2).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, redirect, request, session
from flask_babel import Babel, gettext
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import select
from werkzeug.security import check_password_hash

from xinshu import auth, web_reports
from xinshu.admin import init_admin
from xinshu.error_pages import register_error_pages
from xinshu.errors import StartupError
from xinshu.i18n import N_
from xinshu.models import User
from xinshu.services import Services, build_services

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "zh_Hans_CN"
LOCALES = {"zh": DEFAULT_LOCALE, "zh_CN": DEFAULT_LOCALE, DEFAULT_LOCALE: DEFAULT_LOCALE, "en": "en"}
#: Values that are never acceptable as a production SECRET_KEY.
PLACEHOLDER_SECRETS = frozenset(
    {
        "dev",
        "development",
        "test",
        "testing",
        "secret",
        "secret-key",
        "secret_key",
        "secretkey",
        "changeme",
        "change-me",
        "change_me",
        "replace-me",
        "your-secret-key",
        "default",
        "insecure",
        "xinshu",
        "xinshu-secret",
        # examples printed in Flask's documentation
        "b'_5#y2l\"f4q8z\\n\\xec]/'",
        '_5#y2l"f4q8z\n\xec]/',
        "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf",
    }
)
MIN_SECRET_LENGTH = 16
_TRUE = {"1", "true", "yes", "on"}
#: Integer settings read from the environment variable of the same name: (name, default, minimum).
INT_SETTINGS = (
    ("XINSHU_LOCKOUT_ATTEMPTS", auth.DEFAULT_LOCKOUT_ATTEMPTS, 1),
    ("XINSHU_LOCKOUT_MINUTES", auth.DEFAULT_LOCKOUT_MINUTES, 1),
    ("XINSHU_IDLE_MINUTES", auth.DEFAULT_IDLE_MINUTES, 1),
    ("XINSHU_EXPORT_MAX_ROWS", 10_000, 1),
)


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in _TRUE


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise StartupError(f"{name} must be a whole number, not {value!r}") from None


def default_config() -> dict[str, Any]:
    """Configuration defaults, from the environment where noted.

    :raises StartupError: an integer setting in the environment is not a number.
    """
    production = os.environ.get("XINSHU_ENV", "").strip().lower() == "production"
    return {
        "SECRET_KEY": os.environ.get("XINSHU_SECRET_KEY") or None,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _env_flag("XINSHU_SESSION_COOKIE_SECURE", default=production),
        "PERMANENT_SESSION_LIFETIME": dt.timedelta(minutes=30),
        # Remember-me is never used (login_user(remember=False)); should a cookie ever be set,
        # it is as protected as the session cookie and short-lived.
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": _env_flag("XINSHU_SESSION_COOKIE_SECURE", default=production),
        "REMEMBER_COOKIE_DURATION": dt.timedelta(minutes=30),
        "REMEMBER_COOKIE_REFRESH_EACH_REQUEST": False,
        "MAX_CONTENT_LENGTH": 20 * 1024 * 1024,
        # A form field may hold a whole declaration file (the YAML editor refuses above 1 MB itself).
        "MAX_FORM_MEMORY_SIZE": 2_000_000,
        "XINSHU_PSEUDONYM_KEY": os.environ.get("XINSHU_PSEUDONYM_KEY") or None,
        "BABEL_DEFAULT_LOCALE": DEFAULT_LOCALE,
        "BABEL_TRANSLATION_DIRECTORIES": os.path.join(os.path.dirname(os.path.abspath(__file__)), "translations"),
        "WTF_CSRF_ENABLED": True,
        "ENV_PRODUCTION": production,
        **{name: _env_int(name, default) for name, default, _minimum in INT_SETTINGS},
    }


def check_settings(config: Mapping[str, Any]) -> None:
    """Refuse lockout and idle-timeout settings that are not positive whole numbers.

    :raises StartupError: naming the setting.
    """
    for name, default, minimum in INT_SETTINGS:
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise StartupError(f"{name} must be a whole number of at least {minimum}, not {value!r}")


def _weak_secret(secret: Any) -> bool:
    text = secret.decode(errors="ignore") if isinstance(secret, bytes) else str(secret or "")
    return not text or text.strip().lower() in PLACEHOLDER_SECRETS or len(text) < MIN_SECRET_LENGTH


def production_problems(config: Mapping[str, Any], debug: bool) -> list[str]:
    """What makes ``config`` unfit for production (empty list: nothing).

    A setting missing from ``config`` counts as Flask's default (e.g. a
    session cookie that is not Secure).
    """
    problems = []
    if _weak_secret(config.get("SECRET_KEY")):
        problems.append(
            f"SECRET_KEY is unset, a known placeholder or shorter than {MIN_SECRET_LENGTH} characters: "
            "set XINSHU_SECRET_KEY to a long random secret"
        )
    if debug or config.get("DEBUG"):
        problems.append("DEBUG is on: production must not run in debug mode")
    if not config.get("SESSION_COOKIE_SECURE"):
        problems.append("SESSION_COOKIE_SECURE is off: the session cookie must be Secure (serve over HTTPS)")
    if config.get("REMEMBER_COOKIE_SECURE") is False:
        problems.append("REMEMBER_COOKIE_SECURE is off: cookies must be Secure (serve over HTTPS)")
    if config.get("WTF_CSRF_ENABLED") is False:
        problems.append("WTF_CSRF_ENABLED is off: CSRF protection must stay on")
    if config.get("LOGIN_DISABLED"):
        problems.append("LOGIN_DISABLED is on: login must stay required")
    return problems


def check_production(config: Mapping[str, Any], debug: bool) -> None:
    """Refuse a production start with a weak secret key, debug on, an insecure cookie,
    CSRF or login switched off (security.md B2). Does nothing outside production.

    :raises StartupError: naming every problem found.
    """
    if not config.get("ENV_PRODUCTION"):
        return
    problems = production_problems(config, debug)
    if problems:
        raise StartupError("refusing to start in production: " + "; ".join(problems))


def demo_usernames() -> list[str]:
    """The accounts ``xinshu demo`` creates (see :mod:`xinshu.demo`)."""
    from xinshu.demo import SCHOOLS

    names = ["bureau"]
    for code, _name, _area, members in SCHOOLS:
        names.append(f"district-{code.lower()}")
        names += [f"psy-{school_code.lower()}" for school_code, _school_name in members]
    return names


def check_demo_accounts(db: Any) -> None:
    """Refuse a production start while an active demo account still has the demo password.

    :raises StartupError: naming the accounts.
    """
    from xinshu.demo import DEMO_PASSWORD  # imported here: the demo module is large

    with db.sessionmaker() as session:
        rows = session.execute(
            select(User.username, User.password_hash).where(User.username.in_(demo_usernames()), User.active)
        ).all()
    weak = sorted(name for name, hashed in rows if check_password_hash(hashed, DEMO_PASSWORD))
    if weak:
        raise StartupError(
            "refusing to start in production: these accounts still have the demo password "
            f"(change it or disable them): {', '.join(weak)}"
        )


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
    manager.login_message = N_("请先登录。")  # translated when flashed (localize_callback)
    manager.localize_callback = gettext
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(user_id: str) -> User | None:
        return auth.load_session_user(services.db.session, user_id)

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
    check_settings(app.config)
    check_production(app.config, app.debug)
    _ensure_secret_key(app)

    services = build_services(app.config)
    app.extensions["xinshu"] = services
    services.db.create_all()
    if app.config.get("ENV_PRODUCTION"):
        check_demo_accounts(services.db)

    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None = None) -> None:
        services.db.session.remove()

    CSRFProtect(app)
    Babel(app, locale_selector=select_locale)
    app.before_request(_remember_lang)
    app.before_request(auth.enforce_idle_timeout)
    app.after_request(_security_headers)
    _init_login(app, services)
    app.register_blueprint(auth.bp)
    app.register_blueprint(web_reports.bp)
    init_admin(app, services)
    register_error_pages(app)
    app.add_url_rule("/", "index", lambda: redirect("/admin/"))
    return app
