"""Shared fixtures: a real SQLite file per test, the project's declarations,
an org tree, and the path to ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xinshu.orgs import add_org_unit
from xinshu.services import PROJECT_ROOT, build_services

# The project's own tests run with the project's own plugins only, whatever else
# is installed in the environment (e.g. examples/xinshu-example-plugin).
os.environ.setdefault("XINSHU_LOAD_PLUGINS", "xinshu")

DATA_DIR = Path(os.environ.get("XINSHU_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
DPQ_J = DATA_DIR / "nhanes_phq9" / "DPQ_J.csv"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a message when absent."""
    if not DPQ_J.is_file():
        pytest.skip(f"shared data not found at {DATA_DIR} (set XINSHU_SHARED_DATA)")
    return DATA_DIR


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'xinshu.db'}"


@pytest.fixture
def services(db_url: str):
    """Services on a fresh SQLite file with the project's declarations."""
    svc = build_services({"DATABASE_URL": db_url})
    svc.db.create_all()
    yield svc
    svc.db.dispose()


@pytest.fixture
def org(services):
    """city C01 → districts D01, D02 → schools S1 (in D01) and S2 (in D02)."""
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        d1 = add_org_unit(session, "D01", "一区", "district", city)
        d2 = add_org_unit(session, "D02", "二区", "district", city)
        add_org_unit(session, "S1", "一中", "school", d1)
        add_org_unit(session, "S2", "二中", "school", d2)
    return {"city": "C01", "districts": ("D01", "D02"), "schools": ("S1", "S2")}


def pytest_terminal_summary(terminalreporter) -> None:
    """Print the security figures collected by the security tests (tests/security_summary.py)."""
    import security_summary

    terminalreporter.section("xinshu security summary")
    for line in security_summary.lines():
        terminalreporter.write_line(line)
