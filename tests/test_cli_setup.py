"""A new city from the command line: org units, a user, a roster."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from xinshu.cli import main
from xinshu.db import Database
from xinshu.models import OrgUnit, User


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_org_units_and_user_from_the_cli(db_url):
    assert _run("add-org-unit", "C9", "测试市", "--kind", "city", "--database", db_url).exit_code == 0
    assert (
        _run("add-org-unit", "D9", "测试区", "--kind", "district", "--parent", "C9", "--database", db_url).exit_code
        == 0
    )
    result = _run("add-org-unit", "S9", "测试中学", "--kind", "school", "--parent", "C9", "--database", db_url)
    assert result.exit_code == 1 and "a school must be created under a district" in result.stderr
    assert (
        _run("add-org-unit", "S9", "测试中学", "--kind", "school", "--parent", "D9", "--database", db_url).exit_code
        == 0
    )
    result = _run("add-org-unit", "S9", "重复", "--kind", "school", "--parent", "D9", "--database", db_url)
    assert result.exit_code == 1 and "already used" in result.stderr
    result = _run("add-user", "psy9", "--role", "psychology_teacher", "--org", "S9",
                  "--password", "Long-enough-pw-1", "--database", db_url)  # fmt: skip
    assert result.exit_code == 0, result.output
    result = _run(
        "add-user", "short", "--role", "principal", "--org", "S9", "--password", "short", "--database", db_url
    )
    assert result.exit_code == 1 and "at least 10 characters" in result.stderr
    database = Database(db_url)
    with database.sessionmaker() as session:
        paths = {u.code: u.path for u in session.scalars(select(OrgUnit))}
        assert paths["S9"].startswith(paths["D9"]) and paths["D9"].startswith(paths["C9"])
        user = session.scalar(select(User).where(User.username == "psy9"))
        assert user.password_hash.startswith("scrypt:") and user.roles[0].role == "psychology_teacher"
        assert session.scalar(select(User).where(User.username == "short")) is None
    database.dispose()


def test_plain_path_database_and_env_settings(tmp_path, monkeypatch):
    path = tmp_path / "plain.db"
    result = _run("dispatch", "--database", str(path))
    assert result.exit_code == 0 and result.stdout.strip() == '{"sent": 0, "failed": 0, "dead": 0, "duplicates": 0}'
    assert path.is_file()
    assert "channel 'email' is not configured" in _run("check").stderr
    monkeypatch.setenv("XINSHU_MAIL_SERVER", "127.0.0.1")
    assert "not configured" not in _run("check").stderr


def test_database_errors_are_one_line_not_a_traceback():
    result = _run("dispatch", "--database", "nosuchdialect://x")
    assert result.exit_code == 1
    assert result.stderr.startswith("database error: ") and "Traceback" not in result.output
