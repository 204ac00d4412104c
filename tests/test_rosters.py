"""Roster import from real .xlsx files written here with openpyxl.

ID numbers are fictional, made with a check character computed by the
GB 11643-1999 weights written out below (not by the code under test).
"""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from xinshu.cli import main
from xinshu.errors import ImportRejected
from xinshu.models import Enrolment, OrgUnit, Student
from xinshu.rosters import import_roster

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def fictional_id(area: str, birth: str, sequence: int) -> str:
    """18-character ID: area + YYYYMMDD + 3-digit sequence + MOD 11-2 check."""
    body = f"{area}{birth}{sequence:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def test_check_character_matches_the_standard_example():
    assert fictional_id("110105", "19491231", 2) == "11010519491231002X"  # GB 11643-1999's own example


HEADER = ["班别", "姓名", "身份证号", "性别", "年级", "全国学籍号", "出生日期", "民族"]


def _rows(n: int = 6) -> list[list]:
    rows = []
    for i in range(n):
        male = i % 2 == 0
        birth = f"2012{1 + i % 12:02d}{10 + i % 18:02d}"
        id_number = fictional_id("110101", birth, 100 + i * 2 + (1 if male else 0))
        rows.append([f"({1 + i % 2})班", f"测试{i}", id_number, "男" if male else "2", "初一" if i < 3 else "七年级",
                     "G" + id_number, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", "汉族"])  # fmt: skip
    return rows


def write_xlsx(path: Path, header: list, rows: list[list]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def _count(services) -> int:
    with services.db.sessionmaker() as session:
        return session.scalar(select(func.count()).select_from(Student))


def test_import_with_aliases_any_order_and_exact_ids(services, org, tmp_path):
    rows = _rows()
    path = write_xlsx(tmp_path / "roster.xlsx", HEADER, rows)
    with services.db.transaction() as session:
        result = import_roster(session, path, "S1")
    assert (result.created, result.updated, result.unchanged, result.classes_created) == (6, 0, 0, 2)
    with services.db.sessionmaker() as session:
        students = {s.id_number: s for s in session.scalars(select(Student))}
        assert set(students) == {r[2] for r in rows}
        first = students[rows[0][2]]
        assert (first.gender, first.grade_level, first.student_number) == ("M", 7, "G" + rows[0][2])
        assert students[rows[1][2]].gender == "F"
        assert first.class_unit.name == "七年级1班" and first.class_unit.parent.name == "七年级"
        assert first.class_unit.path.startswith(first.school.path)


def test_same_file_twice_changes_nothing(services, org, tmp_path):
    path = write_xlsx(tmp_path / "roster.xlsx", HEADER, _rows())
    with services.db.transaction() as session:
        import_roster(session, path, "S1")
    with services.db.sessionmaker() as session:
        before = [
            (s.id, s.name, s.class_id, s.updated_at) for s in session.scalars(select(Student).order_by(Student.id))
        ]
        units = session.scalar(select(func.count()).select_from(OrgUnit))
    with services.db.transaction() as session:
        again = import_roster(session, path, "S1")
    assert again.already_imported and again.created == 0 and again.updated == 0
    with services.db.sessionmaker() as session:
        after = [
            (s.id, s.name, s.class_id, s.updated_at) for s in session.scalars(select(Student).order_by(Student.id))
        ]
        assert after == before
        assert session.scalar(select(func.count()).select_from(OrgUnit)) == units


def test_changed_file_updates_only_the_changed_student(services, org, tmp_path):
    rows = _rows()
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "a.xlsx", HEADER, rows), "S1")
    rows[4][1] = "测试改名"
    with services.db.transaction() as session:
        result = import_roster(session, write_xlsx(tmp_path / "b.xlsx", HEADER, rows), "S1")
    assert (result.created, result.updated, result.unchanged) == (0, 1, 5)


def test_one_bad_row_imports_nothing_and_names_row_and_column(services, org, tmp_path):
    rows = _rows(40)
    bad = rows[29]
    bad[2] = bad[2][:-1] + ("0" if bad[2][-1] != "0" else "1")  # wrong check character
    bad[5] = "G" + bad[2]
    path = write_xlsx(tmp_path / "roster.xlsx", HEADER, rows)
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, path, "S1")
    messages = [str(e) for e in info.value.errors]
    assert "Sheet!第31行 列“身份证号”: 身份证号校验码错误" in messages  # header is row 1, row 30 of data is row 31
    assert all("第31行" in m for m in messages)
    assert _count(services) == 0


def test_id_typed_as_a_number_is_refused(services, org, tmp_path):
    rows = _rows(2)
    rows[1][2] = int(rows[1][2][:15])  # what Excel keeps of a number: 15 significant digits
    rows[1][5] = ""
    path = write_xlsx(tmp_path / "roster.xlsx", HEADER, rows)
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, path, "S1")
    assert any("第3行 列“身份证号”: 身份证号保存为数字" in str(e) for e in info.value.errors)


def test_gender_must_agree_with_the_id_number(services, org, tmp_path):
    rows = _rows(2)
    rows[0][3] = "女"  # row 0 is male by its ID's 17th digit
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "r.xlsx", HEADER, rows), "S1")
    assert [str(e) for e in info.value.errors] == ["Sheet!第2行 列“性别”: 性别与身份证号第17位不一致"]


def test_missing_required_column(services, org, tmp_path):
    header = [h for h in HEADER if h != "年级"]
    rows = [[c for h, c in zip(HEADER, r, strict=True) if h != "年级"] for r in _rows(2)]
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "r.xlsx", header, rows), "S1")
    assert [str(e) for e in info.value.errors] == ["Sheet!第1行: 缺少必需的列“年级”"]


def test_student_enrolled_at_another_school_is_refused(services, org, tmp_path):
    rows = _rows(2)
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "a.xlsx", HEADER, rows), "S1")
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "b.xlsx", HEADER, rows[:1]), "S2")
    assert "该学生已在其他学校的名册中" in str(info.value.errors[0])


def test_cli_reports_errors_and_exits_1(services, org, tmp_path, db_url):
    rows = _rows(3)
    rows[2][4] = "九九年级"
    path = write_xlsx(tmp_path / "roster.xlsx", HEADER, rows)
    result = CliRunner().invoke(main, ["import-roster", str(path), "--school", "S1", "--database", db_url])
    assert result.exit_code == 1
    assert "rejected: 1 error(s); nothing was changed" in result.stderr
    assert "Sheet!第4行 列“年级”: 年级“九九年级”无法识别" in result.stderr
    assert _count(services) == 0


@pytest.mark.parametrize("name,data,message", [
    ("empty.xlsx", b"", r"is empty \(0 bytes\)"),
    ("renamed.xlsx", b"name,gender\n", "not an .xlsx file"),
    ("old.xls", b"\xd0\xcf\x11\xe0", "please save it as .xlsx"),
])  # fmt: skip
def test_unreadable_files_are_refused_clearly(services, org, tmp_path, name, data, message):
    from xinshu.tabular import UnreadableFile

    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(UnreadableFile, match=message), services.db.transaction() as session:
        import_roster(session, path, "S1")
    assert _count(services) == 0


def test_a_column_the_file_lacks_changes_nothing(services, org, tmp_path):
    rows = _rows(2)
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "a.xlsx", HEADER, rows), "S1")
    keep = [h for h in HEADER if h != "全国学籍号"]
    slim = [[c for h, c in zip(HEADER, r, strict=True) if h != "全国学籍号"] for r in rows]
    with services.db.transaction() as session:
        result = import_roster(session, write_xlsx(tmp_path / "b.xlsx", keep, slim), "S1")
    assert (result.created, result.updated, result.unchanged) == (0, 0, 2)
    with services.db.sessionmaker() as session:
        assert sorted(session.scalars(select(Student.student_number))) == sorted("G" + r[2] for r in rows)


def test_student_who_left_another_school_needs_a_transfer(services, org, tmp_path):
    rows = _rows(1)
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "a.xlsx", HEADER, rows), "S1")
        student = session.scalar(select(Student))
        student.status, student.active = "graduated", False
    header = ["班别", "姓名", "证件号码", "性别", "年级"]  # ID column under an alias; no 学籍号 column
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "b.xlsx", header, [rows[0][:5]]), "S2")
    assert [str(e) for e in info.value.errors] == [
        "Sheet!第2行 列“证件号码”: 该学生曾在其他学校就读（已毕业或离校）；转入本校请由区或市管理员办理转学"
    ]


def test_first_import_opens_an_enrolment_row_per_student(services, org, tmp_path):
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "a.xlsx", HEADER, _rows(3)), "S1", school_year="2026-2027")
    with services.db.sessionmaker() as session:
        rows = session.execute(
            select(Enrolment.reason, Enrolment.school_year, Enrolment.grade_level, Enrolment.ended_at)
        )
        assert sorted(rows) == [("import", "2026-2027", 7, None)] * 3
        assert sorted(session.scalars(select(Student.entry_year))) == [2026] * 3  # 初一 in 2026-2027
