"""security.md F2: no SQL built from strings.

A second implementation of Semgrep's ``avoid-sqlalchemy-text`` rule (S21),
written against Python's own syntax tree: every call of ``text(...)`` /
``sqlalchemy.text(...)`` / ``sa.text(...)`` and every ``exec_driver_sql(...)``
in the shipped code (``core/``, ``plugins/``, ``admin/``) must take a plain
string literal. An f-string, ``.format``, ``%`` or ``+`` flowing into it is a
finding. The test fails on any finding, so the count printed in the security
summary is always 0 when the suite passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import security_summary

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("core", "plugins", "admin")


def _imports_sqlalchemy_text(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("sqlalchemy")
        and any(alias.name == "text" for alias in node.names)
        for node in ast.walk(tree)
    )


def _is_sql_call(node: ast.Call, text_imported: bool) -> bool:
    """``text(...)`` imported from SQLAlchemy, ``sa.text(...)``/``sqlalchemy.text(...)``, ``exec_driver_sql(...)``."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id == "text" and text_imported
    if isinstance(func, ast.Attribute):
        if func.attr == "exec_driver_sql":
            return True
        return func.attr == "text" and isinstance(func.value, ast.Name) and func.value.id in {"sa", "sqlalchemy"}
    return False


def _is_literal(node: ast.expr) -> bool:
    """A string literal, or literals joined by implicit concatenation (one Constant in the AST)."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def findings_in(source: str, filename: str) -> list[str]:
    """``file:line`` of every SQL call whose first argument is not a string literal."""
    tree = ast.parse(source, filename=filename)
    text_imported = _imports_sqlalchemy_text(tree)
    return [
        f"{filename}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and node.args
        and _is_sql_call(node, text_imported)
        and not _is_literal(node.args[0])
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('from sqlalchemy import text\ntext("SELECT 1")', 0),
        ('sa.text("SELECT * FROM t WHERE id = :id")', 0),
        ('from sqlalchemy import text\ntext(f"SELECT * FROM t WHERE id = {x}")', 1),
        ('from sqlalchemy.sql import text\ntext("SELECT * FROM t WHERE id = {}".format(x))', 1),
        ('sqlalchemy.text("SELECT * FROM t WHERE id = %s" % x)', 1),
        ('sa.text("SELECT * FROM t WHERE id = " + x)', 1),
        ("facts.text(key)", 0),
        ('conn.exec_driver_sql("DROP TABLE " + name)', 1),
    ],
)
def test_the_checker_finds_built_sql(snippet: str, expected: int) -> None:
    assert len(findings_in(snippet, "snippet.py")) == expected


def test_shipped_code_builds_no_sql_from_strings() -> None:
    findings: list[str] = []
    for folder in SHIPPED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            findings += findings_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    security_summary.count("sql_text_findings", len(findings))
    assert findings == []
