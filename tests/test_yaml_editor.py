"""The YAML editor (声明编辑, ``/admin/yaml/``): security.md E1–E7, versions, activation.

Same setup as ``test_web_rules.py``: one application over a real SQLite file,
CSRF on, logging in through the form, and a copy of the project's
``instruments/`` and ``rules/`` in ``tmp_path`` as the declaration root, so an
activation writes into the copy, never into the repository.

The data set is three students of school a with one PHQ-9 response each; the
expected levels are worked out by hand from ``rules/alerts/phq9.yaml`` (see
:data:`STUDENTS`).
"""

from __future__ import annotations

import hashlib
import html as htmllib
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from xinshu.alerting import record_response
from xinshu.app import create_app
from xinshu.auth import create_user
from xinshu.declaration_versions import (
    InvalidPath,
    activate_version,
    candidate_set,
    editable_file,
)
from xinshu.errors import DeclarationsInvalid
from xinshu.models import AuditEvent, DeclarationVersion, RiskWarning, RulesetActivation, Student
from xinshu.orgs import add_org_unit
from xinshu.services import PROJECT_ROOT

PASSWORD = "Correct-Horse-Battery-7"
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')
PHQ9 = "rules/alerts/phq9.yaml"
EDIT_PHQ9 = f"/admin/yaml/edit?path={PHQ9}"
XSS = "<img src=x onerror=alert(1)>"
XSS_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def phq9_answers(*values: int) -> dict[str, int]:
    return {f"phq9_{i}": v for i, v in enumerate(values, start=1)}


#: (answers, rules level with the shipped cut-off ``gte: 11``, level with ``gte: 10``).
#: Item 9 is 0 everywhere, totals stay below the moderately severe band (15), and
#: there is one response each (no change rule), so only the cut-off rule can fire.
STUDENTS = [
    (phq9_answers(2, 2, 2, 2, 2, 0, 0, 0, 0), 0, 1),  # total 10
    (phq9_answers(2, 2, 2, 2, 2, 1, 0, 0, 0), 1, 1),  # total 11
    (phq9_answers(2, 2, 2, 2, 1, 0, 0, 0, 0), 0, 0),  # total 9
]
BEFORE = {0: 2, 1: 1, 2: 0, 3: 0, 4: 0}  # counted from the middle column above
AFTER = {0: 1, 1: 2, 2: 0, 3: 0, 4: 0}  # counted from the last column


# --- set-up ------------------------------------------------------------------------


def copy_declarations(tmp: Path) -> Path:
    root = tmp / "decl"
    for folder in ("instruments", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder)
    return root


def make_app(tmp: Path) -> Flask:
    """The app with the data set, a bureau admin ``boss``, a district admin and a psychology teacher."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp / 't.db'}",
            "SECRET_KEY": "test-secret-key-for-yaml-editor",
            "DECLARATION_ROOT": str(copy_declarations(tmp)),
            "WTF_CSRF_ENABLED": True,
            # above the loader's 1 MB so the editor's own size check is reached (Flask's default is 500 kB)
            "MAX_FORM_MEMORY_SIZE": 3_000_000,
        }
    )
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "示范市", "city", None)
        district = add_org_unit(session, "d", "一区", "district", city)
        school = add_org_unit(session, "a", "一中", "school", district)
        klass = add_org_unit(session, "a-1", "七年级1班", "class", school)
        for number, (answers, _before, _after) in enumerate(STUDENTS):
            student = Student(
                school_id=school.id, class_id=klass.id, name=f"学生{number}", gender="F", grade_level=8,
                school_student_no=f"{number:03d}",
            )  # fmt: skip
            session.add(student)
            session.flush()
            record_response(session, services, student, "phq9", answers, {}, "test")
        create_user(session, "boss", PASSWORD, "bureau_admin", city)
        create_user(session, "district", PASSWORD, "district_admin", district)
        create_user(session, "psy", PASSWORD, "psychology_teacher", school)
    return app


@pytest.fixture
def app(tmp_path):
    app = make_app(tmp_path)
    yield app
    app.extensions["xinshu"].db.dispose()


def services_of(app: Flask):
    return app.extensions["xinshu"]


def root_of(app: Flask) -> Path:
    return Path(services_of(app).store.roots[0])


def csrf_token(page: str) -> str:
    match = CSRF_INPUT.search(page)
    assert match, "no csrf_token in page"
    return match.group(1) or match.group(2)


def client_for(app: Flask, username: str):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    assert response.status_code == 302, username
    return client


def hidden(page: str, name: str) -> str:
    match = re.search(rf'id="{name}" name="{name}" type="hidden" value="([^"]*)"', page) or re.search(
        rf'name="{name}" type="hidden" value="([^"]*)"', page
    )
    assert match, name
    return htmllib.unescape(match.group(1))


def post_edit(client, relpath: str, content: str, button: str, page: str | None = None, **fields):
    """POST the editor form of ``relpath`` with ``button`` pressed, carrying the page's hidden fields."""
    page = page if page is not None else client.get(f"/admin/yaml/edit?path={relpath}").get_data(as_text=True)
    data = {
        "csrf_token": csrf_token(page),
        "content": content,
        "base_sha": hidden(page, "base_sha"),
        "reviewed": hidden(page, "reviewed"),
        button: "1",
        **fields,
    }
    return client.post(f"/admin/yaml/edit?path={relpath}", data=data)


def error_items(page: str) -> list[str]:
    """The texts of ``ul#yaml-errors li`` (unescaped, as a browser shows them)."""
    match = re.search(r'<ul id="yaml-errors"[^>]*>(.*?)</ul>', page, re.S)
    if not match:
        return []
    return [htmllib.unescape(item).strip() for item in re.findall(r"<li>(.*?)</li>", match.group(1), re.S)]


def diff_text(page: str) -> str:
    match = re.search(r'<pre id="yaml-diff"[^>]*>(.*?)</pre>', page, re.S)
    assert match, "no pre#yaml-diff"
    return match.group(1)


def table_rows(page: str, table_id: str) -> list[list[str]]:
    match = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', page, re.S)
    assert match, table_id
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", match.group(1), re.S)
    cells = [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in rows]
    return [row for row in cells if row]


def phq9_text() -> str:
    return (PROJECT_ROOT / PHQ9).read_text(encoding="utf-8")


def cutoff_10() -> str:
    text = phq9_text()
    assert text.count("{scale: total, gte: 11}") == 1
    return text.replace("{scale: total, gte: 11}", "{scale: total, gte: 10}")


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def stored_versions(app: Flask, relpath: str = PHQ9) -> list[tuple[str, str, str]]:
    with services_of(app).db.sessionmaker() as session:
        rows = session.scalars(
            select(DeclarationVersion).where(DeclarationVersion.relpath == relpath).order_by(DeclarationVersion.id)
        )
        return [(row.status, row.author, row.sha256) for row in rows]


def cutoff_of(app: Flask) -> dict:
    rules = services_of(app).declarations.rulesets["phq9"].rules
    return next(r for r in rules if r.id == "phq9.adolescent_cutoff").when


def engine_level_for(app: Flask, answers: dict[str, int]) -> int:
    """Record a response for a new student with the running engine; the level it got (0: no warning)."""
    services = services_of(app)
    with services.db.transaction() as session:
        school = session.scalar(select(Student.school_id).limit(1))
        klass = session.scalar(select(Student.class_id).limit(1))
        student = Student(school_id=school, class_id=klass, name="新生", gender="M", grade_level=8)
        session.add(student)
        session.flush()
        record_response(session, services, student, "phq9", answers, {}, "test")
        level = session.scalar(select(func.max(RiskWarning.level)).where(RiskWarning.student_id == student.id))
    return level or 0


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection attempt raises (and is counted)."""
    attempts: list[object] = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


# --- access --------------------------------------------------------------------------


def test_only_the_bureau_admin_may_use_the_editor(app):
    anonymous = app.test_client()
    for url in ("/admin/yaml/", EDIT_PHQ9, "/admin/yaml/new?folder=rules/alerts"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"], url
    for username in ("psy", "district"):
        other = client_for(app, username)
        for url in ("/admin/yaml/", EDIT_PHQ9, "/admin/yaml/new", "/admin/yaml/version/1"):
            assert other.get(url).status_code == 403, (username, url)
        token = csrf_token(other.get("/admin/").get_data(as_text=True))
        data = {"csrf_token": token, "content": cutoff_10(), "activate": "1", "reason": "x"}
        assert other.post(EDIT_PHQ9, data=data).status_code == 403
        assert other.post("/admin/yaml/version/1/restore", data={"csrf_token": token}).status_code == 403
    boss = client_for(app, "boss")
    assert boss.get("/admin/yaml/").status_code == 200
    # no CSRF token: refused before the view runs
    assert boss.post(EDIT_PHQ9, data={"content": cutoff_10(), "save": "1"}).status_code == 400
    assert boss.post(EDIT_PHQ9, data={"content": cutoff_10(), "activate": "1", "reason": "r"}).status_code == 400
    assert stored_versions(app) == []
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == phq9_text()


def test_list_page_groups_files_by_kind_with_version_and_date(app):
    page = client_for(app, "boss").get("/admin/yaml/").get_data(as_text=True)
    expected_groups = ["instruments", "rules/alerts", "rules/interventions", "rules/imports", "rules/interviews"]
    assert re.findall(r'data-folder="([^"]+)"', page) == [*expected_groups, "rules/levels.yaml"]
    for relpath in (PHQ9, "instruments/phq9.yaml", "rules/levels.yaml", "rules/imports/phq9_sheet.yaml"):
        assert f'href="/admin/yaml/edit?path={relpath}"' in page, relpath
    phq9_row = re.search(rf'<tr data-path="{PHQ9}">(.*?)</tr>', page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", phq9_row, re.S)]
    assert cells[1] == "第1版 （上线版本）"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", cells[2])


def test_paths_are_checked_strictly(app):
    boss = client_for(app, "boss")
    bad = [
        "../../etc/passwd",
        "/etc/passwd",
        "rules/alerts/../levels.yaml",
        "rules/alerts/../../../x.yaml",
        "rules/alerts/.hidden.yaml",
        "rules/alerts/x.yml",
        "rules/alerts/sub/x.yaml",
        "rules\\alerts\\x.yaml",
        "norms/x.yaml",
        "rules/x.yaml",
        "rules/alerts/x.yaml\n",
        "rules/alerts/" + "a" * 65 + ".yaml",
        "",
    ]
    token = csrf_token(boss.get("/admin/").get_data(as_text=True))
    for relpath in bad:
        with pytest.raises(InvalidPath):
            editable_file(relpath)
        assert boss.get("/admin/yaml/edit", query_string={"path": relpath}).status_code == 400, relpath
        data = {"csrf_token": token, "content": "kind: levels\n", "save": "1"}
        assert boss.post("/admin/yaml/edit", query_string={"path": relpath}, data=data).status_code == 400
    assert editable_file("rules/levels.yaml").kind == "levels"
    assert editable_file("rules/interviews/standard.yaml").kind == "interview_form"
    assert editable_file("instruments/phq9.yaml").kind == "instrument"
    new = boss.get("/admin/yaml/new", query_string={"folder": "rules/alerts", "filename": "../levels.yaml"})
    assert new.status_code == 400 and "文件名只能含" in new.get_data(as_text=True)
    with services_of(app).db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(DeclarationVersion)) == 0


# --- E1 E2 E4 E5: hostile YAML ------------------------------------------------------


def test_e1_python_tag_is_refused_and_never_runs(app, tmp_path):
    pwn = tmp_path / "pwn"
    text = phq9_text().replace('version: "2026.1"', f'version: !!python/object/apply:os.system ["touch {pwn}"]')
    line = line_of(text, "!!python/object/apply")
    boss = client_for(app, "boss")
    digest = services_of(app).declarations.digest
    for button, extra in (("validate", {}), ("save", {}), ("activate", {"reason": "试图执行代码"})):
        response = post_edit(boss, PHQ9, text, button, **extra)
        assert response.status_code == 400, button
        (message,) = error_items(response.get_data(as_text=True))
        assert message.startswith(
            f"{PHQ9}:{line}: YAML syntax: unknown tag 'tag:yaml.org,2002:python/object/apply:os.system'"
        )
    assert not pwn.exists()
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == phq9_text()
    assert services_of(app).declarations.digest == digest
    # shipped version 1 (active) plus the two refused attempts, kept as rejected versions
    assert [status for status, _author, _sha in stored_versions(app)] == ["active", "rejected", "rejected"]


def test_e2_alias_bomb_and_oversized_file_are_refused_quickly(app):
    bomb = "\n".join(
        ["kind: alert_rules", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
            for i in range(9)
        ]
    )
    boss = client_for(app, "boss")
    started = time.monotonic()
    response = post_edit(boss, PHQ9, bomb, "validate")
    assert time.monotonic() - started < 5
    assert response.status_code == 400
    assert error_items(response.get_data(as_text=True)) == [f"{PHQ9}:2: YAML anchors and aliases are not allowed"]

    big = phq9_text() + "# " + "x" * 1_000_001 + "\n"
    started = time.monotonic()
    response = post_edit(boss, PHQ9, big, "save")
    assert time.monotonic() - started < 5
    assert response.status_code == 400
    assert error_items(response.get_data(as_text=True)) == [f"{PHQ9}:1: file is larger than 1000000 bytes"]
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == phq9_text()
    # the oversized text is not stored: only the shipped version exists
    assert [status for status, _a, _s in stored_versions(app)] == ["active"]
    with services_of(app).db.sessionmaker() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "declaration_version")).one()
        assert (event.action, event.outcome, event.detail["status"], event.detail["errors"]) == (
            "create",
            "failed",
            "rejected",
            1,
        )


def test_e4_remote_and_file_refs_are_data_not_fetched(app, no_network):
    text = phq9_text().replace(
        "    when: {critical: phq9_9}\n", '    when: {$ref: "http://169.254.169.254/latest/meta-data"}\n'
    )
    ref_line = line_of(text, "169.254.169.254")
    text = text.replace('version: "2026.1"\n', 'version: "2026.1"\n$ref: "file:///etc/passwd"\n')
    ref_line += 1  # one line inserted above it
    file_line = line_of(text, "file:///etc/passwd")
    response = post_edit(client_for(app, "boss"), PHQ9, text, "validate")
    assert response.status_code == 400
    errors = error_items(response.get_data(as_text=True))
    assert f"{PHQ9}:{file_line}: $ref: unknown key '$ref'" in errors
    assert any(e.startswith(f"{PHQ9}:{ref_line}: rules[1].when") for e in errors), errors
    assert no_network == []
    assert "root:" not in response.get_data(as_text=True)  # nothing of /etc/passwd


def test_e5_regex_and_deep_nesting_are_bounded(app):
    boss = client_for(app, "boss")
    regex = phq9_text().replace("  - id: phq9.item9\n", '  - id: phq9.item9\n    pattern: "(a+)+$"\n', 1)
    regex = regex.replace("id: phq9\nversion", f"id: {'a' * 50}!\nversion", 1)
    started = time.monotonic()
    response = post_edit(boss, PHQ9, regex, "validate")
    assert time.monotonic() - started < 5
    errors = error_items(response.get_data(as_text=True))
    assert f"{PHQ9}:{line_of(regex, 'pattern:')}: rules[1].pattern: unknown key 'pattern'" in errors
    assert f"{PHQ9}:{line_of(regex, 'a' * 50)}: id: '{'a' * 50}!' does not match '^[a-z][a-z0-9_.-]{{0,63}}$'" in errors

    for deep in (
        "kind: alert_rules\nid: deep\nversion: '1'\nrules: " + "[" * 10_000 + "]" * 10_000 + "\n",
        "kind: alert_rules\nid: deep\nversion: '1'\nrules:\n- id: d\n  level: 1\n  when: "
        + "{all: [" * 10_000
        + "{critical: phq9_9}"
        + "]}" * 10_000
        + "\n",
    ):
        started = time.monotonic()
        response = post_edit(boss, PHQ9, deep, "validate")
        assert time.monotonic() - started < 10
        assert response.status_code == 400
        (message,) = error_items(response.get_data(as_text=True))
        assert re.fullmatch(rf"{PHQ9}:\d+: nested more than 32 levels deep", message), message
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == phq9_text()


# --- E3: invalid rules, the previous version stays in force ----------------------------


def test_e3_invalid_rules_are_listed_with_paths_and_the_active_rules_stay(app):
    shipped = phq9_text()
    cases = {
        "wrong type": (
            shipped.replace("    level: 4\n", "    level: high\n", 1),
            "    level: high",
            "rules[0].level: 'high' is not of type 'integer'",
        ),
        "unknown key": (
            shipped.replace("  - id: phq9.severe\n", "  - id: phq9.severe\n    severity: 3\n", 1),
            "    severity: 3",
            "rules[3].severity: unknown key 'severity'",
        ),
        "duplicate rule id": (
            shipped.replace("  - id: phq9.severe\n", "  - id: phq9.item9\n", 1),
            "  - id: phq9.item9",  # the second one: the first is on an earlier line
            "rules[3].id: duplicate rule id 'phq9.item9' (also in rules/alerts/phq9.yaml)",
        ),
        "threshold above the maximum score": (
            shipped.replace("{scale: total, gte: 11}", "{scale: total, gte: 30}"),
            "    when: {scale: total, gte: 30}",
            "rules[5].when.gte: threshold 30 is outside the possible values 0–27",  # 9 items scored 0-3
        ),
        "level 5": (
            shipped.replace(
                "  - id: phq9.adolescent_cutoff\n    level: 1\n", "  - id: phq9.adolescent_cutoff\n    level: 5\n"
            ),
            "    level: 5",
            "rules[5].level: 5 is greater than the maximum of 4",
        ),
    }
    boss = client_for(app, "boss")
    for name, (text, marker, expected) in cases.items():
        lines = [i for i, line in enumerate(text.splitlines(), start=1) if line == marker]
        line = lines[-1]
        response = post_edit(boss, PHQ9, text, "activate", reason="测试无效规则")
        assert response.status_code == 400, name
        page = response.get_data(as_text=True)
        assert f"{PHQ9}:{line}: {expected}" in error_items(page), (name, error_items(page))
        assert "现行版本不变" in page
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == shipped
    assert cutoff_of(app) == {"scale": "total", "gte": 11}
    # the engine still warns at 11 and not at 10 (shipped cut-off)
    assert engine_level_for(app, phq9_answers(2, 2, 2, 2, 2, 1, 0, 0, 0)) == 1
    assert engine_level_for(app, phq9_answers(2, 2, 2, 2, 2, 0, 0, 0, 0)) == 0
    statuses = [status for status, _a, _s in stored_versions(app)]
    assert statuses == ["active"] + ["rejected"] * len(cases)
    with services_of(app).db.sessionmaker() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "declaration_version").order_by(AuditEvent.id)
        ).all()
        assert [(r.action, r.outcome, r.actor) for r in rows] == [("activate", "failed", "boss")] * len(cases)


# --- E6: versions, back-test, activation, re-activation ---------------------------------


def test_e6_activation_needs_backtest_and_reason_and_keeps_every_version(app):
    services = services_of(app)
    boss = client_for(app, "boss")
    text = cutoff_10()
    with services.db.sessionmaker() as session:
        warnings_before = sorted(session.execute(select(RiskWarning.student_id, RiskWarning.level)).all())
    assert [level for _sid, level in warnings_before] == [1]  # only the total-11 student warns

    # activation without a back-test: refused, nothing stored or written
    refused = post_edit(boss, PHQ9, text, "activate", reason="采用青少年界值10分")
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "须对这一内容完成回测" in page
    assert stored_versions(app) == []
    assert cutoff_of(app) == {"scale": "total", "gte": 11}

    # validate: diff and back-test
    edit_page = boss.get(EDIT_PHQ9).get_data(as_text=True)
    assert htmllib.unescape(
        re.search(r'<textarea name="content"[^>]*>\n(.*?)</textarea>', edit_page, re.S).group(1)
    ) == (phq9_text())
    reviewed = post_edit(boss, PHQ9, text, "validate", page=edit_page)
    assert reviewed.status_code == 200
    page = reviewed.get_data(as_text=True)
    assert error_items(page) == [] and 'id="yaml-valid"' in page
    diff = htmllib.unescape(diff_text(page))
    assert "-    when: {scale: total, gte: 11}\n+    when: {scale: total, gte: 10}" in diff
    assert re.search(r'id="yaml-diff-counts">\+1 −1<', page)
    levels = table_rows(page, "yaml-backtest-levels")
    assert {lv: int(row[1]) for lv, row in enumerate(levels)} == BEFORE
    assert {lv: int(row[2]) for lv, row in enumerate(levels)} == AFTER
    assert "3名在籍学生，1人等级变化" in page
    assert table_rows(page, "yaml-backtest-schools") == [["a", "1", "0"]]

    # the reviewed token is for this text only, and a reason is required
    edited = post_edit(boss, PHQ9, text + "# edited\n", "activate", page=page, reason="改了内容")
    assert edited.status_code == 400 and "须对这一内容完成回测" in edited.get_data(as_text=True)
    no_reason = post_edit(boss, PHQ9, text, "activate", page=page, reason="   ")
    assert no_reason.status_code == 400 and "激活须填写理由" in no_reason.get_data(as_text=True)
    assert stored_versions(app) == []

    reason = "采用青少年界值10分（区教研会决议）"
    done = post_edit(boss, PHQ9, text, "activate", page=page, reason=reason)
    assert done.status_code == 302
    assert "第2版已激活" in boss.get(done.headers["Location"]).get_data(as_text=True)
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == text
    assert cutoff_of(app) == {"scale": "total", "gte": 10}
    assert (PROJECT_ROOT / PHQ9).read_text(encoding="utf-8") == phq9_text()  # the repository is untouched
    assert engine_level_for(app, phq9_answers(2, 2, 2, 2, 2, 0, 0, 0, 0)) == 1  # total 10 now warns

    shipped_sha = hashlib.sha256(phq9_text().encode()).hexdigest()
    new_sha = hashlib.sha256(text.encode()).hexdigest()
    assert stored_versions(app) == [("superseded", "system", shipped_sha), ("active", "boss", new_sha)]
    with services.db.sessionmaker() as session:
        v1, v2 = session.scalars(
            select(DeclarationVersion).where(DeclarationVersion.relpath == PHQ9).order_by(DeclarationVersion.id)
        ).all()
        assert v1.content == phq9_text() and v1.reason == "编辑器首次使用前的现行文件"
        assert (v2.activated_by, v2.reason, v2.kind) == ("boss", reason, "alert_rules")
        assert (v2.backtest["students"], v2.backtest["changed"]) == (3, 1)
        assert v2.backtest["levels_before"] == {str(k): v for k, v in BEFORE.items()}
        assert v2.backtest["levels_after"] == {str(k): v for k, v in AFTER.items()}
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "activate")).one()
        assert (event.actor, event.object_type, event.object_id, event.outcome) == (
            "boss",
            "declaration_version",
            str(v2.id),
            "ok",
        )
        assert event.detail["relpath"] == PHQ9
        assert (event.detail["version_id"], event.detail["active_version_id"]) == (v2.id, v1.id)
        assert (event.detail["sha256"], event.detail["active_sha256"]) == (new_sha, shipped_sha)
        assert (event.detail["added"], event.detail["removed"]) == (1, 1)
        assert "when" not in str(event.detail)  # no file content in the audit row
        (activation,) = session.scalars(select(RulesetActivation)).all()
        assert (activation.activated_by, activation.reason, activation.backtest["changed"]) == ("boss", reason, 1)
        v1_id = v1.id

    # re-activating the shipped version: restore as draft, then the same back-test + reason path
    restored = boss.post(
        f"/admin/yaml/version/{v1_id}/restore",
        data={"csrf_token": csrf_token(boss.get(EDIT_PHQ9).get_data(as_text=True))},
    )
    assert restored.status_code == 302
    draft_page = boss.get(restored.headers["Location"]).get_data(as_text=True)
    assert "已将第1版恢复为草稿" in draft_page
    assert [s for s, _a, _h in stored_versions(app)] == ["superseded", "active", "draft"]
    refused = post_edit(boss, PHQ9, phq9_text(), "activate", page=draft_page, reason="恢复原界值")
    assert refused.status_code == 400 and "须对这一内容完成回测" in refused.get_data(as_text=True)
    assert cutoff_of(app) == {"scale": "total", "gte": 10}
    back = post_edit(boss, PHQ9, phq9_text(), "validate", page=draft_page)
    levels = table_rows(back.get_data(as_text=True), "yaml-backtest-levels")
    # the new student with total 10 was added above: now 4 students; 2 of them at total 10 fall back to 0
    assert {lv: int(row[1]) for lv, row in enumerate(levels)}[1] == 3
    assert {lv: int(row[2]) for lv, row in enumerate(levels)}[1] == 1
    done = post_edit(boss, PHQ9, phq9_text(), "activate", page=back.get_data(as_text=True), reason="恢复原界值")
    assert done.status_code == 302
    assert cutoff_of(app) == {"scale": "total", "gte": 11}
    assert [s for s, _a, _h in stored_versions(app)] == ["superseded", "superseded", "draft", "active"]
    with services.db.sessionmaker() as session:
        after = sorted(session.execute(select(RiskWarning.student_id, RiskWarning.level)).all())
    # past warnings were not re-levelled by either activation (the total-10 student's warning stays)
    assert len(after) == len(warnings_before) + 1 and set(warnings_before) <= set(after)


def test_non_alert_kinds_activate_without_backtest_but_with_a_reason(app):
    services = services_of(app)
    boss = client_for(app, "boss")
    relpath = "rules/interviews/standard.yaml"
    shipped = (PROJECT_ROOT / relpath).read_text(encoding="utf-8")
    text = shipped.replace('version: "2026.1"', 'version: "2026.2"', 1)
    assert text != shipped
    no_reason = post_edit(boss, relpath, text, "activate")
    assert no_reason.status_code == 400 and "激活须填写理由" in no_reason.get_data(as_text=True)
    done = post_edit(boss, relpath, text, "activate", reason="访谈表改版")
    assert done.status_code == 302
    assert services.declarations.interview_forms["standard"].version == "2026.2"
    assert (root_of(app) / relpath).read_text(encoding="utf-8") == text
    assert [s for s, _a, _h in stored_versions(app, relpath)] == ["superseded", "active"]

    # someone else changed the file after this page was loaded: refused, the diff is recomputed
    page = boss.get(f"/admin/yaml/edit?path={relpath}").get_data(as_text=True)
    (root_of(app) / relpath).write_text(shipped, encoding="utf-8")
    stale = post_edit(boss, relpath, text.replace("2026.2", "2026.3"), "activate", page=page, reason="并发修改")
    assert stale.status_code == 400 and "现行版本已被更改" in stale.get_data(as_text=True)
    assert (root_of(app) / relpath).read_text(encoding="utf-8") == shipped

    # levels.yaml is back-tested like alert rules
    levels = (PROJECT_ROOT / "rules/levels.yaml").read_text(encoding="utf-8")
    changed = levels.replace('version: "2026.1"', 'version: "2026.9"', 1)
    assert changed != levels
    refused = post_edit(boss, "rules/levels.yaml", changed, "activate", reason="改版")
    assert refused.status_code == 400 and "须对这一内容完成回测" in refused.get_data(as_text=True)
    assert services.declarations.levels.version == "2026.1"


def test_new_file_and_draft_and_outside_change(app):
    services = services_of(app)
    boss = client_for(app, "boss")
    start = boss.get("/admin/yaml/new", query_string={"folder": "rules/imports", "filename": "phq9_copy.yaml"})
    assert start.status_code == 302 and start.headers["Location"].endswith("path=rules/imports/phq9_copy.yaml")
    relpath = "rules/imports/phq9_copy.yaml"
    page = boss.get(f"/admin/yaml/edit?path={relpath}").get_data(as_text=True)
    assert "新文件：尚无现行版本" in page
    text = (PROJECT_ROOT / "rules/imports/phq9_sheet.yaml").read_text(encoding="utf-8")
    duplicate = post_edit(boss, relpath, text, "validate", page=page)  # same id as phq9_sheet.yaml
    # files load in name order: phq9_copy.yaml comes first, so the shipped file is the duplicate
    line = line_of(text, "id: phq9_sheet")
    assert error_items(duplicate.get_data(as_text=True)) == [
        f"rules/imports/phq9_sheet.yaml:{line}: id: duplicate import profile id 'phq9_sheet' (also in {relpath})"
    ]
    text = text.replace("id: phq9_sheet", "id: phq9_copy")
    saved = post_edit(boss, relpath, text, "save", page=page, reason="草稿说明")
    assert saved.status_code == 302
    assert not (root_of(app) / relpath).exists()  # a draft is not written
    assert "phq9_copy" not in services.declarations.profiles
    assert [s for s, _a, _h in stored_versions(app, relpath)] == ["draft"]
    listing = boss.get("/admin/yaml/").get_data(as_text=True)
    assert re.search(rf'<tr data-path="{relpath}">.*?未激活', listing, re.S)
    done = post_edit(boss, relpath, text, "activate", reason="新增导入配置")
    assert done.status_code == 302
    assert "phq9_copy" in services.declarations.profiles
    assert [s for s, _a, _h in stored_versions(app, relpath)] == ["draft", "active"]

    # a change made outside the editor is recorded as its own version the next time the file is touched
    outside = text.replace('version: "2026.1"', 'version: "2026.5"')
    (root_of(app) / relpath).write_text(outside, encoding="utf-8")
    post_edit(boss, relpath, outside, "save", reason="")
    versions = stored_versions(app, relpath)
    assert [(s, a) for s, a, _h in versions] == [
        ("draft", "boss"),
        ("superseded", "boss"),
        ("active", "system"),
        ("draft", "boss"),
    ]


def test_a_failed_reload_keeps_the_last_good_file_and_rolls_back(app, monkeypatch):
    services = services_of(app)
    file = editable_file(PHQ9)
    candidate_set(services, file, cutoff_10())  # valid on its own

    def broken_reload():
        raise DeclarationsInvalid([])

    monkeypatch.setattr(services.store, "reload", broken_reload)
    with app.app_context(), services.db.sessionmaker() as session, pytest.raises(DeclarationsInvalid):
        activate_version(session, services, file, cutoff_10(), "boss", "测试")
    assert (root_of(app) / PHQ9).read_text(encoding="utf-8") == phq9_text()
    assert cutoff_of(app) == {"scale": "total", "gte": 11}
    assert stored_versions(app) == []
    with services.db.sessionmaker() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.action == "activate")).all() == []
    leftovers = [p.name for p in (root_of(app) / "rules" / "alerts").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_candidate_set_refuses_oversized_text_without_parsing(app):
    with pytest.raises(DeclarationsInvalid) as caught:
        candidate_set(services_of(app), editable_file(PHQ9), "a" * 1_000_001)
    assert [str(e) for e in caught.value.errors] == [f"{PHQ9}:1: file is larger than 1000000 bytes"]


# --- E7: escaping ------------------------------------------------------------------------


def test_e7_labels_are_escaped_in_editor_diff_and_versions(app):
    boss = client_for(app, "boss")
    text = phq9_text().replace("zh: 第9题（死亡/自伤念头）回答大于0，无论总分多少都必须预警", f'zh: "{XSS}"', 1)
    assert XSS in text
    validated = post_edit(boss, PHQ9, text, "validate")
    assert validated.status_code == 200
    page = validated.get_data(as_text=True)
    assert XSS not in page
    assert XSS_ESCAPED in diff_text(page)
    assert f"+      zh: &#34;{XSS_ESCAPED}&#34;" in diff_text(page) or f'+      zh: "{XSS_ESCAPED}"' in diff_text(page)
    saved = post_edit(boss, PHQ9, text, "save", reason=XSS)
    assert saved.status_code == 302
    editor = boss.get(saved.headers["Location"]).get_data(as_text=True)
    assert XSS not in editor
    rows = table_rows(editor, "yaml-versions")
    assert [row[:3] for row in rows] == [["第2版", "草稿", "boss"], ["第1版", "现行", "system"]]
    assert rows[0][4] == XSS_ESCAPED  # the note, escaped in the version list
    with services_of(app).db.sessionmaker() as session:
        draft_id = session.scalars(select(DeclarationVersion.id).where(DeclarationVersion.status == "draft")).one()
    for url in (f"/admin/yaml/version/{draft_id}", f"/admin/yaml/version/{draft_id}/diff", "/admin/yaml/"):
        shown = boss.get(url)
        assert shown.status_code == 200, url
        assert XSS not in shown.get_data(as_text=True), url
    assert XSS_ESCAPED in boss.get(f"/admin/yaml/version/{draft_id}").get_data(as_text=True)
    # an id echoed back in an error message is escaped too
    bad_id = phq9_text().replace("id: phq9\nversion", f"id: '{XSS}'\nversion", 1)
    page = post_edit(boss, PHQ9, bad_id, "validate").get_data(as_text=True)
    assert XSS not in page
    assert any(XSS in message for message in error_items(page))


def test_invalid_yaml_is_listed_with_file_and_line_and_crlf_is_normalised(app):
    boss = client_for(app, "boss")
    broken = "kind: alert_rules\nid: phq9\nversion: '1'\nrules: [\n  {id: x\n"
    page = post_edit(boss, PHQ9, broken, "validate").get_data(as_text=True)
    (message,) = error_items(page)
    assert re.match(rf"{re.escape(PHQ9)}:[4-6]: YAML syntax: ", message), message  # the unclosed flow sequence
    shown = boss.get(EDIT_PHQ9 + "&version=999999")
    assert shown.status_code == 404
    assert boss.get(EDIT_PHQ9 + "&version=99999999999999").status_code == 404

    crlf = cutoff_10().replace("\n", "\r\n")
    saved = post_edit(boss, PHQ9, crlf, "save")
    assert saved.status_code == 302
    draft_sha = hashlib.sha256(cutoff_10().encode()).hexdigest()  # stored with \n line ends
    assert stored_versions(app)[-1] == ("draft", "boss", draft_sha)
    loaded = boss.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'id="yaml-loaded"' in loaded and "第2版（草稿）" in loaded
