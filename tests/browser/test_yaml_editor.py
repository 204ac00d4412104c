"""The YAML editor in a real browser: a schema error is reported with its file and line.

The page (``plugins/declaration_editor.py``): ``/admin/yaml/edit?path=...`` with
``textarea[name=content]`` and ``button[name=validate]``; errors in
``ul#yaml-errors`` as ``file:line: path: message``. The live server's
declaration root is a copy (see conftest.py), so nothing here can touch the
checkout's ``rules/alerts/phq9.yaml``.
"""

from __future__ import annotations

import pytest

from .conftest import PLAYWRIGHT_MISSING
from .seed import BUREAU

pytestmark = pytest.mark.browser
# Without the package (an old environment) the module is skipped; in CI conftest.py fails first.
expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

PATH = "rules/alerts/phq9.yaml"
#: Alert rules for phq9 whose only rule has level 7 (levels are 1-4), on line 7 (counted by hand).
BAD_RULES = """\
kind: alert_rules
id: phq9
version: "2026.9"
instrument: phq9
rules:
  - id: phq9.item9
    level: 7
    when: {critical: phq9_9}
    explain: {zh: 第9题回答大于0}
"""
BAD_LINE = 7


def test_schema_error_is_shown_with_file_and_line(page, login, live_server, shot):
    assert BAD_RULES.splitlines()[BAD_LINE - 1] == "    level: 7"
    login(page, BUREAU)
    page.goto(f"{live_server.url}/admin/yaml/edit?path={PATH}")
    content = page.locator("textarea[name=content]")
    expect(content).to_contain_text("kind: alert_rules")  # the active file is loaded for editing
    content.fill(BAD_RULES)
    shot("edited")
    with page.expect_navigation():
        page.click("button[name=validate]")
    errors = page.locator("ul#yaml-errors li")
    error = errors.filter(has_text=f"phq9.yaml:{BAD_LINE}:")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("level")
    expect(content).to_have_value(BAD_RULES)  # what was typed is kept for correcting
    shot("errors")
