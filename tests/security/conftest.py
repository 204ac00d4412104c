"""Shared fixtures of the security suite (tests/security, security.md groups A, B, D, E, F, I).

Each test module builds its own application over a real SQLite file with the seeded world of
:mod:`sec_world` (module scope: hashing passwords and loading declarations is the slow part).
Helpers live in plain modules next to this file (``sec_world``, ``sec_access``, ``sec_sweep``,
``sec_logs``); pytest puts this directory on ``sys.path``.
"""

from __future__ import annotations

import pytest
from sec_world import World, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    """The seeded world of :mod:`sec_world` for one test module."""
    built = build_world(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_")))
    yield built
    built.services.db.dispose()
