"""School-year rollover: promotion by entry year and stage, graduation, idempotence, dry run.

Rosters are imported for 2026-2027, so (by hand, stage first grades 1/7/10):
a grade-7 student entered 初中 in 2026, grade 8 in 2025, grade 9 in 2024; in
2027-2028 they are in grades 8, 9 and (past 初中) graduated. A primary grade 5
(entered 2022) goes to 6, a grade 6 (entered 2021) graduates.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from test_rosters import fictional_id, write_xlsx

from xinshu.cli import main
from xinshu.errors import XinshuError
from xinshu.models import AuditEvent, Base, Enrolment, OrgUnit, Student
from xinshu.orgs import add_org_unit
from xinshu.rollover import rollover
from xinshu.rosters import import_roster

HEADER = ["姓名", "性别", "身份证号", "年级", "班级"]
YEAR, NEXT = "2026-2027", "2027-2028"


def roster_row(i: int, grade: str, klass: str) -> list:
    """Fictional girl i (even sequence number) in ``grade`` / ``klass``."""
    return [f"学生{i}", "女", fictional_id("110101", f"201201{10 + i:02d}", 300 + 2 * i), grade, klass]


def ids_by_name(session) -> dict[str, int]:
    return dict(session.execute(select(Student.name, Student.id)).all())


def table_counts(services) -> dict[str, int]:
    with services.db.sessionmaker() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


@pytest.fixture
def junior(services, org, tmp_path):
    """S1 as a junior school: 学生0 七年级2班, 学生1 八年级1班, 学生2 九年级1班."""
    rows = [roster_row(0, "七年级", "2班"), roster_row(1, "八年级", "1班"), roster_row(2, "九年级", "1班")]
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "s1.xlsx", HEADER, rows), "S1", school_year=YEAR)
        return ids_by_name(session)


def test_rollover_promotes_and_graduates_a_junior_school(services, junior):
    with services.db.transaction() as session:
        result = rollover(session, "S1", NEXT, actor="教务")
    assert (result.promoted, result.graduated, result.unchanged, result.skipped, result.classes_created) == (
        2,
        1,
        0,
        [],
        1,
    )  # 八年级2班 is new; 九年级1班 exists (学生2 is in it)
    with services.db.sessionmaker() as session:
        s0, s1, s2 = (session.get(Student, junior[f"学生{i}"]) for i in range(3))
        assert (s0.grade_level, s0.entry_year, s0.class_unit.code, s0.class_unit.name) == (
            8,
            2026,
            "S1-G08-C02",
            "八年级2班",
        )
        assert (s1.grade_level, s1.entry_year, s1.class_unit.code) == (9, 2025, "S1-G09-C01")
        assert (s2.status, s2.active, s2.grade_level) == ("graduated", False, 9)
        history = {
            sid: [(e.reason, e.school_year, e.grade_level, e.end_reason) for e in rows]
            for sid, rows in _enrolments(session).items()
        }
        assert history[s0.id] == [("import", YEAR, 7, "rollover"), ("rollover", NEXT, 8, None)]
        assert history[s2.id] == [("import", YEAR, 9, "graduated")]
        assert session.scalar(select(OrgUnit.parent_id).where(OrgUnit.code == "S1-G08-C02")) == session.scalar(
            select(OrgUnit.id).where(OrgUnit.code == "S1-G08")
        )
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == "roster").order_by(AuditEvent.id.desc())
        ).first()
        assert (event.action, event.actor, event.detail["operation"]) == ("update", "教务", "rollover")
        assert (event.detail["promoted"], event.detail["graduated"], event.detail["school_year"]) == (2, 1, NEXT)


def _enrolments(session) -> dict[int, list[Enrolment]]:
    rows: dict[int, list[Enrolment]] = {}
    for e in session.scalars(select(Enrolment).order_by(Enrolment.id)):
        rows.setdefault(e.student_id, []).append(e)
    return rows


def test_rollover_twice_changes_nothing_the_second_time(services, junior):
    with services.db.transaction() as session:
        rollover(session, "S1", NEXT)
    before = table_counts(services)
    with services.db.sessionmaker() as session:
        state = [(s.id, s.grade_level, s.class_id, s.status, s.entry_year) for s in session.scalars(select(Student))]
    with services.db.transaction() as session:
        again = rollover(session, "S1", NEXT)
    assert (again.promoted, again.graduated, again.unchanged, again.classes_created) == (0, 0, 2, 0)
    assert table_counts(services) == {**before, "audit_event": before["audit_event"] + 1}  # only the audit row
    with services.db.sessionmaker() as session:
        assert [
            (s.id, s.grade_level, s.class_id, s.status, s.entry_year) for s in session.scalars(select(Student))
        ] == state


def test_dry_run_counts_and_writes_nothing(services, junior):
    before = table_counts(services)
    with services.db.transaction() as session:
        result = rollover(session, "S1", NEXT, dry_run=True)
    assert (result.dry_run, result.promoted, result.graduated, result.classes_created) == (True, 2, 1, 1)
    assert table_counts(services) == before


def test_primary_school_graduates_grade_6(services, org, tmp_path):
    rows = [roster_row(5, "五年级", "1班"), roster_row(6, "六年级", "3班")]
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "s2.xlsx", HEADER, rows), "S2", school_year=YEAR)
        ids = ids_by_name(session)
    with services.db.transaction() as session:
        result = rollover(session, "S2", NEXT)
    assert (result.promoted, result.graduated) == (1, 1)
    with services.db.sessionmaker() as session:
        five, six = session.get(Student, ids["学生5"]), session.get(Student, ids["学生6"])
        assert (five.grade_level, five.entry_year, five.class_unit.name) == (6, 2022, "六年级1班")
        assert (six.status, six.active) == ("graduated", False)


def test_nine_year_school_keeps_grade_6_and_graduates_grade_9(services, org, tmp_path):
    with services.db.transaction() as session:
        district = session.scalar(select(OrgUnit).where(OrgUnit.code == "D01"))
        add_org_unit(session, "S9", "九年一贯制学校", "school", district)
    rows = [roster_row(7, "六年级", "1班"), roster_row(8, "七年级", "1班"), roster_row(9, "九年级", "2班")]
    with services.db.transaction() as session:
        import_roster(session, write_xlsx(tmp_path / "s9.xlsx", HEADER, rows), "S9", school_year=YEAR)
        ids = ids_by_name(session)
    with services.db.transaction() as session:
        result = rollover(session, "S9", NEXT)
    assert (result.promoted, result.graduated) == (2, 1)
    with services.db.sessionmaker() as session:
        six, seven, nine = (session.get(Student, ids[f"学生{i}"]) for i in (7, 8, 9))
        # grade 6 moves on to the school's own 初中: grade 7 in 2027-2028, so it entered 初中 in 2027
        assert (six.grade_level, six.entry_year, six.class_unit.code, six.status) == (7, 2027, "S9-G07-C01", "enrolled")
        assert (seven.grade_level, seven.entry_year) == (8, 2026)
        assert nine.status == "graduated"
    with services.db.transaction() as session:  # and a second run still changes nothing
        again = rollover(session, "S9", NEXT)
    assert (again.promoted, again.graduated, again.unchanged) == (0, 0, 2)


def test_unknown_entry_year_comes_from_the_current_enrolment_year(services, org):
    with services.db.transaction() as session:
        school = session.scalar(select(OrgUnit).where(OrgUnit.code == "S2"))
        grade = add_org_unit(session, "S2-g", "八年级", "grade", school)
        klass = add_org_unit(session, "S2-g-4", "八年级4班", "class", grade)
        student = Student(school_id=school.id, class_id=klass.id, name="旧数据", gender="F", grade_level=8,
                          school_student_no="old-1")  # fmt: skip
        session.add(student)
        session.flush()
        student_id = student.id
    with services.db.transaction() as session:  # no enrolment row: the grade is taken as 2026-2027's
        result = rollover(session, "S2", NEXT)
    assert result.promoted == 1
    with services.db.sessionmaker() as session:
        moved = session.get(Student, student_id)
        # grade 8 in 2026-2027 entered in 2025; class number 4 read from the hand-made class's name
        assert (moved.grade_level, moved.entry_year, moved.class_unit.code) == (9, 2025, "S2-G09-C04")


def test_rollover_to_an_earlier_year_is_refused(services, junior):
    with services.db.transaction() as session:
        rollover(session, "S1", NEXT)
    with pytest.raises(XinshuError, match="不能升级到更早的 2026-2027 学年"), services.db.transaction() as session:
        rollover(session, "S1", YEAR)
    with pytest.raises(XinshuError, match="格式错误"), services.db.transaction() as session:
        rollover(session, "S1", "2027-2029")


def test_cli_rollover_dry_run_and_run(services, junior, db_url):
    args = ["rollover", "--school", "S1", "--year", NEXT, "--database", db_url]
    before = table_counts(services)
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {"school": "S1", "school_year": NEXT, "dry_run": True, "promoted": 2,
                                      "graduated": 1, "unchanged": 0, "skipped": 0, "classes_created": 1}  # fmt: skip
    assert table_counts(services) == before
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["graduated"] == 1
    bad = CliRunner().invoke(main, ["rollover", "--school", "NOPE", "--year", NEXT, "--database", db_url])
    assert bad.exit_code == 1 and "no school with code 'NOPE'" in bad.stderr
