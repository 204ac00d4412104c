"""The Alembic migrations build exactly the schema the models declare, on
SQLite and on the real PostgreSQL server (127.0.0.1:5432, database ``test``)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from alembic import command

from xinshu.db import Database
from xinshu.models import OrgUnit

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    """A throw-away PostgreSQL database; skipped when no server answers."""
    pytest.importorskip("psycopg")
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"xinshu_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432: {exc}")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _assert_models_match(db: Database) -> None:
    config = db.alembic_config()
    with db.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises if the models and the migrated schema differ


def test_sqlite_upgrade_matches_models(db_url):
    db = Database(db_url)
    db.upgrade()
    db.upgrade()  # idempotent
    _assert_models_match(db)
    with db.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    db.dispose()


def test_postgresql_upgrade_matches_models_and_keeps_utc(pg_url):
    db = Database(pg_url)
    db.upgrade()
    _assert_models_match(db)
    with db.transaction() as session:  # security.md K1: the same instant back on both backends
        unit = OrgUnit(code="C1", name="市", kind="city", path="/")
        session.add(unit)
    with db.sessionmaker() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(OrgUnit)) == 1
    db.dispose()
    assert dt.datetime(2025, 10, 11, 0, 0) == dt.datetime.fromisoformat("2025-10-11T08:00:00+08:00").astimezone(
        dt.UTC
    ).replace(tzinfo=None)
