"""Engine and sessions.

:class:`Database` wraps one SQLAlchemy engine, a session factory and a
request-scoped session (``db.session``, what Flask-Admin uses). SQLite is the
embedded default; on SQLite every transaction begins IMMEDIATE (waits for the write lock
instead of failing mid-transaction) and every connection gets ``journal_mode=WAL``,
``synchronous=FULL`` (a committed answer survives a power cut, security.md
§4.2), ``foreign_keys=ON`` and a busy timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy emit BEGIN itself (the pysqlite recipe), so it can be IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted content is overwritten, not left in free pages (minors' data; erasure and retention).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_begin_immediate(connection) -> None:
    """Take SQLite's write lock at BEGIN: a read-then-write transaction would
    otherwise fail with "database is locked" at once, ignoring the busy timeout,
    when another connection writes meanwhile."""
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One database: ``engine``, ``sessionmaker`` and scoped ``session``."""

    def __init__(self, url: str):
        self.url = url
        _ensure_sqlite_dir(url)
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin_immediate)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self.session = scoped_session(self.sessionmaker)

    def alembic_config(self) -> AlembicConfig:
        """Alembic configuration for this database (scripts in ``xinshu/migrations``)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return config

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` with the Alembic migrations."""
        config = self.alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    def create_all(self) -> None:
        """Create or upgrade the schema (an alias of :meth:`upgrade`, kept for callers)."""
        self.upgrade()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A new session in one transaction: commit on success, else roll back."""
        with self.sessionmaker() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.session.remove()
        self.engine.dispose()
