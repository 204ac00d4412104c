"""``xinshu demo``: a demo city built from real public answers and fictional people.

Two districts, four schools. Every respondent of the NHANES 2017–2018 PHQ-9
file (``../shared/data/nhanes_phq9/DPQ_J.csv``, public domain) becomes one
fictional student: a Faker ``zh_CN`` name, the respondent's recorded sex
(``DEMO_J_age_sex.csv``), an ID number with a valid GB 11643-1999 check
character, and the respondent's ``SEQN`` as 校内学号. Each school's roster is
written as a real ``.xlsx`` (ID columns formatted as text, headers in a
school-specific order with aliases) and imported through the same code path a
school's upload uses; then the answers go through the ``nhanes_dpq`` profile:
scoring, warnings, cases, notifications, delivery to the in-app inbox.
No real person's name or ID number is used.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
from faker import Faker
from sqlalchemy import func, make_url, select
from stdnum.cn import ric

from xinshu.answers import import_answers
from xinshu.auth import create_user
from xinshu.dispatch import dispatch_pending
from xinshu.errors import XinshuError
from xinshu.grades import grade_name
from xinshu.models import Case, Notification, OrgUnit, Response, RiskWarning, Score, Student
from xinshu.orgs import add_org_unit
from xinshu.referrals import import_partners, import_resources, load_yaml_list
from xinshu.rosters import import_roster
from xinshu.services import PROJECT_ROOT, Services, build_services

DEMO_PASSWORD = "xinshu-demo-2025"  # noqa: S105 - demo-only; production config refuses defaults
SCHOOLS = (
    ("D01", "青川区", "110101", (("D01-S01", "青川区第一中学"), ("D01-S02", "青川区实验中学"))),
    ("D02", "白鹭区", "110102", (("D02-S01", "白鹭区第二中学"), ("D02-S02", "白鹭区外国语学校"))),
)
# Headers as different schools write them (school-context.md §1.1): aliases, free order.
HEADER_STYLES = (
    ("姓名", "性别", "身份证号", "全国学籍号", "出生日期", "年级", "班级", "校内学号", "民族"),
    ("校内学号", "年级", "班别", "姓名", "性别", "学籍号", "身份证件号"),
    ("年级", "班级", "学号", "姓名", "性别", "出生日期", "身份证号码", "全国学籍号"),
    ("姓名", "身份证号", "性别", "年级", "班级", "校内学号"),
)
GRADES = (7, 8, 9, 10, 11, 12)
CLASS_SIZE = 46


def default_data_dir() -> Path:
    """``../shared/data`` next to the project checkout."""
    return PROJECT_ROOT.parent / "shared" / "data"


@dataclass
class FakeStudent:
    seqn: str
    name: str
    gender: str
    birth: dt.date
    id_number: str
    grade: int
    class_no: int


def build_demo(database_url: str, data_dir: Path, seed: int = 20251011) -> dict[str, Any]:
    """Build the demo on a fresh database; return the JSON summary."""
    dpq = data_dir / "nhanes_phq9" / "DPQ_J.csv"
    if not dpq.is_file():
        raise XinshuError(f"{dpq} not found: pass --data-dir (the folder holding nhanes_phq9/)")
    _fresh_database(database_url)
    services = build_services({"DATABASE_URL": database_url})
    services.db.create_all()
    seqns = _respondents(dpq)
    sexes = _sexes(data_dir / "nhanes_phq9" / "DEMO_J_age_sex.csv")
    roster_dir = Path(make_url(database_url).database or "instance/demo.db").parent / "demo_rosters"
    roster_dir.mkdir(parents=True, exist_ok=True)
    with services.db.transaction() as session:
        schools = _org_tree(session)
        # The expert side: each district's partner institutions and the city's resource library.
        examples = PROJECT_ROOT / "examples"
        partners = import_partners(session, load_yaml_list(examples / "partners" / "demo_partners.yaml"))
        resources = import_resources(session, load_yaml_list(examples / "resources" / "library.yaml"))
    rng, fake = random.Random(seed), Faker("zh_CN")  # noqa: S311 - fictional people, not secrets
    fake.seed_instance(seed)
    per_school = _split(seqns, len(schools))
    rosters, used = {}, set()
    for index, (school, chunk) in enumerate(zip(schools, per_school, strict=True)):
        people = [_person(fake, rng, seqn, sexes.get(seqn, "F"), school[2], i, used) for i, seqn in enumerate(chunk)]
        path = roster_dir / f"{school[0]}.xlsx"
        _write_roster(path, people, HEADER_STYLES[index % len(HEADER_STYLES)])
        with services.db.transaction() as session:
            rosters[school[0]] = import_roster(session, path, school[0]).as_dict()
    with services.db.transaction() as session:
        answers = import_answers(session, services, dpq, "phq9", "nhanes_dpq")
        _demo_users(session)
    delivered = _dispatch_all(services)
    summary = _summary(services, rosters, answers.as_dict(), delivered, roster_dir)
    summary["directory"] = {"partners": partners.as_dict()["created"], "resources": resources.as_dict()["created"]}
    return summary


def _fresh_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        raise XinshuError("the demo builds its own SQLite file; give a sqlite:/// URL")
    path = Path(parsed.database)
    if path.exists():
        if path.name != "demo.db":
            raise XinshuError(f"{path} exists; the demo only replaces a file named demo.db")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def _respondents(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [str(int(float(row["SEQN"]))) for row in csv.DictReader(handle)]


def _sexes(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return {
            str(int(float(r["SEQN"]))): "M" if r["RIAGENDR"].startswith("1") else "F" for r in csv.DictReader(handle)
        }


def _split(items: list[str], parts: int) -> list[list[str]]:
    size = -(-len(items) // parts)
    return [items[i * size : (i + 1) * size] for i in range(parts)]


def _org_tree(session) -> list[tuple[str, str, str]]:
    city = add_org_unit(session, "C01", "示范市教育局", "city", None)
    schools = []
    for code, name, area, members in SCHOOLS:
        district = add_org_unit(session, code, f"{name}教育局", "district", city)
        for school_code, school_name in members:
            add_org_unit(session, school_code, school_name, "school", district)
            schools.append((school_code, school_name, area))
    return schools


def _person(fake: Faker, rng: random.Random, seqn: str, gender: str, area: str, index: int, used: set) -> FakeStudent:
    grade = GRADES[index % len(GRADES)]
    class_no = 1 + (index // len(GRADES)) // CLASS_SIZE
    # A student in grade g in autumn 2025 was born in 2025 - (g + 6) (Sept-Aug cohort).
    start = dt.date(2025 - grade - 6, 9, 1)
    birth = start + dt.timedelta(days=rng.randrange(365))
    name = fake.name_male() if gender == "M" else fake.name_female()
    id_number = _id_number(rng, area, birth, gender)
    while id_number in used:
        id_number = _id_number(rng, area, birth, gender)
    used.add(id_number)
    return FakeStudent(seqn, name, gender, birth, id_number, grade, class_no)


def _id_number(rng: random.Random, area: str, birth: dt.date, gender: str) -> str:
    """A fictional ID number: area + birth date + sequence (odd = male) + check character."""
    sequence = rng.randrange(0, 500) * 2 + (1 if gender == "M" else 0)
    body = f"{area}{birth:%Y%m%d}{sequence:03d}"
    return body + ric.calc_check_digit(body + "0")  # the argument includes a check position


def _write_roster(path: Path, people: list[FakeStudent], headers: tuple[str, ...]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "学生名册"
    sheet.append(list(headers))
    for person in people:
        sheet.append([_cell(person, h) for h in headers])
    for column, header in enumerate(headers, start=1):
        if header in ("身份证号", "身份证件号", "身份证号码", "全国学籍号", "学籍号", "校内学号", "学号"):
            for row in range(1, len(people) + 2):
                sheet.cell(row=row, column=column).number_format = "@"
    workbook.save(path)


def _cell(person: FakeStudent, header: str) -> Any:
    values = {
        "姓名": person.name,
        "性别": "男" if person.gender == "M" else "女",
        "身份证号": person.id_number,
        "身份证件号": person.id_number,
        "身份证号码": person.id_number,
        "全国学籍号": "G" + person.id_number,
        "学籍号": "G" + person.id_number,
        "出生日期": person.birth.isoformat(),
        "年级": grade_name(person.grade),
        "班级": f"{person.class_no}班",
        "班别": f"({person.class_no})班",
        "校内学号": person.seqn,
        "学号": person.seqn,
        "民族": "汉族",
    }
    return values[header]


def _demo_users(session) -> None:
    units = {
        u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.kind.in_(("city", "district", "school"))))
    }
    create_user(session, "bureau", DEMO_PASSWORD, "bureau_admin", units["C01"])
    for code, _name, _area, members in SCHOOLS:
        create_user(session, f"district-{code.lower()}", DEMO_PASSWORD, "district_admin", units[code])
        for school_code, _ in members:
            create_user(session, f"psy-{school_code.lower()}", DEMO_PASSWORD, "psychology_teacher", units[school_code])


def _dispatch_all(services: Services) -> dict[str, int]:
    total = Counter()
    while True:
        report = dispatch_pending(services)
        total.update(report.as_dict())
        if report.sent + report.failed + report.dead == 0:
            return dict(total)


def _summary(services, rosters, answers, delivered, roster_dir: Path) -> dict[str, Any]:
    with services.db.sessionmaker() as session:
        bands = Counter(
            band or "incomplete" for band in session.scalars(select(Score.band).where(Score.scale == "total"))
        )
        levels = dict(session.execute(select(RiskWarning.level, func.count()).group_by(RiskWarning.level)).all())
        statuses = dict(session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
        return {
            "students": session.scalar(select(func.count()).select_from(Student)),
            "rosters": rosters,
            "roster_files": str(roster_dir),
            "responses_scored": session.scalar(select(func.count()).select_from(Response)),
            "blank_rows_skipped": answers["blank_rows"],
            "severity_bands": {band: bands.get(band, 0) for band in (*_band_order(services), "incomplete")},
            "item9_above_0": session.scalar(
                select(func.count()).select_from(Response).where(Response.answers["phq9_9"].as_float() > 0)
            ),
            "warnings_per_level": {str(level): levels.get(level, 0) for level in (1, 2, 3, 4)},
            "cases_opened": session.scalar(select(func.count()).select_from(Case)),
            "notifications": {
                "delivered": statuses.get("sent", 0),
                "pending": statuses.get("pending", 0),
                "undeliverable": statuses.get("dead", 0),
            },
            "login": {"username": "bureau", "password": DEMO_PASSWORD},
        }


def _band_order(services: Services) -> list[str]:
    return [band.id for band in services.declarations.instruments["phq9"].scale("total").bands]
