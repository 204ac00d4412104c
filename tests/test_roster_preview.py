"""Roster preview and confirmation (core): classification, nothing written, the same plan applied.

A school S1 first imports four students (row 2–5 of ``first.xlsx``):

    s0 七年级1班, s1 七年级1班, s2 七年级1班, s3 七年级2班

then ``second.xlsx`` lists s0 as it was, s1 with a new name, s2 in 2班, two new
students (n1 in 1班, n2 in 3班) and leaves s3 out. By hand: 2 new, 1 changed
(field ``name``), 1 moved (1班 → 2班), 1 unchanged, 1 missing (s3), 1 class to
create (七年级3班). ID numbers are made with the GB 11643-1999 weights written
out in tests/test_rosters.py, not by the code under test.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from test_rosters import fictional_id, write_xlsx

from xinshu.app import create_app
from xinshu.auth import create_user
from xinshu.class_units import ClassUnits
from xinshu.cli import main
from xinshu.errors import ImportRejected
from xinshu.models import AuditEvent, Base, Enrolment, ImportBatch, OrgUnit, Student
from xinshu.orgs import add_org_unit
from xinshu.rosters import RosterChanged, import_roster, preview_roster
from xinshu.school_years import entry_year_for, school_year_of

HEADER = ["姓名", "性别", "身份证号", "年级", "班级"]
YEAR = "2026-2027"


def person(i: int) -> dict:
    """Fictional student i: odd sequence numbers are boys (17th digit odd)."""
    sequence = 200 + 2 * i + 1
    return {"name": f"学生{i}", "gender": "男", "id": fictional_id("110101", f"201301{1 + i % 28:02d}", sequence)}


S = [person(i) for i in range(4)]
N = [person(i) for i in (10, 11)]


def row(p: dict, klass: str, name: str | None = None) -> list:
    return [name or p["name"], p["gender"], p["id"], "七年级", klass]


FIRST = [row(S[0], "1班"), row(S[1], "1班"), row(S[2], "1班"), row(S[3], "2班")]
SECOND = [row(S[0], "1班"), row(S[1], "1班", "学生一改名"), row(S[2], "2班"), row(N[0], "1班"), row(N[1], "3班")]


@pytest.fixture
def school(services, org, tmp_path):
    """S1 with the four students of FIRST imported for 2026-2027; returns their ids by ID number."""
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "first.xlsx", HEADER, FIRST), "S1", school_year=YEAR)
    with services.db.sessionmaker() as session:
        return dict(session.execute(select(Student.id_number, Student.id)).all())


def table_counts(services) -> dict[str, int]:
    """Row count of every table of the schema."""
    with services.db.sessionmaker() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_preview_classifies_every_row(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    with services.db.sessionmaker() as session:
        plan = preview_roster(session, path, "S1", school_year=YEAR)
        class_1 = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "S1-G07-C01"))
        class_2 = session.scalar(select(OrgUnit.id).where(OrgUnit.code == "S1-G07-C02"))
    assert plan.counts() == {
        "new": 2, "changed": 1, "moved": 1, "unchanged": 1, "missing": 1, "rows": 5, "classes_to_create": 1,
    }  # fmt: skip
    assert [(r.row, r.kind) for r in plan.rows] == [(2, "unchanged"), (3, "changed"), (4, "moved"), (5, "new"),
                                                    (6, "new")]  # fmt: skip
    changed, moved = plan.of_kind("changed")[0], plan.of_kind("moved")[0]
    assert (changed.student_id, changed.fields) == (school[S[1]["id"]], ("name",))
    assert (moved.student_id, moved.fields, moved.old_class_id, moved.class_number) == (
        school[S[2]["id"]],
        (),
        class_1,
        2,
    )
    assert [(m.student_id, m.class_id) for m in plan.missing] == [(school[S[3]["id"]], class_2)]
    assert plan.classes_to_create == ["S1-G07-C03"]
    assert not plan.already_imported
    # repr (what a log line would show) carries no names or ID numbers
    assert "学生" not in repr(plan) and S[0]["id"] not in repr(plan) and "学生" not in repr(plan.rows[0])


def test_preview_writes_nothing(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    before = table_counts(services)
    with services.db.transaction() as session:  # even a committed transaction: the preview added nothing
        preview_roster(session, path, "S1", school_year=YEAR)
        assert not session.new and not session.dirty and not session.deleted
    assert table_counts(services) == before


def test_confirm_writes_exactly_the_preview(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    with services.db.sessionmaker() as session:
        plan = preview_roster(session, path, "S1", school_year=YEAR)
    before = table_counts(services)
    with services.db.transaction() as session:
        result = import_roster(
            session, path, "S1", school_year=YEAR, actor="tester", expected_fingerprint=plan.fingerprint
        )
    assert (result.created, result.changed, result.moved, result.unchanged, result.missing, result.marked_left) == (
        2, 1, 1, 1, 1, 0,
    )  # fmt: skip
    after = table_counts(services)
    # 2 new students; enrolments: 2 opened for them + 1 opened for the move; 1 class; 1 batch; 1 audit row.
    expected = {**before, "student": before["student"] + 2, "enrolment": before["enrolment"] + 3,
                "org_unit": before["org_unit"] + 1, "import_batch": before["import_batch"] + 1,
                "audit_event": before["audit_event"] + 1}  # fmt: skip
    assert after == expected
    with services.db.sessionmaker() as session:
        students = {s.id_number: s for s in session.scalars(select(Student))}
        assert students[S[1]["id"]].name == "学生一改名"
        assert students[S[2]["id"]].class_unit.code == "S1-G07-C02"
        assert students[S[3]["id"]].status == "enrolled" and students[S[3]["id"]].active  # missing: not ticked
        assert students[N[1]["id"]].class_unit.code == "S1-G07-C03"
        assert {students[p["id"]].entry_year for p in N} == {2026}  # grade 7 in 2026-2027 entered 初中 in 2026
        moved = list(
            session.scalars(
                select(Enrolment).where(Enrolment.student_id == students[S[2]["id"]].id).order_by(Enrolment.id)
            )
        )
        assert [(e.reason, e.end_reason, e.ended_at is None) for e in moved] == [
            ("import", "move", False),
            ("move", None, True),
        ]
        assert moved[1].class_id == students[S[2]["id"]].class_id and moved[1].actor == "tester"
        new = session.scalars(select(Enrolment).where(Enrolment.student_id == students[N[0]["id"]].id)).all()
        assert [(e.reason, e.school_year, e.grade_level, e.ended_at) for e in new] == [("import", YEAR, 7, None)]
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (event.action, event.object_type, event.actor) == ("update", "roster", "tester")
        assert (event.detail["created"], event.detail["moved"], event.detail["missing"]) == (2, 1, 1)
        assert S[0]["id"] not in json.dumps(event.detail, ensure_ascii=False) and "学生" not in json.dumps(
            event.detail, ensure_ascii=False
        )


def test_missing_students_are_marked_left_only_when_asked(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    with services.db.transaction() as session:
        result = import_roster(session, path, "S1", school_year=YEAR, mark_missing_left=True)
    assert result.marked_left == 1
    with services.db.sessionmaker() as session:
        gone = session.get(Student, school[S[3]["id"]])
        assert (gone.status, gone.active) == ("left", False)
        rows = session.scalars(select(Enrolment).where(Enrolment.student_id == gone.id)).all()
        assert [(e.reason, e.end_reason) for e in rows] == [("import", "left")]
    # On the roster again: enrolled again, with a new enrolment row.
    back = [*SECOND, row(S[3], "2班")]
    with services.db.transaction() as session:
        result = import_roster(session, write_xlsx(tmp_path / "third.xlsx", HEADER, back), "S1", school_year=YEAR)
    assert (result.changed, result.moved, result.created) == (1, 0, 0)
    with services.db.sessionmaker() as session:
        again = session.get(Student, school[S[3]["id"]])
        assert (again.status, again.active) == ("enrolled", True)
        rows = session.scalars(select(Enrolment).where(Enrolment.student_id == again.id).order_by(Enrolment.id)).all()
        assert [(e.reason, e.end_reason) for e in rows] == [("import", "left"), ("import", None)]


def test_confirm_refused_when_the_roster_changed_after_the_preview(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    with services.db.sessionmaker() as session:
        plan = preview_roster(session, path, "S1", school_year=YEAR)
    with services.db.transaction() as session:  # someone else changes a student of the school meanwhile
        session.get(Student, school[S[0]["id"]]).name = "别人改的"
    before = table_counts(services)
    with pytest.raises(RosterChanged, match="请重新上传并预览"), services.db.transaction() as session:
        import_roster(session, path, "S1", school_year=YEAR, expected_fingerprint=plan.fingerprint)
    assert table_counts(services) == before


def test_same_file_confirmed_twice_is_already_imported(services, school, tmp_path):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    with services.db.transaction() as session:
        import_roster(session, path, "S1", school_year=YEAR)
    with services.db.sessionmaker() as session:
        plan = preview_roster(session, path, "S1", school_year=YEAR)
    assert plan.already_imported and plan.counts()["unchanged"] == 5 and not plan.has_changes
    before = table_counts(services)
    with services.db.transaction() as session:
        result = import_roster(session, path, "S1", school_year=YEAR, expected_fingerprint=plan.fingerprint)
    assert result.already_imported and (result.created, result.updated) == (0, 0)
    assert table_counts(services) == {**before, "audit_event": before["audit_event"] + 1}


def test_row_of_a_student_enrolled_at_another_school_is_an_error(services, school, tmp_path):
    other = person(20)
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "s2.xlsx", HEADER, [row(other, "1班")]), "S2", school_year=YEAR)
    rows = [*SECOND, row(other, "1班")]  # row 7
    before = table_counts(services)
    for action in (preview_roster, import_roster):
        with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
            action(session, write_xlsx(tmp_path / "x.xlsx", HEADER, rows), "S1", school_year=YEAR)
        assert [str(e) for e in info.value.errors] == [
            "Sheet!第7行 列“身份证号”: 该学生已在其他学校的名册中（转学需走转学流程）"
        ]
    assert table_counts(services) == before


def test_row_naming_two_students_is_an_error(services, school, tmp_path):
    header = [*HEADER, "校内学号"]
    with services.db.transaction() as session:  # give s3 a school number
        session.get(Student, school[S[3]["id"]]).school_student_no = "2026003"
    rows = [[*r, ""] for r in SECOND]
    rows[0][5] = "2026003"  # s0's row (row 2) carries s3's school number
    with pytest.raises(ImportRejected) as info, services.db.sessionmaker() as session:
        preview_roster(session, write_xlsx(tmp_path / "x.xlsx", header, rows), "S1", school_year=YEAR)
    assert [str(e) for e in info.value.errors] == [
        f"Sheet!第2行 列“校内学号”: 与本校另一名学生（编号 #{school[S[3]['id']]}）的校内学号相同"
    ]


def test_default_school_year_starts_on_1_september_beijing_time():
    assert school_year_of(dt.datetime(2027, 8, 31, 15, 59, 59)) == "2026-2027"  # 23:59:59 +08:00
    assert school_year_of(dt.datetime(2027, 8, 31, 16, 0, 0)) == "2027-2028"  # 00:00 +08:00 on 1 September
    assert school_year_of(dt.datetime(2028, 3, 1)) == "2027-2028"
    assert entry_year_for(8, "2027-2028") == 2026 and entry_year_for(10, "2027-2028") == 2027
    assert entry_year_for(3, "2027-2028") == 2025


def test_cli_preview_prints_counts_and_ids_only(services, school, tmp_path, db_url):
    path = write_xlsx(tmp_path / "second.xlsx", HEADER, SECOND)
    before = table_counts(services)
    args = ["import-roster", str(path), "--school", "S1", "--preview", "--year", YEAR, "--database", db_url]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"] == {"new": 2, "changed": 1, "moved": 1, "unchanged": 1, "missing": 1, "rows": 5,
                             "classes_to_create": 1}  # fmt: skip
    assert out["missing"] == [school[S[3]["id"]]]
    assert out["rows"]["changed"] == [{"row": 3, "student_id": school[S[1]["id"]], "fields": ["name"]}]
    assert "学生" not in result.stdout and S[0]["id"] not in result.stdout
    assert table_counts(services) == before
    with services.db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(ImportBatch)) == 1


# --- the back-office page /admin/roster/ -------------------------------------------------------------------

WEB_PASSWORD = "Xinshu-Roster-2026"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
TOKEN = re.compile(r'name="token" type="hidden" value="([^"]+)"')


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """One app over a SQLite file: city C → district D → schools WA, WB, WR, WT; six users."""
    tmp = tmp_path_factory.mktemp("roster-web")
    config = {"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp / 'web.db'}", "SECRET_KEY": "roster-test",
              "WTF_CSRF_ENABLED": True}  # fmt: skip
    app = create_app(config)
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "C", "市", "city", None)
        district = add_org_unit(session, "D", "区", "district", city)
        schools = {code: add_org_unit(session, code, f"{code}<学校>", "school", district) for code in
                   ("WA", "WB", "WR", "WT")}  # fmt: skip
        klass = ClassUnits(session, schools["WA"]).get(7, 9)
        other_district = add_org_unit(session, "D2", "二区", "district", city)
        ClassUnits(session, add_org_unit(session, "WX", "WX学校", "school", other_district)).get(7, 1)
        for name, role, unit in [("prin_a", "principal", schools["WA"]), ("ct_a", "class_teacher", klass),
                                 ("dist", "district_admin", district), ("prin_r", "principal", schools["WR"]),
                                 ("psy_b", "psychology_teacher", schools["WB"]),
                                 ("dist2", "district_admin", other_district)]:  # fmt: skip
            create_user(session, name, WEB_PASSWORD, role, unit)
    yield app, tmp
    services.db.dispose()


def client_for(app, username: str):
    """A test client logged in through the login form (with its CSRF token)."""
    client = app.test_client()
    token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    response = client.post("/login", data={"csrf_token": token, "username": username, "password": WEB_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def page_token(client, url: str = "/admin/roster/") -> str:
    return CSRF.search(client.get(url).get_data(as_text=True)).group(1)


def upload(client, path: Path, school: str, **extra):
    data = {"csrf_token": page_token(client), "school": school, "school_year": "", "preview": "1", **extra}
    data["file"] = (io.BytesIO(path.read_bytes()), path.name)
    return client.post("/admin/roster/", data=data, content_type="multipart/form-data")


def table_rows(html: str, table_id: str) -> list[str]:
    """Text of each body row of ``table#table_id``."""
    match = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.S)
    assert match, f"no table#{table_id}"
    body = re.search(r"<tbody>(.*?)</tbody>", match.group(0), re.S).group(1)
    return [" ".join(re.sub(r"<[^>]+>", " ", r).split()) for r in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def element_text(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', html, re.S)
    assert match, f"no #{element_id}"
    return match.group(1).strip()


def student_count(app, school: str) -> int:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        stmt = select(func.count()).select_from(Student).join(OrgUnit, OrgUnit.id == Student.school_id)
        return session.scalar(stmt.where(OrgUnit.code == school))


def test_upload_form_lists_the_users_schools(web):
    app, _tmp = web
    html = client_for(app, "prin_a").get("/admin/roster/").get_data(as_text=True)
    assert re.search(r'<select[^>]*name="school"', html) and '<option value="WA">' in html
    assert 'value="WB"' not in html  # another school of the district
    assert re.search(r'<input[^>]*type="file"', html) and 'name="file"' in html
    assert re.search(r'<button[^>]*name="preview"', html)
    district = client_for(app, "dist").get("/admin/roster/").get_data(as_text=True)
    assert all(f'value="{code}"' in district for code in ("WA", "WB", "WR", "WT")) and 'value="WX"' not in district
    assert "WA&lt;学校&gt;" in district and "WA<学校>" not in district  # school names are escaped


def test_invalid_id_on_row_5_answers_400_with_the_error_table(web):
    app, tmp = web
    rows = [list(r) for r in SECOND]
    rows[3][2] = rows[3][2][:-1] + ("0" if rows[3][2][-1] != "0" else "1")  # data row 4 = spreadsheet row 5
    response = upload(client_for(app, "prin_a"), write_xlsx(tmp / "bad.xlsx", HEADER, rows), "WA")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert table_rows(html, "row-errors") == ["Sheet 5 身份证号 身份证号校验码错误"]
    assert re.search(r"<th>工作表</th><th>行</th><th>列</th><th>错误</th>", html)
    assert 'name="confirm"' not in html
    assert student_count(app, "WA") == 0


def test_post_without_csrf_token_is_refused(web):
    app, tmp = web
    client = client_for(app, "prin_a")
    path = write_xlsx(tmp / "ok.xlsx", HEADER, SECOND)
    data = {"school": "WA", "preview": "1", "file": (io.BytesIO(path.read_bytes()), "ok.xlsx")}
    assert client.post("/admin/roster/", data=data, content_type="multipart/form-data").status_code == 400
    for url in ("/admin/roster/confirm", "/admin/roster/rollover", "/admin/roster/transfer"):
        assert client.post(url, data={"school": "WA"}).status_code == 400


def test_class_teacher_is_refused(web):
    app, tmp = web
    client = client_for(app, "ct_a")
    assert client.get("/admin/roster/").status_code == 403
    assert client.get("/admin/roster/rollover").status_code == 403
    assert upload(client_for(app, "prin_a"), write_xlsx(tmp / "x.xlsx", HEADER, SECOND), "WB").status_code == 400
    anonymous = app.test_client().get("/admin/roster/")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_upload_larger_than_the_limit_is_413(web):
    app, _tmp = web
    client = client_for(app, "prin_a")
    token = page_token(client)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    try:
        data = {"csrf_token": token, "school": "WA", "file": (io.BytesIO(b"x" * (65 * 1024)), "big.xlsx")}
        assert client.post("/admin/roster/", data=data, content_type="multipart/form-data").status_code == 413
    finally:
        app.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024


def test_preview_then_confirm_imports_the_same_file(web):
    app, tmp = web
    client = client_for(app, "prin_a")
    path = write_xlsx(tmp / "wa.xlsx", HEADER, SECOND)
    preview = upload(client, path, "WA")
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html
    counts = {k: element_text(html, f"count-{k}") for k in ("new", "changed", "moved", "unchanged", "missing")}
    assert counts == {"new": "5", "changed": "0", "moved": "0", "unchanged": "0", "missing": "0"}
    assert 'id="preview-summary"' in html and re.search(r'<button[^>]*name="confirm"', html)
    assert "学生一改名" in html  # the school's principal sees names
    assert student_count(app, "WA") == 0  # nothing written yet
    token = TOKEN.search(html).group(1)
    other = write_xlsx(tmp / "other.xlsx", HEADER, SECOND[:2])
    confirm = {"csrf_token": CSRF.search(html).group(1), "token": token, "confirm": "1"}
    wrong = client.post("/admin/roster/confirm", data={**confirm, "file": (io.BytesIO(other.read_bytes()), "o.xlsx")},
                        content_type="multipart/form-data")  # fmt: skip
    assert wrong.status_code == 400 and "所选文件与预览的文件不同" in wrong.get_data(as_text=True)
    assert student_count(app, "WA") == 0
    done = client.post("/admin/roster/confirm", data={**confirm, "file": (io.BytesIO(path.read_bytes()), "wa.xlsx")},
                       content_type="multipart/form-data")  # fmt: skip
    result = done.get_data(as_text=True)
    assert done.status_code == 200, result
    assert element_text(result, "result-created") == "5" and student_count(app, "WA") == 5
    with app.extensions["xinshu"].db.sessionmaker() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.object_type == "roster")).all()
        assert [(e.action, e.actor, e.detail["operation"]) for e in events if e.detail.get("school") != "S1"][-2:] == [
            ("read", "prin_a", "preview"),
            ("create", "prin_a", "import"),
        ]
    # Another user cannot use the token of this preview.
    stranger = client_for(app, "dist")
    again = {**confirm, "csrf_token": page_token(stranger), "file": (io.BytesIO(path.read_bytes()), "wa.xlsx")}
    refused = stranger.post("/admin/roster/confirm", data=again, content_type="multipart/form-data")
    assert refused.status_code == 400 and "预览已失效" in refused.get_data(as_text=True)


def test_district_admin_preview_hides_names(web):
    app, tmp = web
    path = write_xlsx(tmp / "wb.xlsx", HEADER, [row(person(30), "1班")])
    html = upload(client_for(app, "dist"), path, "WB").get_data(as_text=True)
    assert element_text(html, "count-new") == "1"
    assert "学生30" not in html and "姓名仅本校人员可见" in html


def test_rollover_page_dry_run_then_confirm(web):
    app, tmp = web
    with app.extensions["xinshu"].db.transaction() as session:
        rows = [row(person(40), "1班"), ["学生41", "男", person(41)["id"], "九年级", "2班"]]
        import_roster(session, write_xlsx(tmp / "wr.xlsx", HEADER, rows), "WR", school_year=YEAR)
    client = client_for(app, "prin_r")
    form = {"csrf_token": page_token(client, "/admin/roster/rollover"), "school": "WR", "school_year": "2027-2028"}
    dry = client.post("/admin/roster/rollover", data={**form, "dry_run": "1"})
    html = dry.get_data(as_text=True)
    assert dry.status_code == 200, html
    assert (element_text(html, "count-promoted"), element_text(html, "count-graduated")) == ("1", "1")
    assert re.search(r'<button[^>]*name="confirm"', html)
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Student).where(Student.status == "graduated")) == 0
    token = TOKEN.search(html).group(1)
    done = client.post("/admin/roster/rollover", data={**form, "token": token, "confirm": "1"})
    assert done.status_code == 200 and element_text(done.get_data(as_text=True), "count-graduated") == "1"
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Student).where(Student.status == "graduated")) == 1
    forged = client.post("/admin/roster/rollover", data={**form, "token": "forged", "confirm": "1"})
    assert forged.status_code == 400


def test_transfer_page_for_district_admins_only(web):
    app, tmp = web
    with app.extensions["xinshu"].db.transaction() as session:
        import_roster(session, write_xlsx(tmp / "wb2.xlsx", HEADER, [row(person(50), "1班")]), "WB", school_year=YEAR)
        ClassUnits(session, session.scalar(select(OrgUnit).where(OrgUnit.code == "WT"))).get(7, 4)
        student_id = session.scalar(select(Student.id).where(Student.id_number == person(50)["id"]))
    assert client_for(app, "prin_a").get("/admin/roster/transfer").status_code == 403
    client = client_for(app, "dist")
    form = {"csrf_token": page_token(client, "/admin/roster/transfer"), "to_class": "WT-G07-C04", "transfer": "1"}
    missing = client.post("/admin/roster/transfer", data={**form, "student": "999999", "reason": "搬家"})
    assert missing.status_code == 400 and "找不到该学生或班级" in missing.get_data(as_text=True)
    outsider = client_for(app, "dist2")  # D2's administrator: the student's school is not in D2
    data = {"csrf_token": page_token(outsider, "/admin/roster/transfer"), "to_class": "WX-G07-C01", "transfer": "1",
            "student": str(student_id), "reason": "搬家"}  # fmt: skip
    denied = outsider.post("/admin/roster/transfer", data=data)
    assert denied.status_code == 400 and "找不到该学生或班级，或不在您的管辖范围内" in denied.get_data(as_text=True)
    with app.extensions["xinshu"].db.sessionmaker() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert (event.action, event.object_type, event.outcome, event.actor) == ("update", "roster", "denied", "dist2")
        assert session.get(Student, student_id).school.code == "WB"
    done = client.post("/admin/roster/transfer", data={**form, "student": str(student_id), "reason": "家庭搬迁"})
    html = done.get_data(as_text=True)
    assert done.status_code == 200 and f"学生 #{student_id} 转入" in html and "学生50" not in html
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.get(Student, student_id).school.code == "WT"
