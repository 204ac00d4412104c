"""Authentication hardening (security.md B2–B7, A11): production start checks, cookies,
lockout, idle timeout, password storage and policy, redirects, account expiry.

One application over a real SQLite file is built per module; every test uses its
own accounts, so lockouts and logouts of one test do not touch another. Tests of
the production configuration build their own applications.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select
from test_audit_log import pg_db  # noqa: F401 - fixture: a migrated PostgreSQL schema
from test_web import app_config, csrf_token
from werkzeug.security import check_password_hash

from xinshu.app import check_production, create_app, demo_usernames
from xinshu.auth import (
    LAST_SEEN_KEY,
    LockoutPolicy,
    WeakPassword,
    attempt_login,
    check_password_policy,
    create_user,
    hash_password,
    password_problems,
    set_password,
)
from xinshu.errors import StartupError
from xinshu.models import AuditEvent, OrgUnit, User
from xinshu.orgs import add_org_unit

PASSWORD = "Lockout-test-2026"
STRONG_SECRET = "k3Jd9-very-long-random-secret-for-tests-only"
GENERIC_FAILURE = "用户名或密码错误"


# --- fixtures and helpers ------------------------------------------------------------


def build_app(tmp: Path, **config) -> Flask:
    """An app over a SQLite file under ``tmp`` with org units ``c`` (city) → ``d`` → ``s`` (school)."""
    app = create_app(app_config(tmp, **config))
    with app.extensions["xinshu"].db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        district = add_org_unit(session, "d", "区", "district", city)
        add_org_unit(session, "s", "一中", "school", district)
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Flask:
    app = build_app(tmp_path_factory.mktemp("auth"))
    yield app
    app.extensions["xinshu"].db.dispose()


def add_user(app: Flask, username: str, password: str = PASSWORD, **fields) -> int:
    """A principal of school ``s`` with ``fields`` set; returns the id."""
    with app.extensions["xinshu"].db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "s"))
        user = create_user(session, username, password, "principal", school)
        for name, value in fields.items():
            setattr(user, name, value)
        session.flush()
        return user.id


def login(client, username: str, password: str = PASSWORD, next_url: str | None = None, **kwargs):
    """Log in through the form with the page's CSRF token."""
    url = "/login" + (f"?next={next_url}" if next_url is not None else "")
    page = client.get(url, **kwargs)
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "username": username, "password": password}
    return client.post(url, data=data, **kwargs)


def events(app: Flask, **where) -> list[AuditEvent]:
    """Audit rows matching ``where`` (column=value), oldest first."""
    with app.extensions["xinshu"].db.sessionmaker() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEvent, name) == value)
        return list(session.scalars(stmt))


def account(app: Flask, username: str) -> User:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        return session.scalar(select(User).where(User.username == username))


def without_token(html: str) -> str:
    return re.sub(r'value="[^"]*"', 'value=""', html)


def prod_config(tmp: Path, **extra) -> dict:
    """A production configuration that passes every start check."""
    settings = {
        "ENV_PRODUCTION": True,
        "SECRET_KEY": STRONG_SECRET,
        "SESSION_COOKIE_SECURE": True,
        "REMEMBER_COOKIE_SECURE": True,
        "DEBUG": False,
    }
    return app_config(tmp, **{**settings, **extra})


# --- B2: production start checks --------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("SECRET_KEY", None, "SECRET_KEY"),
        ("SECRET_KEY", "dev", "SECRET_KEY"),
        ("SECRET_KEY", "changeme", "SECRET_KEY"),
        ("SECRET_KEY", "Short-9", "SECRET_KEY"),  # 7 characters
        ("SECRET_KEY", "192b9bdd22ab9ed4d12e236c78afcb9a393ec15f71bbf5dc987d54727823bcbf", "SECRET_KEY"),  # Flask docs
        ("DEBUG", True, "DEBUG"),
        ("SESSION_COOKIE_SECURE", False, "SESSION_COOKIE_SECURE"),
        ("WTF_CSRF_ENABLED", False, "WTF_CSRF_ENABLED"),
        ("LOGIN_DISABLED", True, "LOGIN_DISABLED"),
    ],
)
def test_b2_production_refuses_each_weak_setting(tmp_path, setting, value, named):
    """B2: each unfit production setting stops the start with a message naming it."""
    with pytest.raises(StartupError, match=named):
        create_app(prod_config(tmp_path, **{setting: value}))


def test_b2_production_reads_the_environment(tmp_path, monkeypatch):
    """B2: XINSHU_ENV=production without XINSHU_SECRET_KEY refuses to start; the cookie is Secure by default."""
    monkeypatch.setenv("XINSHU_ENV", "production")
    monkeypatch.delenv("XINSHU_SECRET_KEY", raising=False)
    monkeypatch.delenv("XINSHU_SESSION_COOKIE_SECURE", raising=False)
    config = app_config(tmp_path)
    del config["SECRET_KEY"]
    with pytest.raises(StartupError, match="SECRET_KEY"):
        create_app(config)
    monkeypatch.setenv("XINSHU_SECRET_KEY", STRONG_SECRET)
    app = create_app(config)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    app.extensions["xinshu"].db.dispose()


def test_b2_good_production_config_starts(tmp_path):
    """B2: a production configuration with every setting right starts."""
    app = create_app(prod_config(tmp_path))
    assert app.test_client().get("/login", base_url="https://localhost").status_code == 200
    app.extensions["xinshu"].db.dispose()


def test_b2_problems_are_listed_together():
    """B2: several problems are named in one message."""
    with pytest.raises(StartupError) as caught:
        check_production({"ENV_PRODUCTION": True, "SECRET_KEY": "dev", "DEBUG": True}, debug=False)
    message = str(caught.value)
    for name in ("SECRET_KEY", "DEBUG", "SESSION_COOKIE_SECURE"):
        assert name in message
    check_production({"SECRET_KEY": None}, debug=True)  # outside production nothing is checked


def test_b2_bad_number_settings_refuse_to_start(tmp_path, monkeypatch):
    """B2: a lockout or idle setting that is not a positive whole number stops the start."""
    monkeypatch.setenv("XINSHU_LOCKOUT_ATTEMPTS", "ten")
    with pytest.raises(StartupError, match="XINSHU_LOCKOUT_ATTEMPTS"):
        create_app(app_config(tmp_path))
    monkeypatch.delenv("XINSHU_LOCKOUT_ATTEMPTS")
    with pytest.raises(StartupError, match="XINSHU_IDLE_MINUTES"):
        create_app(app_config(tmp_path, XINSHU_IDLE_MINUTES=0))


def test_b2_production_refuses_the_demo_password(tmp_path):
    """B2: a demo account that still has the demo password stops a production start."""
    from xinshu.demo import _demo_users

    dev = create_app(app_config(tmp_path))
    db = dev.extensions["xinshu"].db
    with db.transaction() as session:  # the org units _demo_users expects
        city = add_org_unit(session, "C01", "示范市", "city", None)
        for district, schools in (("D01", ("D01-S01", "D01-S02")), ("D02", ("D02-S01", "D02-S02"))):
            unit = add_org_unit(session, district, district, "district", city)
            for school in schools:
                add_org_unit(session, school, school, "school", unit)
        _demo_users(session)
    with db.sessionmaker() as session:
        created = set(session.scalars(select(User.username)))
    assert created == set(demo_usernames())  # the names the start check looks at
    db.dispose()
    with pytest.raises(StartupError, match="bureau"):
        create_app(prod_config(tmp_path))
    with db.transaction() as session:  # every demo account changes its password
        for user in session.scalars(select(User)):
            user.password_hash = hash_password("Changed-after-demo-1")
    app = create_app(prod_config(tmp_path))
    app.extensions["xinshu"].db.dispose()


# --- B3: cookies --------------------------------------------------------------------------


def _cookie_headers(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def test_b3_cookie_attributes_and_vary_in_production(tmp_path):
    """B3: over HTTPS in production every Set-Cookie is Secure, HttpOnly, SameSite=Lax; Vary: Cookie is sent."""
    app = create_app(prod_config(tmp_path))
    with app.extensions["xinshu"].db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        create_user(session, "prod", PASSWORD, "bureau_admin", city)
    client = app.test_client()
    https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/login"}}
    page = client.get("/login", base_url="https://localhost")
    response = login(client, "prod", **https)
    assert response.status_code == 302
    home = client.get("/admin/", **https)
    assert home.status_code == 200
    cookies = [*_cookie_headers(page), *_cookie_headers(response), *_cookie_headers(home)]
    assert cookies, "the session cookie is set"
    for header in cookies:
        attributes = [part.strip() for part in header.split(";")]
        assert "Secure" in attributes, header
        assert "HttpOnly" in attributes, header
        assert "SameSite=Lax" in attributes, header
        assert not header.startswith("remember_token="), header  # remember-me is never issued
    for touched in (page, response, home):
        assert "Cookie" in touched.headers.get("Vary", ""), touched.request.path
    app.extensions["xinshu"].db.dispose()


# --- B4: lockout ----------------------------------------------------------------------------


def test_b4_ten_failures_lock_even_the_right_password(app):
    """B4: 10 wrong passwords lock the account; the 11th attempt with the right password is refused
    with the same page as for an unknown user; failures, the lockout and the refusal are audited."""
    user_id = add_user(app, "locky")
    client = app.test_client()
    for attempt in range(1, 11):
        response = login(client, "locky", f"Wrong-pass-{attempt}")
        assert response.status_code == 200
        assert GENERIC_FAILURE in response.get_data(as_text=True)
    refused = login(client, "locky", PASSWORD)
    assert client.get("/admin/").status_code == 302  # not logged in
    unknown = login(app.test_client(), "no-such-person", PASSWORD)
    assert without_token(refused.get_data(as_text=True)) == without_token(unknown.get_data(as_text=True))

    failed = events(app, action="login_failed", object_id=str(user_id))
    assert [e.detail["reason"] for e in failed] == ["bad_password"] * 10 + ["locked"]
    assert [e.detail.get("failed_logins") for e in failed[:10]] == list(range(1, 11))
    assert {(e.actor, e.actor_id, e.outcome) for e in failed} == {("locky", user_id, "denied")}
    lockouts = events(app, action="lockout", object_id=str(user_id))
    assert len(lockouts) == 1
    assert lockouts[0].detail["minutes"] == 15
    locked = account(app, "locky")
    # locked_until is 15 minutes after the 10th failure: within a minute of now + 15 min
    assert abs(locked.locked_until - (dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=15))) < (
        dt.timedelta(minutes=1)
    )
    assert not events(app, action="login", object_id=str(user_id))
    for event in events(app):
        assert PASSWORD not in str(event.detail) and "Wrong-pass" not in str(event.detail)


def test_b4_unknown_user_is_audited_without_the_typed_name(app):
    """B4: a failed login for a name that does not exist is audited as anonymous; the name is not stored."""
    login(app.test_client(), "Typo-Maybe-A-Password-9", PASSWORD)
    rows = [e for e in events(app, action="login_failed") if e.detail["reason"] == "unknown_user"]
    assert rows and all(e.actor == "anonymous" and e.actor_id is None and e.object_id == "" for e in rows)
    assert not [e for e in events(app) if "Typo-Maybe" in f"{e.actor}{e.object_id}{e.detail}"]


def test_b4_success_resets_the_count(app):
    """B4: a successful login resets the count of consecutive failures (9 + 9 failures lock nothing)."""
    user_id = add_user(app, "resets")
    client = app.test_client()
    for _ in range(9):
        login(client, "resets", "Wrong-pass-1")
    assert account(app, "resets").failed_logins == 9
    assert login(client, "resets").status_code == 302
    after = account(app, "resets")
    assert after.failed_logins == 0 and after.last_login_at is not None
    assert len(events(app, action="login", object_id=str(user_id), outcome="ok")) == 1
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/admin/").get_data(as_text=True))})
    for _ in range(9):
        login(client, "resets", "Wrong-pass-2")
    assert account(app, "resets").locked_until is None


def test_b4_lock_lasts_the_configured_minutes(app):
    """B4: with 3 attempts / 15 minutes the lock holds until 15 minutes after the 3rd failure."""
    db = app.extensions["xinshu"].db
    add_user(app, "timed")
    policy = LockoutPolicy(attempts=3, minutes=15)
    start = dt.datetime(2026, 5, 1, 8, 0, 0)
    reasons = [attempt_login(db, "timed", "Wrong-pass-1", policy, start).reason for _ in range(3)]
    assert reasons == ["bad_password"] * 3
    assert account(app, "timed").locked_until == dt.datetime(2026, 5, 1, 8, 15, 0)  # 08:00 + 15 min
    assert attempt_login(db, "timed", PASSWORD, policy, start + dt.timedelta(minutes=14, seconds=59)).reason == "locked"
    later = attempt_login(db, "timed", PASSWORD, policy, start + dt.timedelta(minutes=15, seconds=1))
    assert later.ok
    assert account(app, "timed").failed_logins == 0 and account(app, "timed").locked_until is None


def test_b4_configured_attempts_apply_to_the_web_login(tmp_path):
    """B4: XINSHU_LOCKOUT_ATTEMPTS=3 locks after the third failure on the login page."""
    app = build_app(tmp_path, XINSHU_LOCKOUT_ATTEMPTS=3, XINSHU_LOCKOUT_MINUTES=5)
    add_user(app, "three")
    client = app.test_client()
    for _ in range(3):
        login(client, "three", "Wrong-pass-1")
    assert login(client, "three").status_code == 200
    lockout = events(app, action="lockout")
    assert len(lockout) == 1 and lockout[0].detail == {
        "failed_logins": 3,
        "minutes": 5,
        "until": lockout[0].detail["until"],
    }
    app.extensions["xinshu"].db.dispose()


def _concurrent_failures(db, username: str, threads: int, policy: LockoutPolicy) -> list[str]:
    reasons: list[str] = []
    barrier = threading.Barrier(threads)

    def attempt() -> None:
        barrier.wait()
        reasons.append(attempt_login(db, username, "Wrong-pass-1", policy).reason)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return reasons


def test_b4_concurrent_failures_lose_no_count_sqlite(app):
    """B4: 8 simultaneous wrong passwords count 8 (the count is incremented in SQL)."""
    add_user(app, "racer")
    reasons = _concurrent_failures(app.extensions["xinshu"].db, "racer", 8, LockoutPolicy(attempts=100))
    assert reasons == ["bad_password"] * 8
    assert account(app, "racer").failed_logins == 8


def test_b4_concurrent_failures_postgresql(pg_db):  # noqa: F811 - the imported fixture
    """B4 on PostgreSQL: 12 simultaneous failures count 12; with a limit of 5 exactly one locks the account
    and the attempts that find it locked are refused as locked, not counted."""
    with pg_db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        create_user(session, "pg-racer", PASSWORD, "bureau_admin", city)
        create_user(session, "pg-locker", PASSWORD, "bureau_admin", city)
    assert _concurrent_failures(pg_db, "pg-racer", 12, LockoutPolicy(attempts=100)) == ["bad_password"] * 12
    with pg_db.sessionmaker() as session:
        assert session.scalar(select(User.failed_logins).where(User.username == "pg-racer")) == 12
    reasons = _concurrent_failures(pg_db, "pg-locker", 12, LockoutPolicy(attempts=5))
    with pg_db.sessionmaker() as session:
        locker = session.scalar(select(User).where(User.username == "pg-locker"))
        lockouts = session.scalars(select(AuditEvent).where(AuditEvent.action == "lockout")).all()
    assert len(lockouts) == 1 and lockouts[0].object_id == str(locker.id)
    assert locker.locked_until is not None
    # 5 failures are counted before the lock; the other 7 find the account locked
    assert sorted(reasons) == sorted(["bad_password"] * 5 + ["locked"] * 7)


# --- A11: expiry, inactive accounts -------------------------------------------------------------


def test_a11_expired_account_cannot_log_in(app):
    """A11: an account whose last day (Asia/Shanghai) has passed is refused; the refusal is audited."""
    yesterday = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date() - dt.timedelta(days=1)
    user_id = add_user(app, "expired", expires_on=yesterday)
    response = login(app.test_client(), "expired")
    assert response.status_code == 200 and GENERIC_FAILURE in response.get_data(as_text=True)
    rows = events(app, action="login_failed", object_id=str(user_id))
    assert [(e.detail["reason"], e.outcome) for e in rows] == [("expired", "denied")]


def test_a11_expiry_follows_the_shanghai_date(app):
    """A11: expires_on 2026-03-01 allows 23:30 Shanghai (15:30 UTC) that day, refuses 00:30 (16:30 UTC) next day."""
    db = app.extensions["xinshu"].db
    add_user(app, "midnight", expires_on=dt.date(2026, 3, 1))
    assert attempt_login(db, "midnight", PASSWORD, now=dt.datetime(2026, 3, 1, 15, 30)).ok
    assert attempt_login(db, "midnight", PASSWORD, now=dt.datetime(2026, 3, 1, 16, 30)).reason == "expired"


def test_a11_expiry_and_deactivation_end_a_running_session(app):
    """A11: a logged-in user whose account expires or is disabled is sent to the login page."""
    db = app.extensions["xinshu"].db
    user_id = add_user(app, "running")
    client = app.test_client()
    login(client, "running")
    assert client.get("/admin/").status_code == 200
    with db.transaction() as session:
        session.get(User, user_id).expires_on = dt.date(2020, 1, 1)
    assert client.get("/admin/").status_code == 302
    inactive_id = add_user(app, "disabled", active=False)
    assert login(app.test_client(), "disabled").status_code == 200
    assert events(app, action="login_failed", object_id=str(inactive_id))[0].detail["reason"] == "inactive"


# --- B5: idle timeout --------------------------------------------------------------------------


def test_b5_idle_session_is_logged_out(app):
    """B5: a request 31 minutes after the last one logs the user out and redirects to login with next."""
    user_id = add_user(app, "idler")
    client = app.test_client()
    login(client, "idler")
    assert client.get("/admin/").status_code == 200
    with client.session_transaction() as session:
        session[LAST_SEEN_KEY] = int(time.time()) - 31 * 60
    response = client.get("/admin/plugins/?page=2")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/admin/plugins/?page%3D2"
    assert client.get("/admin/").status_code == 302  # still logged out
    rows = events(app, action="logout", object_id=str(user_id))
    assert [(e.detail, e.actor) for e in rows] == [({"reason": "idle"}, "idler")]


def _session_cookie(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_b5_a_copied_session_cookie_dies_with_the_logout(app):
    """B5: sessions are cookies, so logout must end them on the server: a copy of the cookie taken
    before the logout (a stolen cookie) is refused afterwards."""
    add_user(app, "cookie-copier")
    client = app.test_client()
    login(client, "cookie-copier")
    assert client.get("/admin/").status_code == 200
    stolen = _session_cookie(client)
    page = client.get("/admin/")
    assert client.post("/logout", data={"csrf_token": csrf_token(page.get_data(as_text=True))}).status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    response = thief.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_b5_a_password_change_ends_every_open_session(app):
    """B5: after a password reset (set_password) an open session of the account is refused."""
    user_id = add_user(app, "resetme")
    client = app.test_client()
    login(client, "resetme")
    assert client.get("/admin/").status_code == 200
    with app.extensions["xinshu"].db.transaction() as session:
        set_password(session.get(User, user_id), "Another-pass-2026")
    assert client.get("/admin/").status_code == 302
    login(app.test_client(), "resetme", "Another-pass-2026")  # the new password works
    assert account(app, "resetme").session_version == 1


def test_b5_a_session_id_without_version_is_refused(app):
    """B5: a session whose user id carries no version (the format before versions) must log in again."""
    user_id = add_user(app, "oldformat")
    client = app.test_client()
    login(client, "oldformat")
    with client.session_transaction() as session:
        assert session["_user_id"] == f"{user_id}.0"
        session["_user_id"] = str(user_id)
    assert client.get("/admin/").status_code == 302


def test_b5_activity_within_the_limit_keeps_the_session(app):
    """B5: 29 minutes of inactivity is within the limit; the request refreshes the stamp."""
    add_user(app, "active")
    client = app.test_client()
    login(client, "active")
    with client.session_transaction() as session:
        session[LAST_SEEN_KEY] = int(time.time()) - 29 * 60
    assert client.get("/admin/").status_code == 200
    with client.session_transaction() as session:
        assert int(time.time()) - session[LAST_SEEN_KEY] < 60
    assert app.config["PERMANENT_SESSION_LIFETIME"] == dt.timedelta(minutes=30)


def test_b5_session_without_a_stamp_is_idle(app):
    """B5: a session without the last-activity stamp (e.g. restored from a cookie) counts as idle."""
    add_user(app, "nostamp")
    client = app.test_client()
    login(client, "nostamp")
    with client.session_transaction() as session:
        del session[LAST_SEEN_KEY]
    assert client.get("/admin/").status_code == 302


def test_b5_configured_idle_minutes(tmp_path):
    """B5: XINSHU_IDLE_MINUTES=5 logs out after 6 idle minutes; a POST after the limit is not carried out."""
    app = build_app(tmp_path, XINSHU_IDLE_MINUTES=5)
    add_user(app, "five")
    client = app.test_client()
    login(client, "five")
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    with client.session_transaction() as session:
        session[LAST_SEEN_KEY] = int(time.time()) - 6 * 60
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert [e.detail for e in events(app, action="logout")] == [{"reason": "idle"}]
    app.extensions["xinshu"].db.dispose()


def test_logout_is_audited(app):
    """B5: logging out is audited with reason ``user``."""
    user_id = add_user(app, "leaver")
    client = app.test_client()
    login(client, "leaver")
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert [e.detail for e in events(app, action="logout", object_id=str(user_id))] == [{"reason": "user"}]


# --- B6: password storage and policy ---------------------------------------------------------------


def test_b6_only_salted_slow_hashes_and_no_plaintext(app, caplog):
    """B6: scrypt hashes, different for the same password, no plaintext in the database file or the logs."""
    secret = "Plain-Text-Canary-7391"
    caplog.set_level(logging.DEBUG)
    first, second = add_user(app, "twin-a", secret), add_user(app, "twin-b", secret)
    login(app.test_client(), "twin-a", secret)
    login(app.test_client(), "twin-b", "Plain-Text-Wrong-7391")
    with app.extensions["xinshu"].db.sessionmaker() as session:
        hashes = [session.get(User, pk).password_hash for pk in (first, second)]
    assert all(h.startswith("scrypt:") for h in hashes)
    assert hashes[0] != hashes[1]
    assert all(check_password_hash(h, secret) for h in hashes)
    database = Path(app.extensions["xinshu"].db.engine.url.database)
    files = [p for p in database.parent.glob(database.name + "*") if p.is_file()]  # the file, -wal, -shm
    assert database in files
    for path in files:
        content = path.read_bytes()
        assert secret.encode() not in content, path
        assert b"Plain-Text-Wrong" not in content, path
    assert "Plain-Text" not in caplog.text


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Abcdefgh1", False),  # 9 characters
        ("abcdefghij", False),  # one kind
        ("abcdefghi1", False),  # two kinds
        ("correct horse battery staple", False),  # lower case and spaces: two kinds
        ("abcdefgh1!", True),  # lower, digit, other
        ("Abcdefghi1", True),  # lower, upper, digit
        ("ABCDEFGH-1", True),  # upper, other, digit
        ("密码密码Ab-1234", True),  # other (Chinese, '-'), upper, lower, digit
    ],
)
def test_b6_password_policy(password, ok):
    """B6 / MLPS level 3: at least 10 characters of at least 3 kinds."""
    assert (password_problems(password) == []) is ok
    if ok:
        check_password_policy(password)
    else:
        with pytest.raises(WeakPassword):
            check_password_policy(password)


def test_b6_create_user_applies_the_policy(app):
    """B6: create_user refuses a weak password with a message naming the rule (a ValueError)."""
    with app.extensions["xinshu"].db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "s"))
        with pytest.raises(ValueError, match="至少需要10个字符"):
            create_user(session, "weak", "Ab-1", "principal", school)
        with pytest.raises(WeakPassword, match="至少3类"):
            create_user(session, "weak", "abcdefghijkl", "principal", school)
    assert account(app, "weak") is None


# --- B7: redirects ------------------------------------------------------------------------------


OFFSITE_TARGETS = (
    "//evil.example",
    "//evil.example/admin/",
    "javascript:alert(1)",
    "%20javascript%3aalert(1)",
    "\\\\evil.example",
    "/\\evil.example",
    "https://evil.example/",
    "%2F%2Fevil.example",
    "/%09/evil.example",
)


def test_b7_login_never_redirects_off_site(app):
    """B7: after login an off-site or javascript: next goes to the internal default /admin/."""
    add_user(app, "redirected")
    for target in OFFSITE_TARGETS:
        client = app.test_client()
        response = login(client, "redirected", next_url=target)
        assert response.status_code == 302, target
        assert response.headers["Location"] == "/admin/", target
        assert client.get(f"/login?next={target}").headers["Location"] == "/admin/", target  # already logged in
    inside = login(app.test_client(), "redirected", next_url="/admin/plugins/")
    assert inside.headers["Location"] == "/admin/plugins/"
