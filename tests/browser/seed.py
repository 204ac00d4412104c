"""The world the browser tests run in, and the fictional people in it.

A city → district → two schools tree, three staff accounts, a hospital partner
of the district, a roster of fictional students imported into the first school
through the real roster import, and one PHQ-9 answer sheet imported through the
real ``phq9_sheet`` profile. The first student's answers (item 9 above 0, total
8, band ``mild``) match only the rule ``phq9.item9`` of ``rules/alerts/phq9.yaml``:
a level-3 warning, and a case opened with the level-3 plan.

Names come from Faker ``zh_CN``; ID numbers are built here (area code, birth
date, sequence whose parity is the sex, then the GB 11643-1999 check character
from python-stdnum's ``cn.ric``). No real person's data is used.
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import openpyxl
from faker import Faker
from sqlalchemy import select
from stdnum.cn import ric

from xinshu.answers import import_answers
from xinshu.auth import create_user
from xinshu.models import Case, Partner, RiskWarning, Student
from xinshu.orgs import add_org_unit
from xinshu.rosters import import_roster
from xinshu.services import PROJECT_ROOT, Services

#: Meets a policy of at least 10 characters with upper, lower, digit and symbol.
PASSWORD = "Xinshu-2026!pass"
PSY = "psy-s1"
PRINCIPAL = "principal-s1"
BUREAU = "bureau"
#: username -> (role, org unit code)
ACCOUNTS = {
    PSY: ("psychology_teacher", "S1"),
    PRINCIPAL: ("principal", "S1"),
    BUREAU: ("bureau_admin", "C01"),
}
CITY = ("C01", "示范市教育局")
DISTRICT = ("D01", "青川区教育局")
SCHOOLS = (("S1", "青川区第一中学"), ("S2", "青川区实验中学"))
HOSPITAL = ("青川区精神卫生中心", "儿童青少年心理科")
AREA = "110101"  # a real area code (东城区), so cn.ric accepts the birth place
ID_COLUMN = "身份证号"
ROSTER_HEADER = ("姓名", "性别", ID_COLUMN, "全国学籍号", "年级", "班级", "校内学号")
#: PHQ-9 items 1-9 of the first student: total 1+2+1+0+1+1+0+1+1 = 8 (band mild, 5-9),
#: item 9 = 1 > 0, so only ``phq9.item9`` (level 3) matches.
PHQ9_ANSWERS = (1, 2, 1, 0, 1, 1, 0, 1, 1)
PHQ9_TOTAL = 8
WARNING_RULE = "phq9.item9"
WARNING_LEVEL = 3
DECLARATION_FOLDERS = ("instruments", "rules", "norms", "local_texts")


@dataclass(frozen=True)
class Person:
    """One fictional student as a roster row."""

    name: str
    gender: str  # "M" / "F"
    birth: dt.date
    id_number: str
    grade: str  # as a school writes it, e.g. 七年级
    class_name: str  # e.g. 1班
    school_no: str

    @property
    def student_number(self) -> str:
        """全国学籍号: G followed by the ID number (the form national student numbers take)."""
        return "G" + self.id_number


def id_number(area: str, birth: dt.date, male: bool, sequence: int) -> str:
    """A fictional 18-character ID number with a valid check character.

    :param sequence: 0-499; the 17th digit is odd for a man, even for a woman.
    """
    body = f"{area}{birth:%Y%m%d}{sequence * 2 + (1 if male else 0):03d}"
    return body + ric.calc_check_digit(body + "0")  # calc_check_digit ignores the last position


def wrong_check(number: str) -> str:
    """``number`` with a different, therefore wrong, check character."""
    return number[:-1] + ("0" if number[-1] == "X" else str((int(number[-1]) + 1) % 10))


def fictional_people(count: int, seed: int, grade: str = "七年级", class_name: str = "1班") -> list[Person]:
    """``count`` fictional students of one class, born Sept 2012 - Aug 2013 (grade 7 in autumn 2025)."""
    fake, rng = Faker("zh_CN"), random.Random(seed)
    fake.seed_instance(seed)
    people = []
    for index in range(count):
        male = index % 2 == 0
        birth = dt.date(2012, 9, 1) + dt.timedelta(days=rng.randrange(365))
        number = id_number(AREA, birth, male, sequence=index + rng.randrange(400))
        assert ric.is_valid(number), number
        name = fake.name_male() if male else fake.name_female()
        people.append(
            Person(name, "M" if male else "F", birth, number, grade, class_name, f"{seed % 1000:03d}{index:02d}")
        )
    return people


def write_roster(path: Path, people: Iterable[Person], wrong_check_rows: Iterable[int] = ()) -> Path:
    """Write a roster ``.xlsx`` (header on sheet row 1, ID columns as text).

    :param wrong_check_rows: sheet rows (2 = first student) whose ID number gets a wrong check character.
    """
    bad = set(wrong_check_rows)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "学生名册"
    sheet.append(list(ROSTER_HEADER))
    for row, person in enumerate(people, start=2):
        number = wrong_check(person.id_number) if row in bad else person.id_number
        gender = "男" if person.gender == "M" else "女"
        sheet.append(
            [person.name, gender, number, person.student_number, person.grade, person.class_name, person.school_no]
        )
    for column in (3, 4, 7):  # ID columns formatted as text, as the README asks
        for row in range(1, sheet.max_row + 1):
            sheet.cell(row=row, column=column).number_format = "@"
    workbook.save(path)
    return path


def write_phq9_sheet(path: Path, answers: Mapping[str, Iterable[int]]) -> Path:
    """Write a ``phq9_sheet`` answer file: 学籍号 plus 第1题 … 第9题, one row per student."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["学籍号", *(f"第{i}题" for i in range(1, 10))])
    for student_number, values in answers.items():
        sheet.append([student_number, *values])
    workbook.save(path)
    return path


def copy_declarations(dest: Path) -> Path:
    """A copy of the project's declarations, so nothing a test does can touch the checkout's files."""
    for folder in DECLARATION_FOLDERS:
        source = PROJECT_ROOT / folder
        if source.is_dir():
            shutil.copytree(source, dest / folder)
    return dest


def seed(services: Services, tmp: Path) -> dict[str, int]:
    """Build the world on ``services``' database; return the ids the tests need.

    :return: ``student``, ``warning``, ``case``, ``school`` (S1), ``other_school`` (S2), ``partner``.
    """
    with services.db.transaction() as session:
        city = add_org_unit(session, *CITY, "city", None)
        district = add_org_unit(session, *DISTRICT, "district", city)
        units = {code: add_org_unit(session, code, name, "school", district) for code, name in SCHOOLS}
        units[CITY[0]] = city
        for username, (role, code) in ACCOUNTS.items():
            create_user(session, username, PASSWORD, role, units[code])
        partner = Partner(district_id=district.id, kind="hospital", name=HOSPITAL[0], department=HOSPITAL[1])
        session.add(partner)
        session.flush()
        ids = {"school": units["S1"].id, "other_school": units["S2"].id, "partner": partner.id}
    people = fictional_people(6, seed=2026)
    with services.db.transaction() as session:
        import_roster(session, write_roster(tmp / "S1-roster.xlsx", people), "S1")
    sheet = write_phq9_sheet(tmp / "S1-phq9.xlsx", {people[0].student_number: PHQ9_ANSWERS})
    with services.db.transaction() as session:
        import_answers(session, services, sheet, "phq9", "phq9_sheet")
    with services.db.transaction() as session:
        student = session.scalar(select(Student).where(Student.student_number == people[0].student_number))
        warning = session.scalar(select(RiskWarning).where(RiskWarning.student_id == student.id))
        case = session.scalar(select(Case).where(Case.student_id == student.id))
        ids.update(student=student.id, warning=warning.id, case=case.id)
    return ids
