"""Malicious rule files through both upload points (security.md E1–E5; figure 8 "malicious rule files:
code executed = 0, network requests = 0, previous ruleset still active").

The cases themselves, with their exact error messages and line numbers, are tested in
``tests/test_yaml_editor.py`` (E1–E7, the YAML editor ``/admin/yaml/``). This module feeds the
summary: each hostile file is posted by the bureau administrator to the YAML editor (validate,
save, activate with a reason) and to the rule back-test page (``/admin/rules/``), with every
socket connection refused and counted; afterwards no command has run, no connection was tried
and the active rules (declaration digest and file on disk) are the ones from before.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import security_summary
from sec_world import RULE_EXPLAIN, RULES, World, body_text, csrf_token, login

RULES_PATH = "rules/alerts/tiny.yaml"
EDIT = f"/admin/yaml/edit?path={RULES_PATH}"
HIDDEN = r'name="{}" type="hidden" value="([^"]*)"'


def hostile_files(tmp: Path) -> dict[str, str]:
    """Name -> YAML text of each hostile rule file (``tmp`` receives the marker files code would create)."""
    good = RULES % {"explain": RULE_EXPLAIN}
    bomb = "\n".join(
        ["kind: alert_rules", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
            for i in range(9)
        ]
    )
    apply = f'version: !!python/object/apply:os.system ["touch {tmp}/pwn1"]'
    popen = f'version: !!python/object/new:subprocess.Popen [["touch", "{tmp}/pwn2"]]'
    return {
        "python/object/apply": good.replace('version: "t1"', apply),
        "python/object/new": good.replace('version: "t1"', popen),
        "python/name": good.replace('version: "t1"', "version: !!python/name:os.system"),
        "alias bomb": bomb,
        "oversized": good + "# " + "x" * 1_000_001 + "\n",
        "remote $ref": good.replace("when: {scale: total, gte: 2}", 'when: {$ref: "http://169.254.169.254/latest/meta-data"}'),
        "file $ref": good.replace('version: "t1"\n', 'version: "t1"\n$ref: "file:///etc/passwd"\n'),
        "regex pattern": good.replace("  - {id: tiny.high,", '  - {pattern: "(a+)+$", id: tiny.high,'),
        "deep nesting": "kind: alert_rules\nid: deep\nversion: '1'\nrules: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "level 5": good.replace("level: 3", "level: 5"),
        "unknown key": good.replace("  - {id: tiny.high,", "  - {severity: 9, id: tiny.high,"),
    }  # fmt: skip


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempt raises and is counted."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


def post_status(client, url: str, data: dict) -> int:
    """The answer's status; an exception escaping the view (the app runs with TESTING) counts as 500."""
    try:
        return client.post(url, data=data).status_code
    except Exception:
        return 500


def active_state(world: World) -> tuple[str, str]:
    root = Path(world.services.store.roots[0])
    return world.services.declarations.digest, (root / RULES_PATH).read_text(encoding="utf-8")


def test_e1_e5_hostile_rule_files_run_nothing_and_change_nothing(world: World, tmp_path, no_network):
    world.app.config["MAX_FORM_MEMORY_SIZE"] = 3_000_000  # let the oversized file reach the editor's own check
    boss = login(world.app, "boss")
    before = active_state(world)
    files = hostile_files(tmp_path)
    refused = []
    for name, text in files.items():
        page = body_text(boss.get(EDIT))
        hidden = {field: re.search(HIDDEN.format(field), page).group(1) for field in ("base_sha", "reviewed")}
        token = csrf_token(page)
        for button, extra in (("validate", {}), ("save", {}), ("activate", {"reason": "恶意规则测试"})):
            data = {"csrf_token": token, "content": text, button: "1", **hidden, **extra}
            status = post_status(boss, EDIT, data)
            if status not in (400, 413):
                refused.append(f"yaml editor {name} {button} -> {status}")
        page = body_text(boss.get("/admin/rules/"))
        data = {"csrf_token": csrf_token(page), "filename": "tiny.yaml", "text": text, "run": "1"}
        status = post_status(boss, "/admin/rules/", data)
        if status not in (400, 413):
            refused.append(f"back-test {name} -> {status}")
    ran = [path.name for path in tmp_path.iterdir() if path.name.startswith("pwn")]
    changed = active_state(world) != before
    security_summary.count("malicious_rule_files", len(files))
    security_summary.count("rule_code_or_network", len(ran) + len(no_network))
    security_summary.count("ruleset_changed_by_rejected", int(changed))
    assert ran == [] and no_network == []
    assert not changed
    assert refused == []
