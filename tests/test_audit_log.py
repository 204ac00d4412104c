"""The audit log (security.md I2, I3, F1, A12): append-only in the database, kept at least
183 days, and the read-only back-office page 审计日志 (/admin/audit/).

I2 is checked through the ORM on SQLite and with plain SQL on the real PostgreSQL
server (127.0.0.1:5432, database ``test``, a throw-away schema per test).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import select
from test_web import app_config, csrf_token

from xinshu.app import create_app
from xinshu.audit import purge_audit, record
from xinshu.auth import create_user
from xinshu.cli import main
from xinshu.db import Database
from xinshu.models import AuditEvent, utcnow
from xinshu.orgs import add_org_unit

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "Audit-log-2026"
SQL_ERROR_WORDS = ("syntax error", "OperationalError", "ProgrammingError", "sqlite3", "psycopg", "Traceback")


@pytest.fixture
def pg_db():
    """A :class:`Database` on a fresh schema of the PostgreSQL ``test`` database, migrated; dropped afterwards."""
    pytest.importorskip("psycopg")
    schema = f"xinshu_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.schema.CreateSchema(schema))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432: {exc}")
    db = Database(f"{PG_ADMIN}?options=-csearch_path%3D{schema}")
    try:
        db.upgrade()
        yield db
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def aged(days: int, now: dt.datetime, **fields) -> AuditEvent:
    """An audit row written ``days`` days before ``now``."""
    return AuditEvent(at=now - dt.timedelta(days=days), action="read", object_type="student", object_id=str(days),
                      actor="t", **fields)  # fmt: skip


# --- I2: append-only --------------------------------------------------------------------------


def test_i2_sqlite_refuses_update_and_delete_through_the_orm(db_url):
    """I2: on SQLite the ORM cannot change an audit row or delete a young one (migration 0004 triggers)."""
    db = Database(db_url)
    db.upgrade()
    with db.transaction() as session:
        session.add(aged(1, utcnow()))
    with db.sessionmaker() as session:
        row = session.scalar(select(AuditEvent))
        row.outcome = "denied"
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            session.commit()
        session.rollback()
        session.delete(session.scalar(select(AuditEvent)))
        with pytest.raises(sa.exc.DBAPIError, match="183 days"):
            session.commit()
    with db.sessionmaker() as session:
        assert [(e.outcome, e.object_id) for e in session.scalars(select(AuditEvent))] == [("ok", "1")]
    db.dispose()


def test_i2_postgresql_refuses_update_delete_truncate(pg_db):
    """I2: on PostgreSQL UPDATE, DELETE (of a young row) and TRUNCATE of audit_event are refused."""
    with pg_db.transaction() as session:
        session.add(aged(1, utcnow()))
    statements = {
        "UPDATE audit_event SET outcome = 'denied'": "append-only",
        "DELETE FROM audit_event": "183 days",
        "TRUNCATE audit_event": "183 days",
    }
    for statement, message in statements.items():
        with pg_db.engine.connect() as connection:
            with pytest.raises(sa.exc.DBAPIError, match=message):
                connection.execute(sa.text(statement))
            connection.rollback()
    with pg_db.sessionmaker() as session:
        row = session.scalar(select(AuditEvent))
        row.actor = "someone-else"
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            session.commit()
    with pg_db.sessionmaker() as session:
        assert [(e.outcome, e.actor) for e in session.scalars(select(AuditEvent))] == [("ok", "t")]


def test_i3_postgresql_purges_only_old_rows(pg_db):
    """I3 on PostgreSQL: rows 179/181/400 days old, keep 183 days → only the 400-day row goes."""
    now = utcnow()
    with pg_db.transaction() as session:
        session.add_all([aged(179, now), aged(181, now), aged(400, now)])
    with pg_db.transaction() as session:
        assert purge_audit(session, keep_days=183, now=now) == 1
    with pg_db.sessionmaker() as session:
        assert sorted(session.scalars(select(AuditEvent.object_id))) == ["179", "181"]


# --- I3: retention ----------------------------------------------------------------------------


def test_i3_purge_keeps_six_months(db_url):
    """I3: rows 179/181/400 days old, keep 183 days → only the 400-day row is deleted; 180 days is refused."""
    db = Database(db_url)
    db.upgrade()
    now = utcnow()
    with db.transaction() as session:
        session.add_all([aged(179, now), aged(181, now), aged(400, now)])
    with db.transaction() as session, pytest.raises(ValueError, match="at least 183 days"):
        purge_audit(session, keep_days=180, now=now)
    with db.transaction() as session:
        assert purge_audit(session, keep_days=183, now=now) == 1
    with db.sessionmaker() as session:
        assert sorted(session.scalars(select(AuditEvent.object_id))) == ["179", "181"]
    with db.engine.begin() as connection, pytest.raises(sa.exc.DBAPIError, match="183 days"):
        connection.execute(sa.text("DELETE FROM audit_event"))  # the database refuses too
    db.dispose()


def test_i3_cli_purge(db_url):
    """I3: ``xinshu audit purge`` refuses fewer than 183 days, deletes older rows and audits itself."""
    db = Database(db_url)
    db.upgrade()
    now = utcnow()
    with db.transaction() as session:
        session.add_all([aged(100, now), aged(200, now), aged(500, now)])
    refused = CliRunner().invoke(main, ["audit", "purge", "--keep-days", "182", "--database", db_url])
    assert refused.exit_code == 2 and "at least 183 days" in refused.output
    result = CliRunner().invoke(main, ["audit", "purge", "--keep-days", "183", "--database", db_url])
    assert result.exit_code == 0, result.output
    assert "deleted 2 audit rows" in result.output  # 200 and 500 days old
    with db.sessionmaker() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [r.object_id for r in rows[:1]] == ["100"]
    assert (rows[-1].action, rows[-1].object_type, rows[-1].actor) == ("retention", "audit_log", "cli")
    assert rows[-1].detail == {"keep_days": 183, "deleted": 2}
    db.dispose()


# --- the 审计日志 page ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """City → districts d1 (school a), d2 (school b); a bureau admin, two district admins, two principals;
    audit rows by each."""
    app = create_app(app_config(tmp_path_factory.mktemp("audit")))
    db = app.extensions["xinshu"].db
    with db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        d1 = add_org_unit(session, "d1", "一区", "district", city)
        d2 = add_org_unit(session, "d2", "二区", "district", city)
        school_a = add_org_unit(session, "a", "一中", "school", d1)
        school_b = add_org_unit(session, "b", "二中", "school", d2)
        users = {
            "boss": create_user(session, "boss", PASSWORD, "bureau_admin", city),
            "dist1": create_user(session, "dist1", PASSWORD, "district_admin", d1),
            "dist2": create_user(session, "dist2", PASSWORD, "district_admin", d2),
            "alice": create_user(session, "alice", PASSWORD, "principal", school_a),
            "bob": create_user(session, "bob", PASSWORD, "principal", school_b),
        }
        ids = {name: user.id for name, user in users.items()}
        # 2026-01-10 15:30 UTC is 23:30 on 2026-01-10 in Shanghai; 16:30 UTC is 00:30 on 2026-01-11.
        record(session, "export", "student", "11", actor=users["alice"], detail={"rows": 3})
        session.flush()
        late = AuditEvent(at=dt.datetime(2026, 1, 10, 15, 30), action="read", object_type="case", object_id="7",
                          actor="alice", actor_id=ids["alice"], detail={})  # fmt: skip
        early = AuditEvent(at=dt.datetime(2026, 1, 10, 16, 30), action="read", object_type="case", object_id="8",
                           actor="bob", actor_id=ids["bob"], detail={})  # fmt: skip
        session.add_all([late, early])
        record(session, "break_glass", "student", "12", actor=users["bob"], detail={"reason": "x"})
        for n in range(60):  # enough rows for two pages
            record(session, "read", "case", str(100 + n), actor=users["bob"])
    yield app, ids
    db.dispose()


def client_for(app: Flask, username: str):
    client = app.test_client()
    page = client.get("/login")
    token = csrf_token(page.get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def rows_on(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', html)]


def all_events(app: Flask, **where) -> list[AuditEvent]:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEvent, name) == value)
        return list(session.scalars(stmt))


def test_audit_page_is_for_administrators_only(world):
    """A1: anonymous visitors go to the login page, a principal gets 403."""
    app, _ids = world
    response = app.test_client().get("/admin/audit/")
    assert response.status_code == 302 and "/login?next=" in response.headers["Location"]
    assert client_for(app, "alice").get("/admin/audit/").status_code == 403


def test_audit_page_is_read_only(world):
    """The audit log has one route, GET only: no create, edit or delete."""
    app, _ids = world
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin/audit")]
    assert [(rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"})) for rule in rules] == [("/admin/audit/", ["GET"])]
    client = client_for(app, "boss")
    token = csrf_token(client.get("/admin/").get_data(as_text=True))
    assert client.post("/admin/audit/", data={"csrf_token": token}).status_code == 405
    for path in ("/admin/audit/new/", "/admin/audit/edit/?id=1", "/admin/audit/delete/"):
        assert client.post(path, data={"csrf_token": token}).status_code == 404, path


def test_bureau_sees_all_rows_and_the_view_is_audited(world):
    """The bureau sees every row, 50 a page, newest first; each view writes a read/audit_log row first."""
    app, ids = world
    client = client_for(app, "boss")
    before = len(all_events(app))
    html = client.get("/admin/audit/").get_data(as_text=True)
    every = [e.id for e in sorted(all_events(app), key=lambda e: (e.at, e.id), reverse=True)]
    assert rows_on(html) == every[:50]
    assert len(all_events(app)) == before + 1  # the view's own row, written before the query
    own = all_events(app, object_type="audit_log")[-1]
    assert (own.action, own.actor_id, own.outcome) == ("read", ids["boss"], "ok")
    assert own.detail == {"filters": {}, "sort": "at", "page": 1}
    second = client.get("/admin/audit/?page=2").get_data(as_text=True)
    assert rows_on(second) == [e.id for e in sorted(all_events(app), key=lambda e: (e.at, e.id), reverse=True)][50:100]


def test_district_sees_rows_of_its_own_accounts(world):
    """A district admin sees rows whose actor is an account of the district (alice, themselves), no others."""
    app, ids = world
    client = client_for(app, "dist1")
    html = client.get("/admin/audit/?actor=alice").get_data(as_text=True)
    alice_rows = [e.id for e in all_events(app, actor_id=ids["alice"])]
    assert sorted(rows_on(html)) == sorted(alice_rows)
    assert client.get("/admin/audit/?actor=bob").get_data(as_text=True).count('<tr id="event-') == 0
    everything = client.get("/admin/audit/?page=1").get_data(as_text=True)
    district_actors = {ids["alice"], ids["dist1"]}
    shown = {e.actor_id for e in all_events(app) if e.id in rows_on(everything)}
    assert shown <= district_actors and ids["alice"] in shown


def test_filters_and_shanghai_dates(world):
    """Filters by action, object type and id, actor; the date range is in Asia/Shanghai days."""
    app, ids = world
    client = client_for(app, "boss")
    on_10th = client.get("/admin/audit/?since=2026-01-10&until=2026-01-10").get_data(as_text=True)
    late = all_events(app, object_id="7", object_type="case")[0]
    early = all_events(app, object_id="8", object_type="case")[0]
    assert rows_on(on_10th) == [late.id]  # 23:30 Shanghai on the 10th; the other is 00:30 on the 11th
    assert "2026-01-10 23:30:00" in on_10th
    on_11th = client.get("/admin/audit/?since=2026-01-11&until=2026-01-11").get_data(as_text=True)
    assert rows_on(on_11th) == [early.id]
    assert "2026-01-11 00:30:00" in on_11th
    glass = client.get("/admin/audit/?action=break_glass&object_type=student&object_id=12").get_data(as_text=True)
    assert rows_on(glass) == [e.id for e in all_events(app, action="break_glass")]
    exports = client.get("/admin/audit/?action=export&actor=alice").get_data(as_text=True)
    assert rows_on(exports) == [e.id for e in all_events(app, action="export", actor_id=ids["alice"])]
    last = all_events(app, object_type="audit_log")[-1]
    assert last.detail["filters"] == {"action": "export", "actor": "alice"}


@pytest.mark.parametrize(
    "query",
    [
        "sort=1,extractvalue(0x0a,concat(0x0a,(SELECT @@version)))--",
        "sort=password_hash",
        "sort=id;DROP TABLE audit_event",
        "sort=at&desc=0&page=-3",
        "page=99999999999999999999",
        "since=2026-13-45&until=not-a-date",
        "object_id=' OR 1=1 --",
    ],
)
def test_f1_unknown_sort_and_bad_parameters_are_ignored(world, query):
    """F1: unknown sort columns and bad parameters are ignored: 200, no SQL error text, rows still shown."""
    app, _ids = world
    response = client_for(app, "boss").get(f"/admin/audit/?{query}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for word in SQL_ERROR_WORDS:
        assert word not in html
    assert all_events(app, action="read", object_type="audit_log")[-1].detail["sort"] == "at"


def test_sort_by_a_whitelisted_column(world):
    """Sorting by actor ascending orders rows by actor name, then id."""
    app, _ids = world
    html = client_for(app, "boss").get("/admin/audit/?sort=actor&desc=0").get_data(as_text=True)
    expected = [e.id for e in sorted(all_events(app), key=lambda e: (e.actor, e.id))]
    assert rows_on(html) == expected[:50]


def test_values_are_escaped(world):
    """Detail values are shown as escaped text."""
    app, _ids = world
    with app.extensions["xinshu"].db.transaction() as session:
        record(session, "update", "user", "1", actor="cli", detail={"note": "<script>alert(1)</script>"})
    html = client_for(app, "boss").get("/admin/audit/?actor=cli").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
