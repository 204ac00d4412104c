"""Answer-sheet import: every problem reported at once, in Chinese, nothing written."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from xinshu.answers import import_answers
from xinshu.errors import ImportRejected
from xinshu.models import Response, Student
from xinshu.orgs import add_org_unit
from xinshu.rosters import get_school

HEADER = "学籍号,第1题,第2题,第3题,第4题,第5题,第6题,第7题,第8题,第9题\n"


def _enrol(services, numbers):
    with services.db.transaction() as session:
        school = get_school(session, "S1")
        klass = add_org_unit(session, "S1-C1", "七年级1班", "class", school)
        for i, number in enumerate(numbers):
            session.add(Student(school_id=school.id, class_id=klass.id, name=f"学生{i}", gender="F",
                                grade_level=7, student_number=number))  # fmt: skip


def test_all_errors_in_one_report_and_nothing_written(services, org, tmp_path):
    _enrol(services, ["L110101201201010001", "L110101201201010002"])
    path = tmp_path / "phq9.csv"
    path.write_text(
        HEADER
        + "L110101201201010001,0,1,2,3,几乎每天,好几天,0,0,0\n"
        + "L110101201201010002,0,1,4,3,0,0,0,0,0\n"
        + "L999999999999999999,0,0,0,0,0,0,0,0,0\n",
        "utf-8",
    )
    with pytest.raises(ImportRejected) as info, services.db.transaction() as session:
        import_answers(session, services, path, "phq9", "phq9_sheet")
    assert [str(e) for e in info.value.errors] == [
        "第3行: 题目 phq9_3 的答案 4 不在允许范围内（0, 1, 2, 3）",
        "第4行 列“学籍号”: 名册中没有学籍号为 L999999999999999999 的在读学生",
    ]
    with services.db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Response)) == 0


def test_option_text_is_recoded(services, org, tmp_path):
    _enrol(services, ["L110101201201010001"])
    path = tmp_path / "phq9.csv"
    path.write_text(HEADER + "L110101201201010001,0,1,2,3,几乎每天,好几天,0,0,0\n", "utf-8")
    with services.db.transaction() as session:
        result = import_answers(session, services, path, "phq9", "phq9_sheet")
    assert result.recorded == 1 and result.warnings == 0  # total 0+1+2+3+3+1 = 10 < 11; item 9 = 0
    with services.db.sessionmaker() as session:
        response = session.scalar(select(Response))
        assert response.answers["phq9_5"] == 3 and response.raw_cells["第5题"] == "几乎每天"
        assert response.scores[0].raw_score == 10
