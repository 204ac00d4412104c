"""Login and logout for staff (the ``auth`` blueprint), and account helpers.

Passwords are stored only as Werkzeug salted slow hashes (scrypt by default)
and checked with :func:`werkzeug.security.check_password_hash`. A failed login
does the same amount of hashing work whether or not the user exists and says
only "用户名或密码错误". The ``next`` parameter of ``/login`` is followed only
when it is a path on this site (see :func:`safe_next`). ``/logout`` is a POST
checked by ``CSRFProtect`` like every other POST.

The login template lives with the back-office templates
(``xinshu/admin/templates/admin/xinshu_login.html``).
"""

from __future__ import annotations

import functools
import logging

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length

from xinshu.admin import TEMPLATE_DIR
from xinshu.models import ROLES, OrgUnit, RoleAssignment, User

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__, template_folder=str(TEMPLATE_DIR))

DEFAULT_NEXT = "/admin/"
LOGIN_FAILED = "用户名或密码错误"


class LoginForm(FlaskForm):
    """Username and password, with the Flask-WTF CSRF token."""

    username = StringField("用户名", validators=[DataRequired(), Length(max=80)])
    password = PasswordField("密码", validators=[DataRequired(), Length(max=1024)])
    submit = SubmitField("登录")


def hash_password(password: str) -> str:
    """A salted slow hash of ``password`` (Werkzeug's default, scrypt)."""
    return generate_password_hash(password)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("xinshu-no-such-user")


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    org_unit: OrgUnit,
    email: str | None = None,
) -> User:
    """Add a user holding ``role`` over ``org_unit`` (and everything below it).

    The caller owns the transaction; the session is flushed so the user has an id.

    :raises ValueError: ``role`` is not one of :data:`xinshu.models.ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    user = User(username=username, password_hash=hash_password(password), email=email)
    user.roles.append(RoleAssignment(role=role, org_unit=org_unit))
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this username and password, else None."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        check_password_hash(_dummy_hash(), password)  # same work as for a real user
        return None
    if not check_password_hash(user.password_hash, password) or not user.is_active:
        return None
    return user


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """``target`` if it is a path on this site ("/..." but not "//..."), else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return default
    return target


def _db_session() -> Session:
    return current_app.extensions["xinshu"].db.session


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form; on a valid POST log in and go to ``next``."""
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    if form.validate_on_submit():
        user = authenticate(_db_session(), form.username.data, form.password.data)
        if user is not None:
            _start_session(user)
            log.info("login: user id %s", user.id)
            return redirect(next_url)
        log.info("login failed")
        flash(LOGIN_FAILED, "error")
    shown_next = next_url if request.args.get("next") else None
    return render_template("admin/xinshu_login.html", form=form, next_url=shown_next)


def _start_session(user: User) -> None:
    """A fresh session (no fixation), permanent so the 30-minute lifetime applies."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    login_user(user)
    session.permanent = True


@bp.route("/logout", methods=["POST"])
def logout():
    """Log out (POST with CSRF token) and return to the login page."""
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))
