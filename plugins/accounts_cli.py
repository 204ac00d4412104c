"""The accounts plugin's commands (registered by :func:`xinshu.plugins.accounts.register_commands`):
``xinshu users unlock USERNAME`` and ``xinshu audit purge --keep-days N`` (N ≥ 183; the database
refuses younger deletions too). Both are audited with the actor ``cli``.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from xinshu.account_changes import unlock_account
from xinshu.audit import AUDIT_MIN_DAYS, purge_audit, record
from xinshu.models import User, utcnow

#: Actor of audit rows written by the command line.
CLI_ACTOR = "cli"


def _open_database(url: str | None) -> Any:
    from xinshu.db import Database
    from xinshu.services import config_from_env, database_url, default_database_url

    config = config_from_env({"DATABASE_URL": url} if url else {})
    db = Database(database_url(config.get("DATABASE_URL") or default_database_url()))
    db.upgrade()
    return db


@click.group("users")
def users_cli() -> None:
    """Staff accounts."""


@users_cli.command("unlock")
@click.argument("username")
@click.option("--database", help="Database URL.")
def users_unlock(username: str, database: str | None) -> None:
    """Lift USERNAME's lockout after too many failed logins (audited)."""
    db = _open_database(database)
    try:
        with db.transaction() as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise click.ClickException(f"no user {username!r}")
            changed = unlock_account(session, user, actor=CLI_ACTOR)
    finally:
        db.dispose()
    click.echo(f"unlocked {username}" if changed else f"{username} was not locked")


@click.group("audit")
def audit_cli() -> None:
    """The audit log."""


@audit_cli.command("purge")
@click.option("--keep-days", type=int, required=True, help=f"Keep rows of the last N days (N ≥ {AUDIT_MIN_DAYS}).")
@click.option("--database", help="Database URL.")
def audit_purge(keep_days: int, database: str | None) -> None:
    """Delete audit rows older than --keep-days days (never fewer than 183; audited)."""
    if keep_days < AUDIT_MIN_DAYS:
        raise click.BadParameter(
            f"audit rows are kept at least {AUDIT_MIN_DAYS} days (CSL Art. 21), not {keep_days}",
            param_hint="--keep-days",
        )
    db = _open_database(database)
    try:
        with db.transaction() as session:
            deleted = purge_audit(session, keep_days, now=utcnow())
            record(
                session,
                "retention",
                "audit_log",
                "",
                detail={"keep_days": keep_days, "deleted": deleted},
                actor=CLI_ACTOR,
            )
    finally:
        db.dispose()
    click.echo(f"deleted {deleted} audit rows older than {keep_days} days")
