"""User management in the back office, 用户管理 (/admin/user/): security.md A8, A10, A12, A13,
B1 (CSRF on every form), B7 (``url=``), and ``xinshu users unlock``.

One application over a real SQLite file per module. Tests that change an account
use accounts of their own (created through :func:`new_principal`), so the order of
the tests does not matter.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from test_web import app_config, csrf_token
from werkzeug.security import check_password_hash

from xinshu.app import create_app
from xinshu.auth import LockoutPolicy, attempt_login, create_user
from xinshu.cli import main
from xinshu.models import AuditEvent, OrgUnit, RoleAssignment, User
from xinshu.orgs import add_org_unit

PASSWORD = "Accounts-test-2026"
NEW_PASSWORD = "Brand-new-Pass-77"
_serial = itertools.count(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """City c → district d1 (school a, class a1), district d2 (school b); accounts by role."""
    app = create_app(app_config(tmp_path_factory.mktemp("accounts")))
    with app.extensions["xinshu"].db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        d1 = add_org_unit(session, "d1", "一区", "district", city)
        d2 = add_org_unit(session, "d2", "二区", "district", city)
        school_a = add_org_unit(session, "a", "一中", "school", d1)
        grade = add_org_unit(session, "a7", "七年级", "grade", school_a)
        class_a1 = add_org_unit(session, "a71", "七年级1班", "class", grade)
        school_b = add_org_unit(session, "b", "二中", "school", d2)
        units = {u.code: u.id for u in (city, d1, d2, school_a, grade, class_a1, school_b)}
        create_user(session, "boss", PASSWORD, "bureau_admin", city)
        create_user(session, "boss2", PASSWORD, "bureau_admin", city)
        create_user(session, "dist1", PASSWORD, "district_admin", d1)
        create_user(session, "dist2", PASSWORD, "district_admin", d2)
        create_user(session, "alice", PASSWORD, "principal", school_a)
        create_user(session, "bob", PASSWORD, "principal", school_b)
        create_user(session, "teacher", PASSWORD, "class_teacher", class_a1)
        mixed = create_user(session, "mixed", PASSWORD, "principal", school_a)
        mixed.roles.append(RoleAssignment(role="principal", org_unit=school_b))
        session.add(User(username="nobody", password_hash="scrypt:32768:8:1$x$y"))
    yield app, units
    app.extensions["xinshu"].db.dispose()


@pytest.fixture
def app(world) -> Flask:
    return world[0]


@pytest.fixture
def units(world) -> dict[str, int]:
    return world[1]


def client_for(app: Flask, username: str):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, username
    return client


def token_of(client, url: str = "/admin/user/") -> str:
    return csrf_token(client.get(url).get_data(as_text=True))


def user(app: Flask, username: str) -> User | None:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        found = session.scalar(select(User).where(User.username == username))
        if found is not None:
            _ = [(a.role, a.org_unit_id) for a in found.roles]  # load the roles
        return found


def roles_of(app: Flask, username: str) -> list[list]:
    return sorted([a.role, a.org_unit_id] for a in user(app, username).roles)


def new_principal(app: Flask, unit_code: str = "a") -> User:
    """A fresh principal of school ``unit_code``."""
    with app.extensions["xinshu"].db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == unit_code))
        return create_user(session, f"p{next(_serial)}", PASSWORD, "principal", school)


def audit_rows(app: Flask, **where) -> list[AuditEvent]:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEvent, name) == value)
        return list(session.scalars(stmt))


def listed(html: str) -> set[str]:
    return set(re.findall(r'<tr id="user-\d+">\s*<td>\d+</td>\s*<td><a href="[^"]+">([^<]+)</a>', html))


def create_data(token: str, units: dict[str, int], **overrides) -> dict[str, str]:
    data = {
        "csrf_token": token,
        "username": f"new{next(_serial)}",
        "display_name": "王老师",
        "email": "wang@school.test",
        "role": "principal",
        "org_unit": str(units["a"]),
        "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
        "expires_on": "",
        "active": "y",
    }
    data.update(overrides)
    return data


# --- who sees whom ----------------------------------------------------------------------------------


def test_only_administrators_open_user_management(app):
    """A principal gets 403; anonymous visitors go to the login page."""
    assert client_for(app, "alice").get("/admin/user/").status_code == 403
    response = app.test_client().get("/admin/user/")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]


def test_list_shows_the_accounts_each_administrator_manages(app):
    """The bureau lists every account but its own; a district admin only accounts wholly inside the district."""
    boss = listed(client_for(app, "boss").get("/admin/user/").get_data(as_text=True))
    assert {"boss2", "dist1", "dist2", "alice", "bob", "teacher", "mixed", "nobody"} <= boss
    assert "boss" not in boss
    district = listed(client_for(app, "dist1").get("/admin/user/").get_data(as_text=True))
    assert {"alice", "teacher"} <= district
    assert not district & {"boss", "boss2", "dist1", "dist2", "bob", "mixed", "nobody"}


def test_a10_the_password_hash_is_never_shown_searched_or_filtered(app):
    """A10: no hash on any page; filter and search parameters cannot reach the hash column."""
    client = client_for(app, "boss")
    alice = user(app, "alice")
    fragment = alice.password_hash.split("$")[1][:8]  # part of the salt
    plain = client.get("/admin/user/").get_data(as_text=True)
    for query in (
        "flt0_password_hash_contains=ab",
        f"flt0_password_hash_contains={fragment}",
        "sort=password_hash",
        "password_hash=scrypt",
    ):
        page = client.get(f"/admin/user/?{query}").get_data(as_text=True)
        assert listed(page) == listed(plain), query  # the parameter is ignored
    for query in ("scrypt", fragment, "32768"):
        page = client.get(f"/admin/user/?q={query}").get_data(as_text=True)
        assert listed(page) == set(), query
        assert 'id="no-users"' in page
    pages = [plain, client.get(f"/admin/user/{alice.id}/").get_data(as_text=True)]
    pages.append(client.get("/admin/user/new/").get_data(as_text=True))
    for html in pages:
        assert "scrypt" not in html and fragment not in html
        assert "password_hash" not in html


# --- create ---------------------------------------------------------------------------------------


def test_bureau_creates_an_account(app, units):
    """A new account gets a scrypt hash of its initial password, its role, and one audited row."""
    client = client_for(app, "boss")
    data = create_data(token_of(client, "/admin/user/new/"), units, expires_on="2027-07-31")
    response = client.post("/admin/user/new/", data=data)
    assert response.status_code == 302
    created = user(app, data["username"])
    assert response.headers["Location"] == f"/admin/user/{created.id}/"
    assert check_password_hash(created.password_hash, NEW_PASSWORD) and created.password_hash.startswith("scrypt:")
    assert roles_of(app, data["username"]) == [["principal", units["a"]]]
    assert (created.display_name, created.email, created.expires_on) == (
        "王老师",
        "wang@school.test",
        dt.date(2027, 7, 31),
    )
    [row] = audit_rows(app, action="create", object_id=str(created.id))
    assert (row.actor, row.object_type, row.outcome) == ("boss", "user", "ok")
    assert row.detail == {
        "op": "create",
        "before": None,
        "after": {"roles": [["principal", units["a"]]], "active": True, "expires_on": "2027-07-31"},
        "changed": ["display_name", "email"],
    }
    assert "王老师" not in str(row.detail) and NEW_PASSWORD not in str(row.detail)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"password": "Short-1", "confirm": "Short-1"}, "至少需要10个字符"),
        ({"password": "onlylowercase", "confirm": "onlylowercase"}, "至少3类"),
        ({"confirm": "Something-else-1"}, "两次输入的密码不一致"),
        ({"username": "a b"}, "用户名为"),
        ({"username": "alice"}, "用户名已存在"),
        ({"email": "not-an-address"}, "电子邮箱格式不正确"),
        ({"role": "class_teacher"}, "该角色不能设在此类机构"),  # school a is not a class
        ({"org_unit": "999999"}, "请选择机构"),
        ({"role": "superuser"}, "请选择角色"),
    ],
)
def test_create_rejects_bad_input(app, units, overrides, message):
    """Policy, confirmation, username, email, role/unit fit: 400 with the reason; nothing created."""
    client = client_for(app, "boss")
    before = len(audit_rows(app, action="create"))
    data = create_data(token_of(client, "/admin/user/new/"), units, **overrides)
    response = client.post("/admin/user/new/", data=data)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    if data["username"] != "alice":
        assert user(app, data["username"]) is None
    assert len(audit_rows(app, action="create")) == before


def test_a8_extra_fields_on_create_are_ignored(app, units):
    """A8: hidden or extra fields on the create form (hash, superuser, counters, id) are not applied."""
    client = client_for(app, "boss")
    extra = {
        "password_hash": "pbkdf2:sha256:1$x$y",
        "is_superuser": "1",
        "failed_logins": "99",
        "locked_until": "2099-01-01 00:00:00",
        "last_login_at": "2020-01-01 00:00:00",
        "id": "4242",
        "roles": "bureau_admin",
    }
    data = create_data(token_of(client, "/admin/user/new/"), units, **extra)
    assert client.post("/admin/user/new/", data=data).status_code == 302
    created = user(app, data["username"])
    assert created.id != 4242
    assert created.password_hash.startswith("scrypt:") and check_password_hash(created.password_hash, NEW_PASSWORD)
    assert (created.failed_logins, created.locked_until, created.last_login_at) == (0, None, None)
    assert roles_of(app, data["username"]) == [["principal", units["a"]]]


# --- A13: district administrators -----------------------------------------------------------------


def _denied_rows(app: Flask) -> list[AuditEvent]:
    return audit_rows(app, action="update", object_type="user", outcome="denied")


def test_a13_district_admin_cannot_grant_beyond_the_district(app, units):
    """A13: a district admin may not create or grant bureau_admin, nor any role outside the district: 403, audited."""
    client = client_for(app, "dist1")
    alice = user(app, "alice")
    denied_before = len(_denied_rows(app))
    attempts = [
        ("/admin/user/new/", create_data(token_of(client), units, role="bureau_admin", org_unit=str(units["c"]))),
        ("/admin/user/new/", create_data(token_of(client), units, role="principal", org_unit=str(units["b"]))),
        ("/admin/user/new/", create_data(token_of(client), units, role="district_admin", org_unit=str(units["d2"]))),
        (f"/admin/user/{alice.id}/roles/", {"grant-role": "bureau_admin", "grant-org_unit": str(units["c"])}),
        (f"/admin/user/{alice.id}/roles/", {"grant-role": "principal", "grant-org_unit": str(units["b"])}),
        (f"/admin/user/{alice.id}/roles/", {"grant-role": "district_admin", "grant-org_unit": str(units["d2"])}),
    ]
    for url, data in attempts:
        data = {"csrf_token": token_of(client), **data}
        assert client.post(url, data=data).status_code == 403, (url, data)
        if url.endswith("/new/"):
            assert user(app, data["username"]) is None
    assert roles_of(app, "alice") == [["principal", units["a"]]]
    denied = _denied_rows(app)[denied_before:]
    assert len(denied) == len(attempts)
    assert {row.actor for row in denied} == {"dist1"}
    assert denied[0].detail == {"op": "create", "role": "bureau_admin", "org_unit_id": units["c"]}


def test_a13_district_admin_cannot_open_accounts_outside_the_district(app):
    """A13: bureau admins, other districts' accounts, accounts spanning districts, role-less accounts and
    one's own account are all 403 for a district admin, for reading and for every change."""
    client = client_for(app, "dist1")
    token = token_of(client)
    for name in ("boss", "dist2", "bob", "mixed", "nobody", "dist1"):
        target = user(app, name)
        assert client.get(f"/admin/user/{target.id}/").status_code == 403, name
        posts = {
            f"/admin/user/{target.id}/": {"display_name": "x", "active": "y"},
            f"/admin/user/{target.id}/password/": {"pw-password": NEW_PASSWORD, "pw-confirm": NEW_PASSWORD},
            f"/admin/user/{target.id}/unlock/": {},
        }
        for url, data in posts.items():
            assert client.post(url, data={"csrf_token": token, **data}).status_code == 403, (name, url)
        assignment = target.roles[0].id if target.roles else 1
        revoke = f"/admin/user/{target.id}/roles/{assignment}/delete/"
        assert client.post(revoke, data={"csrf_token": token}).status_code in (403, 404), name
    assert user(app, "boss").display_name == "" and check_password_hash(user(app, "boss").password_hash, PASSWORD)
    assert roles_of(app, "mixed") == sorted([["principal", user(app, "alice").roles[0].org_unit_id],
                                             ["principal", user(app, "bob").roles[0].org_unit_id]])  # fmt: skip


def test_a13_nobody_edits_their_own_account_here(app):
    """A13: a bureau admin cannot change their own roles or account through this page either."""
    client = client_for(app, "boss")
    boss = user(app, "boss")
    assert client.get(f"/admin/user/{boss.id}/").status_code == 403
    data = {"csrf_token": token_of(client), "display_name": "x", "active": ""}
    assert client.post(f"/admin/user/{boss.id}/", data=data).status_code == 403
    assert user(app, "boss").active is True


def test_district_admin_manages_accounts_inside_the_district(app, units):
    """A district admin creates, edits and grants within the district; the role menu has no bureau_admin."""
    client = client_for(app, "dist1")
    form = client.get("/admin/user/new/").get_data(as_text=True)
    assert '<option value="bureau_admin"' not in form and '<option value="district_admin"' in form
    assert f'<option value="{units["a71"]}"' in form and f'<option value="{units["d1"]}"' in form
    assert f'<option value="{units["b"]}"' not in form and f'<option value="{units["c"]}"' not in form
    data = create_data(token_of(client), units, role="class_teacher", org_unit=str(units["a71"]))
    assert client.post("/admin/user/new/", data=data).status_code == 302
    created = user(app, data["username"])
    grant = {"csrf_token": token_of(client), "grant-role": "psychology_teacher", "grant-org_unit": str(units["a"])}
    assert client.post(f"/admin/user/{created.id}/roles/", data=grant).status_code == 302
    assert roles_of(app, data["username"]) == sorted(
        [["class_teacher", units["a71"]], ["psychology_teacher", units["a"]]]
    )


def test_district_admin_cannot_remove_the_last_role(app, units):
    """A district admin cannot hand an account to the bureau by removing its last role; the bureau can."""
    target = new_principal(app)
    assignment = target.roles[0].id
    client = client_for(app, "dist1")
    response = client.post(f"/admin/user/{target.id}/roles/{assignment}/delete/", data={"csrf_token": token_of(client)})
    assert response.status_code == 302
    assert "最后一个角色" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert roles_of(app, target.username) == [["principal", units["a"]]]
    boss = client_for(app, "boss")
    response = boss.post(f"/admin/user/{target.id}/roles/{assignment}/delete/", data={"csrf_token": token_of(boss)})
    assert response.status_code == 302
    assert roles_of(app, target.username) == []


# --- A12: audited changes ---------------------------------------------------------------------------


def test_a12_role_changes_are_audited_with_before_and_after(app, units):
    """A12: granting and removing a role writes rows with actor, time and the role snapshot before and after."""
    target = new_principal(app)
    client = client_for(app, "boss")
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    grant = {"csrf_token": token_of(client), "grant-role": "psychology_teacher", "grant-org_unit": str(units["a"])}
    assert client.post(f"/admin/user/{target.id}/roles/", data=grant).status_code == 302
    added = next(a for a in user(app, target.username).roles if a.role == "psychology_teacher")
    revoke = f"/admin/user/{target.id}/roles/{added.id}/delete/"
    assert client.post(revoke, data={"csrf_token": token_of(client)}).status_code == 302
    rows = audit_rows(app, action="update", object_id=str(target.id))
    assert [row.detail for row in rows] == [
        {
            "op": "grant",
            "before": {"roles": [["principal", units["a"]]]},
            "after": {"roles": [["principal", units["a"]], ["psychology_teacher", units["a"]]]},
        },
        {
            "op": "revoke",
            "before": {"roles": [["principal", units["a"]], ["psychology_teacher", units["a"]]]},
            "after": {"roles": [["principal", units["a"]]]},
        },
    ]
    boss_id = user(app, "boss").id
    assert all(
        (row.actor, row.actor_id, row.object_type, row.outcome) == ("boss", boss_id, "user", "ok") for row in rows
    )
    assert all(started - dt.timedelta(seconds=1) <= row.at <= started + dt.timedelta(minutes=1) for row in rows)


def test_a12_account_edit_is_audited_without_names(app, units):
    """A12: active and expiry are audited with their values; the display name and email by field name only."""
    target = new_principal(app)
    client = client_for(app, "boss")
    data = {
        "csrf_token": token_of(client),
        "display_name": "李主任",
        "email": "li@school.test",
        "expires_on": "2027-01-31",
    }  # "active" left out: the checkbox is cleared
    assert client.post(f"/admin/user/{target.id}/", data=data).status_code == 302
    changed = user(app, target.username)
    assert (changed.display_name, changed.email, changed.active, changed.expires_on) == (
        "李主任",
        "li@school.test",
        False,
        dt.date(2027, 1, 31),
    )
    [row] = audit_rows(app, action="update", object_id=str(target.id))
    assert row.detail == {
        "op": "edit",
        "before": {"roles": [["principal", units["a"]]], "active": True, "expires_on": None},
        "after": {"roles": [["principal", units["a"]]], "active": False, "expires_on": "2027-01-31"},
        "changed": ["display_name", "email"],
    }
    assert "李主任" not in str(row.detail) and "li@school.test" not in str(row.detail)
    again = client.post(f"/admin/user/{target.id}/", data=data)  # the same values again: nothing to audit
    assert again.status_code == 302
    assert len(audit_rows(app, action="update", object_id=str(target.id))) == 1


def test_a8_extra_fields_on_edit_change_nothing(app, units):
    """A8: an edit POST with username, hash, superuser, counters, roles and ids changes only the form's fields."""
    target = new_principal(app)
    with app.extensions["xinshu"].db.transaction() as session:
        session.get(User, target.id).failed_logins = 3
    original = user(app, target.username)
    client = client_for(app, "boss")
    data = {
        "csrf_token": token_of(client),
        "display_name": "改名",
        "email": "",
        "active": "y",
        "expires_on": "",
        "username": "hacker",
        "password_hash": "pbkdf2:sha256:1$x$y",
        "is_superuser": "1",
        "failed_logins": "0",
        "locked_until": "",
        "last_login_at": "2020-01-01",
        "id": "1",
        "roles": "bureau_admin",
        "role": "bureau_admin",
        "org_unit": str(units["c"]),
        "school_id": str(units["b"]),
    }
    assert client.post(f"/admin/user/{target.id}/", data=data).status_code == 302
    after = user(app, target.username)
    assert after is not None and user(app, "hacker") is None
    assert after.display_name == "改名"
    assert (after.password_hash, after.failed_logins, after.last_login_at, after.id) == (
        original.password_hash,
        3,
        None,
        target.id,
    )
    assert roles_of(app, target.username) == [["principal", units["a"]]]


# --- passwords and lockout ----------------------------------------------------------------------------


def test_reset_password_and_unlock(app, units):
    """A locked account is unlocked (audited), a weak reset is refused, a strong one works; no password in the log."""
    target = new_principal(app)
    db = app.extensions["xinshu"].db
    for _ in range(10):
        attempt_login(db, target.username, "Wrong-pass-1", LockoutPolicy())
    locked = user(app, target.username)
    assert locked.locked_until is not None
    client = client_for(app, "boss")
    page = client.get(f"/admin/user/{target.id}/").get_data(as_text=True)
    assert 'id="unlock-form"' in page
    assert client.post(f"/admin/user/{target.id}/unlock/", data={"csrf_token": token_of(client)}).status_code == 302
    assert user(app, target.username).locked_until is None
    [unlock_row] = [r for r in audit_rows(app, action="update", object_id=str(target.id)) if r.detail["op"] == "unlock"]
    assert unlock_row.detail["before"]["locked_until"] == locked.locked_until.isoformat()
    assert unlock_row.detail["after"]["locked_until"] is None
    assert attempt_login(db, target.username, PASSWORD).ok

    weak = {"csrf_token": token_of(client), "pw-password": "weakpass", "pw-confirm": "weakpass"}
    response = client.post(f"/admin/user/{target.id}/password/", data=weak)
    assert response.status_code == 400 and "至少需要10个字符" in response.get_data(as_text=True)
    strong = {"csrf_token": token_of(client), "pw-password": NEW_PASSWORD, "pw-confirm": NEW_PASSWORD}
    assert client.post(f"/admin/user/{target.id}/password/", data=strong).status_code == 302
    assert attempt_login(db, target.username, NEW_PASSWORD).ok
    assert not attempt_login(db, target.username, PASSWORD).ok
    rows = audit_rows(app, action="update", object_id=str(target.id))
    assert [r.detail["op"] for r in rows] == ["unlock", "reset_password"]
    assert all(NEW_PASSWORD not in str(r.detail) and "weakpass" not in str(r.detail) for r in rows)


def test_cli_unlock(app):
    """``xinshu users unlock`` lifts a lockout and audits it as the command line."""
    target = new_principal(app)
    db = app.extensions["xinshu"].db
    for _ in range(10):
        attempt_login(db, target.username, "Wrong-pass-1")
    url = str(db.engine.url)
    result = CliRunner().invoke(main, ["users", "unlock", target.username, "--database", url])
    assert result.exit_code == 0, result.output
    assert f"unlocked {target.username}" in result.output
    assert user(app, target.username).locked_until is None
    [row] = audit_rows(app, action="update", object_id=str(target.id))
    assert (row.actor, row.actor_id, row.detail["op"]) == ("cli", None, "unlock")
    again = CliRunner().invoke(main, ["users", "unlock", target.username, "--database", url])
    assert again.exit_code == 0 and "was not locked" in again.output
    missing = CliRunner().invoke(main, ["users", "unlock", "no-such-user", "--database", url])
    assert missing.exit_code == 1 and "no user 'no-such-user'" in missing.output


# --- B1 CSRF, B7 redirects --------------------------------------------------------------------------


def test_b1_every_form_needs_the_csrf_token(app, units):
    """B1: each POST of the page without the token is refused with 400 and changes nothing."""
    target = new_principal(app)
    assignment = target.roles[0].id
    client = client_for(app, "boss")
    posts = {
        "/admin/user/new/": create_data("", units),
        f"/admin/user/{target.id}/": {"display_name": "x", "active": ""},
        f"/admin/user/{target.id}/roles/": {"grant-role": "psychology_teacher", "grant-org_unit": str(units["a"])},
        f"/admin/user/{target.id}/roles/{assignment}/delete/": {},
        f"/admin/user/{target.id}/password/": {"pw-password": NEW_PASSWORD, "pw-confirm": NEW_PASSWORD},
        f"/admin/user/{target.id}/unlock/": {},
    }
    rows_before = len(audit_rows(app))
    for url, data in posts.items():
        data = {k: v for k, v in data.items() if k != "csrf_token"}
        assert client.post(url, data=data).status_code == 400, url
    after = user(app, target.username)
    assert (after.display_name, after.active) == ("", True)
    assert check_password_hash(after.password_hash, PASSWORD)
    assert roles_of(app, target.username) == [["principal", units["a"]]]
    assert len(audit_rows(app)) == rows_before


@pytest.mark.parametrize("target", ["%20javascript%3aalert(1)", "//evil.example", "\\\\evil.example", "javascript:x"])
def test_b7_url_parameter_stays_on_site(app, target):
    """B7: the ``url`` to return to after saving is followed only when it is a path on this site."""
    account = new_principal(app)
    client = client_for(app, "boss")
    data = {"csrf_token": token_of(client), "display_name": "x", "active": "y"}
    response = client.post(f"/admin/user/{account.id}/?url={target}", data=data)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/user/{account.id}/"
    inside = client.post(f"/admin/user/{account.id}/?url=/admin/user/", data={**data, "display_name": "y"})
    assert inside.headers["Location"] == "/admin/user/"
