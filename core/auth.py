"""Login, logout and idle timeout for staff (the ``auth`` blueprint), and credential helpers.

Passwords are stored only as Werkzeug salted slow hashes (scrypt by default)
and checked with :func:`werkzeug.security.check_password_hash`. New and
changed passwords must pass :func:`check_password_policy` (MLPS level 3
complexity: at least 10 characters of at least 3 kinds).

A login attempt (:func:`attempt_login`) does the same hashing work whether or
not the user exists and always answers "用户名或密码错误", so the page never
tells whether a username exists, whether the account is locked, expired or
disabled. Behind that one message (security.md A11, B4):

* a wrong password adds one to ``User.failed_logins`` in SQL (``SET
  failed_logins = failed_logins + 1``: concurrent attempts lose no count);
  the ``XINSHU_LOCKOUT_ATTEMPTS``-th consecutive failure (default 10) locks the
  account for ``XINSHU_LOCKOUT_MINUTES`` (default 15), during which even the
  right password is refused; a successful login resets the count;
* an account whose ``expires_on`` (an Asia/Shanghai date) has passed, or that
  is disabled, cannot log in.

Every attempt writes an audit row: ``login`` (ok), ``login_failed`` (denied;
``detail.reason`` one of :data:`FAILURE_REASONS`; the actor is the account only
when it exists, never the text typed), ``lockout``; ``logout`` on logout and
idle timeout. Passwords are never logged or audited.

Sessions: a fresh session at login (no fixation), permanent with the app's
30-minute lifetime, and a server-side idle timeout (security.md B5): the time
of the last request is kept in the session (:data:`LAST_SEEN_KEY`); a request
after more than ``XINSHU_IDLE_MINUTES`` (default 30) of inactivity logs the
user out and redirects to the login page with ``next``
(:func:`enforce_idle_timeout`). Remember-me cookies are never issued; a
session without the last-activity stamp (e.g. one restored from such a
cookie) is treated as idle.

The ``next`` parameter of ``/login`` is followed only when it is a path on this
site (:func:`safe_next`). ``/logout`` is a POST checked by ``CSRFProtect``.
The login template lives with the back-office templates
(``xinshu/admin/templates/admin/xinshu_login.html``).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask import session as web_session
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from xinshu.admin import TEMPLATE_DIR
from xinshu.audit import end_read_transaction, record, record_now
from xinshu.errors import XinshuError
from xinshu.models import ROLES, OrgUnit, RoleAssignment, User, utcnow

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, template_folder=str(TEMPLATE_DIR))

DEFAULT_NEXT = "/admin/"
#: Asia/Shanghai (no DST since 1991): account expiry dates are local dates.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

#: Password policy (MLPS level 3 "complex passwords"): length and kinds of character.
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
MIN_CHARACTER_KINDS = 3

#: Defaults of the lockout and idle-timeout settings (app config / environment).
DEFAULT_LOCKOUT_ATTEMPTS = 10
DEFAULT_LOCKOUT_MINUTES = 15
DEFAULT_IDLE_MINUTES = 30
#: Session key holding the time of the last request (Unix seconds).
LAST_SEEN_KEY = "_xinshu_last_seen"
#: ``detail.reason`` of a ``login_failed`` audit row.
FAILURE_REASONS = ("unknown_user", "bad_password", "locked", "expired", "inactive")


class WeakPassword(XinshuError, ValueError):
    """A new password does not meet the password policy; the message says why."""


class LoginForm(FlaskForm):
    """Username and password, with the Flask-WTF CSRF token."""

    username = StringField(_l("用户名"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("密码"), validators=[DataRequired(), Length(max=MAX_PASSWORD_LENGTH)])
    submit = SubmitField(_l("登录"))


# --- passwords ----------------------------------------------------------------


def hash_password(password: str) -> str:
    """A salted slow hash of ``password`` (Werkzeug's default, scrypt)."""
    return generate_password_hash(password)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("xinshu-no-such-user")


def character_kinds(password: str) -> int:
    """How many of the four kinds (lower case, upper case, digit, other) ``password`` uses."""
    kinds = {"lower" if ch.islower() else "upper" if ch.isupper() else "digit" if ch.isdigit() else "other"
             for ch in password}  # fmt: skip
    return len(kinds)


def password_problems(password: str) -> list[str]:
    """What is wrong with ``password`` as a new password (empty list: it is acceptable)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(_("密码至少需要%(n)s个字符", n=MIN_PASSWORD_LENGTH))
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(_("密码最多%(n)s个字符", n=MAX_PASSWORD_LENGTH))
    if character_kinds(password) < MIN_CHARACTER_KINDS:
        problems.append(_("密码须包含小写字母、大写字母、数字、其他符号中的至少%(n)s类", n=MIN_CHARACTER_KINDS))
    return problems


def check_password_policy(password: str) -> None:
    """Refuse a new password that is too short or too simple.

    :raises WeakPassword: (a :class:`ValueError` and :class:`XinshuError`) naming every problem.
    """
    problems = password_problems(password)
    if problems:
        raise WeakPassword(_("；").join(problems))


# --- accounts -------------------------------------------------------------------


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    org_unit: OrgUnit,
    email: str | None = None,
    *,
    display_name: str = "",
    expires_on: dt.date | None = None,
) -> User:
    """Add a user holding ``role`` over ``org_unit`` (and everything below it).

    The caller owns the transaction; the session is flushed so the user has an id.

    :raises ValueError: ``role`` is not one of :data:`xinshu.models.ROLES`.
    :raises WeakPassword: ``password`` does not meet :func:`check_password_policy`.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    check_password_policy(password)
    user = User(
        username=username,
        password_hash=hash_password(password),
        email=email,
        display_name=display_name,
        expires_on=expires_on,
    )
    user.roles.append(RoleAssignment(role=role, org_unit=org_unit))
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    """Give ``user`` a new password (policy checked) and lift any lockout; the caller commits.

    :raises WeakPassword: ``password`` does not meet :func:`check_password_policy`.
    """
    check_password_policy(password)
    user.password_hash = hash_password(password)
    user.session_version = (user.session_version or 0) + 1  # every open session of the account ends
    unlock(user)


def unlock(user: User) -> None:
    """Lift a lockout and forget earlier failed logins; the caller commits."""
    user.failed_logins = 0
    user.locked_until = None


def local_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date in Asia/Shanghai (``now`` is naive UTC, default the current time)."""
    return (now or utcnow()).replace(tzinfo=dt.UTC).astimezone(CHINA_TZ).date()


def is_expired(user: User, now: dt.datetime | None = None) -> bool:
    """True when ``user.expires_on`` (the last day of access, Asia/Shanghai) has passed."""
    return user.expires_on is not None and user.expires_on < local_today(now)


def is_locked(user: User, now: dt.datetime | None = None) -> bool:
    """True while ``user`` is locked out after too many failed logins."""
    return user.locked_until is not None and user.locked_until > (now or utcnow())


def parse_session_id(value: str) -> tuple[int, int] | None:
    """``(user id, session version)`` from a Flask-Login id ``"<id>.<version>"``, else None.

    An id without a version (sessions from before versions existed) is refused, so
    such a session must log in again.
    """
    user_id, dot, version = (value or "").partition(".")
    if not dot or not user_id.isdigit() or not version.isdigit():
        return None
    return int(user_id), int(version)


def load_session_user(session: Session, value: str) -> User | None:
    """The user of a session id if the id's version is the account's current one and the
    account may still be used (:func:`may_use_session`); else None (logged out)."""
    parsed = parse_session_id(value)
    if parsed is None:
        return None
    user = session.get(User, parsed[0])
    if user is None or (user.session_version or 0) != parsed[1]:
        return None
    return user if may_use_session(user) else None


def revoke_sessions(session: Session, user_id: int) -> None:
    """End every session of the account (its session version goes up) and commit.

    Sessions are signed cookies: without this a copy of the cookie taken before a
    logout would still be accepted until the idle timeout.
    """
    session.execute(update(User).where(User.id == user_id).values(session_version=User.session_version + 1))
    session.commit()


def may_use_session(user: User | None, now: dt.datetime | None = None) -> bool:
    """True when a logged-in ``user`` may go on using the site (active and not expired)."""
    return user is not None and user.is_active and not is_expired(user, now)


# --- login attempts ---------------------------------------------------------------


@dataclass(frozen=True)
class LockoutPolicy:
    """How many consecutive failed logins lock an account, and for how long."""

    attempts: int = DEFAULT_LOCKOUT_ATTEMPTS
    minutes: int = DEFAULT_LOCKOUT_MINUTES

    @classmethod
    def from_config(cls, config: Any) -> LockoutPolicy:
        """``XINSHU_LOCKOUT_ATTEMPTS`` and ``XINSHU_LOCKOUT_MINUTES`` of an app config."""
        return cls(
            attempts=int(config.get("XINSHU_LOCKOUT_ATTEMPTS", DEFAULT_LOCKOUT_ATTEMPTS)),
            minutes=int(config.get("XINSHU_LOCKOUT_MINUTES", DEFAULT_LOCKOUT_MINUTES)),
        )


@dataclass(frozen=True)
class LoginOutcome:
    """The result of :func:`attempt_login`: ``user_id`` is set only on success."""

    user_id: int | None
    reason: str  # "ok" or one of FAILURE_REASONS
    locked_now: bool = False

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


@dataclass(frozen=True)
class _Account:
    id: int
    username: str
    password_hash: str
    active: bool
    expires_on: dt.date | None
    locked_until: dt.datetime | None


def _find_account(db: Any, username: str) -> _Account | None:
    with db.sessionmaker() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            return None
        return _Account(user.id, user.username, user.password_hash, user.active, user.expires_on, user.locked_until)


def attempt_login(
    db: Any, username: str, password: str, policy: LockoutPolicy | None = None, now: dt.datetime | None = None
) -> LoginOutcome:
    """Check a username and password, apply lockout and expiry, and audit the attempt.

    The password is hashed outside any transaction (it is the slow part); the
    counters and the audit rows are written in one short transaction of their
    own, committed whatever the outcome.

    :param db: the :class:`xinshu.db.Database`.
    :param policy: lockout settings (default: 10 failures, 15 minutes).
    :param now: naive UTC (default: the current time).
    :return: ``reason`` "ok" with the user's id, or one of :data:`FAILURE_REASONS`.
    """
    policy = policy or LockoutPolicy()
    now = now or utcnow()
    account = _find_account(db, username)
    password_ok = check_password_hash(account.password_hash if account else _dummy_hash(), password)
    with db.transaction() as session:
        if account is None:
            _audit_failure(session, None, "unknown_user")
            return LoginOutcome(None, "unknown_user")
        user = session.get(User, account.id)
        if user is None:  # deleted since we looked
            _audit_failure(session, None, "unknown_user")
            return LoginOutcome(None, "unknown_user")
        if account.locked_until is not None and account.locked_until > now:
            reason = "locked"
        elif not password_ok:
            return _record_bad_password(session, user, policy, now)
        elif not account.active:
            reason = "inactive"
        elif account.expires_on is not None and account.expires_on < local_today(now):
            reason = "expired"
        elif _record_success(session, account.id, now):
            record(session, "login", "user", account.id, actor=user)
            return LoginOutcome(account.id, "ok")
        else:  # locked by a concurrent attempt since we looked
            reason = "locked"
        _audit_failure(session, user, reason)
        return LoginOutcome(None, reason)


def _not_locked(now: dt.datetime):
    return or_(User.locked_until.is_(None), User.locked_until <= now)


def _record_success(session: Session, user_id: int, now: dt.datetime) -> bool:
    """Reset the failure count unless the account is locked (one statement: no race)."""
    result = session.execute(
        update(User)
        .where(User.id == user_id, _not_locked(now))
        .values(failed_logins=0, locked_until=None, last_login_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _record_bad_password(session: Session, user: User, policy: LockoutPolicy, now: dt.datetime) -> LoginOutcome:
    """Count the failure in SQL; the failure that reaches the limit locks the account.

    The count and the lock are conditional updates of the row, so concurrent
    attempts lose no count and lock the account once: an attempt that finds it
    locked meanwhile is refused as ``locked`` and not counted.
    """
    counted = session.execute(
        update(User)
        .where(User.id == user.id, _not_locked(now))
        .values(failed_logins=User.failed_logins + 1)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:  # locked by a concurrent attempt since we looked
        _audit_failure(session, user, "locked")
        return LoginOutcome(None, "locked")
    failures = session.scalar(select(User.failed_logins).where(User.id == user.id))
    _audit_failure(session, user, "bad_password", failed_logins=failures)
    if failures < policy.attempts:
        return LoginOutcome(None, "bad_password")
    until = now + dt.timedelta(minutes=policy.minutes)
    locked = session.execute(
        update(User)
        .where(User.id == user.id, User.failed_logins >= policy.attempts)
        .values(failed_logins=0, locked_until=until)
        .execution_options(synchronize_session=False)
    )
    if locked.rowcount != 1:  # pragma: no cover - the row is ours until commit
        return LoginOutcome(None, "bad_password")
    record(
        session,
        "lockout",
        "user",
        user.id,
        outcome="denied",
        detail={"failed_logins": failures, "minutes": policy.minutes, "until": until.isoformat(timespec="seconds")},
        actor=user,
    )
    log.warning("user id %s locked out for %s minutes after %s failed logins", user.id, policy.minutes, failures)
    return LoginOutcome(None, "bad_password", locked_now=True)


def _audit_failure(session: Session, user: User | None, reason: str, **detail: Any) -> None:
    record(
        session,
        "login_failed",
        "user",
        user.id if user is not None else "",
        outcome="denied",
        detail={"reason": reason, **detail},
        actor=user if user is not None else "anonymous",
    )


# --- redirects and session ------------------------------------------------------------


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """``target`` if it is a path on this site ("/..." but not "//..."), else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    return target


def _db() -> Any:
    return current_app.extensions["xinshu"].db


def _start_session(user: User) -> None:
    """A fresh session (no fixation), permanent so the 30-minute lifetime applies."""
    lang = web_session.get("lang")
    web_session.clear()
    if lang:
        web_session["lang"] = lang
    login_user(user, remember=False)
    web_session.permanent = True
    web_session[LAST_SEEN_KEY] = int(time.time())


def _end_session() -> None:
    """Log out and forget the session (keeping only the language choice)."""
    lang = web_session.get("lang")
    web_session.clear()
    logout_user()  # after clear(): it marks any remember-me cookie for deletion
    if lang:
        web_session["lang"] = lang


def _audit_logout(user: User, reason: str) -> None:
    """Audit a logout in its own transaction; an audit failure never keeps anyone logged in."""
    db = _db()
    end_read_transaction(db.session)
    record_now(db, "logout", "user", user.id, detail={"reason": reason}, actor=user)


def idle_limit_seconds() -> int:
    """``XINSHU_IDLE_MINUTES`` of the current app, in seconds."""
    return int(current_app.config.get("XINSHU_IDLE_MINUTES", DEFAULT_IDLE_MINUTES)) * 60


def enforce_idle_timeout():
    """``before_request``: log out a user idle too long, else stamp the request time.

    :return: a redirect to the login page (with ``next`` for a GET) when the
        session has expired, else None (the request goes on).
    """
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static") or not current_user.is_authenticated:
        return None  # static files neither count as activity nor end a session
    now = int(time.time())
    last_seen = web_session.get(LAST_SEEN_KEY)
    if isinstance(last_seen, int) and 0 <= now - last_seen <= idle_limit_seconds():
        web_session[LAST_SEEN_KEY] = now
        return None
    user = current_user._get_current_object()
    _audit_logout(user, "idle")
    revoke_sessions(_db().session, user.id)
    _end_session()
    log.info("user id %s logged out after inactivity", user.id)
    flash(_("您已长时间未操作，请重新登录。"), "info")
    target = safe_next(request.full_path.rstrip("?"), "") if request.method in ("GET", "HEAD") else ""
    return redirect(url_for("auth.login", next=target) if target else url_for("auth.login"))


# --- routes --------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on a valid POST log in and go to ``next``."""
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    if form.validate_on_submit():
        db = _db()
        end_read_transaction(db.session)
        outcome = attempt_login(
            db, form.username.data, form.password.data, LockoutPolicy.from_config(current_app.config)
        )
        if outcome.ok:
            _start_session(db.session.get(User, outcome.user_id))
            log.info("login: user id %s", outcome.user_id)
            return redirect(next_url)
        log.info("login failed")
        flash(_("用户名或密码错误"), "error")
    shown_next = next_url if request.args.get("next") else None
    return render_template("admin/xinshu_login.html", form=form, next_url=shown_next)


@bp.route("/logout", methods=["POST"])
def logout():
    """Log out (POST with CSRF token) and return to the login page."""
    if current_user.is_authenticated:
        user = current_user._get_current_object()
        _audit_logout(user, "user")
        revoke_sessions(_db().session, user.id)
    _end_session()
    return redirect(url_for("auth.login"))
