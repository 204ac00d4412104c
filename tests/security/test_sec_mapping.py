"""The case → test mapping of ``tests/security/README.md`` is complete and names existing tests.

Every case id of security.md groups A (A1–A13), B (B1–B8), D (D1–D4), E (E1–E7), F (F1–F3)
and I (I1–I5) has a row, and every ``path::function`` named in the table is a test function
defined at module level in that file (found with :mod:`ast`, without importing it).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
README = HERE / "README.md"
GROUPS = {"A": 13, "B": 8, "D": 4, "E": 7, "F": 3, "I": 5}
ROW = re.compile(r"^\| ([A-Z]\d+) \| (.+) \|$")
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def mapping() -> dict[str, str]:
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows"
            rows[match.group(1)] = match.group(2)
    return rows


@cache
def functions_in(path: str) -> frozenset[str]:
    tree = ast.parse((PROJECT / path).read_text(encoding="utf-8"), filename=path)
    return frozenset(
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    )


def test_every_case_id_has_a_row():
    expected = {f"{group}{n}" for group, count in GROUPS.items() for n in range(1, count + 1)}
    assert set(mapping()) == expected


def test_every_row_names_a_test_or_says_why_not():
    for case, cell in mapping().items():
        assert TEST_ID.search(cell), f"{case} names no test"


def test_every_named_test_exists():
    missing = []
    for case, cell in mapping().items():
        for path, name in TEST_ID.findall(cell):
            if not (PROJECT / path).is_file() or name not in functions_in(path):
                missing.append(f"{case}: {path}::{name}")
    assert missing == []


def test_every_security_test_is_mapped():
    """The other way round: each test of tests/security (but this file) serves at least one case."""
    named = {(path, name) for cell in mapping().values() for path, name in TEST_ID.findall(cell)}
    unmapped = []
    for file in sorted(HERE.glob("test_*.py")):
        path = str(file.relative_to(PROJECT))
        if file.name == Path(__file__).name:
            continue
        unmapped += [f"{path}::{n}" for n in sorted(functions_in(path)) if (path, n) not in named]
    allowed = {
        "tests/security/test_sec_route_matrix.py::test_every_route_has_an_expected_access",
        "tests/security/test_sec_route_matrix.py::test_allowed_pages_open_for_their_users",
        "tests/security/test_sec_route_matrix.py::test_no_server_errors",
        "tests/security/test_sec_route_matrix.py::test_sweep_covers_every_record_kind",
        "tests/security/test_sec_audit_coverage.py::test_the_sensitive_list_names_existing_routes",
    }
    assert sorted(set(unmapped) - allowed) == []
