"""Norm-referenced scores: the formulas by hand, then Add Health grade norms end to end.

Part (a) checks :mod:`xinshu.norms` against values worked by hand from the
definitions in its docstring (linear T, midpoint percentile rank, normalised T
with PR clamped to [0.5, 99.5], the ">80" display, the group fallback).

Part (b) enrols one student per row of ``../shared/data/addhealth/AddHealth.csv``
(grade from the file; the data has no gender, so a student whose ``rownames`` is
odd is "M" and even is "F", a deterministic assignment that only matters for the
grade × gender cells), imports the ``depression`` answers through
:func:`xinshu.answers.import_answers` and the ``addhealth_csv`` profile, builds
linear-T norms with ``xinshu norms build`` and compares each grade's n, mean and
sample SD with :mod:`statistics` over the CSV. The norm set is then activated
(with ``min_group_n: 500``, so that the grade × gender cells, 311–409 students
each, are skipped and every student falls back to the grade group, 622–817
students) and one more student's answer is imported: the stored score must carry
``T = 50 + 10 (x − mean_grade) / sd_grade`` and the midpoint percentile rank.
"""

from __future__ import annotations

import csv
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select

from xinshu.answers import import_answers
from xinshu.cli import main
from xinshu.models import Response, Score, Student
from xinshu.norms import (
    NormGroup,
    NormSet,
    build_norm_data,
    group_stats,
    linear_t,
    normalized_t,
    percentile_rank,
    t_display,
)
from xinshu.orgs import add_org_unit
from xinshu.services import build_services

REPO = Path(__file__).resolve().parent.parent
PSY = Path(__file__).resolve().parent / "declarations_psy"

# Φ(1) and Φ⁻¹(0.995), from standard normal tables (Abramowitz & Stegun 26.2).
PHI_1 = 0.8413447460685429
Z_995 = 2.5758293035489004

# ---------------------------------------------------------------------------
# (a) formulas, by hand


def test_linear_t() -> None:
    assert linear_t(12, 10, 4) == 55  # 50 + 10 * 2 / 4
    assert linear_t(6, 10, 4) == 40  # 50 + 10 * (-4) / 4
    assert linear_t(10, 10, 4) == 50


# Ten scores: 0 twice, 1 three times, 2 four times, 4 once.
DISTRIBUTION = [(0.0, 2), (1.0, 3), (2.0, 4), (4.0, 1)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 10.0),  # 100 (0 + 2/2) / 10
        (1, 35.0),  # 100 (2 + 3/2) / 10
        (2, 70.0),  # 100 (5 + 4/2) / 10
        (3, 90.0),  # no 3s: 100 (9 + 0) / 10
        (4, 95.0),  # 100 (9 + 1/2) / 10
        (-1, 0.0),  # below everything
        (5, 100.0),  # above everything
    ],
)
def test_percentile_rank_midpoint(raw: float, expected: float) -> None:
    assert percentile_rank(raw, DISTRIBUTION) == pytest.approx(expected, abs=1e-12)


def test_normalized_t() -> None:
    assert normalized_t(50) == pytest.approx(50, abs=1e-12)
    assert normalized_t(100 * PHI_1) == pytest.approx(60, abs=1e-9)
    assert normalized_t(100 * (1 - PHI_1)) == pytest.approx(40, abs=1e-9)
    # PR is clamped to [0.5, 99.5]: T = 50 ∓ 10 × 2.5758...
    low, high = 50 - 10 * Z_995, 50 + 10 * Z_995
    for pr in (0, 0.1, 0.5):
        assert normalized_t(pr) == pytest.approx(low, abs=1e-9)
    for pr in (99.5, 99.9, 100):
        assert normalized_t(pr) == pytest.approx(high, abs=1e-9)
    assert normalized_t(0.6) > low


@pytest.mark.parametrize(
    ("t", "shown"),
    [
        (None, ""),
        (50.0, "50"),
        (49.5, "50"),  # rounded half up
        (49.49, "49"),
        (80.0, "80"),
        (80.4, "80"),  # reported T is the rounded value; 80 is not above 80
        (80.6, ">80"),
        (95.2, ">80"),
    ],
)
def test_t_display(t: float | None, shown: str) -> None:
    assert t_display(t) == shown


def fallback_set(min_group_n: int) -> tuple[NormSet, dict[str, NormGroup]]:
    """Grade 7: F 6, M 4 (10); grade 8: F 2, M 1 (3); F 8, M 5; all 13."""
    groups = {
        "7F": NormGroup(6, 7, "F"),
        "7M": NormGroup(4, 7, "M"),
        "7": NormGroup(10, 7),
        "8F": NormGroup(2, 8, "F"),
        "8M": NormGroup(1, 8, "M"),
        "8": NormGroup(3, 8),
        "F": NormGroup(8, None, "F"),
        "M": NormGroup(5, None, "M"),
        "all": NormGroup(13),
    }
    norm = NormSet(
        "n", "1", "x", "total", "normalized_t", "active", {}, tuple(groups.values()), min_group_n
    )  # group choice; linear_t also needs an SD
    return norm, groups


@pytest.mark.parametrize(
    ("grade", "gender", "expected"),
    [
        (7, "F", "7F"),  # grade × gender, n 6 >= 5
        (7, "M", "7"),  # 7M has 4 < 5 → grade 7
        (8, "F", "F"),  # 8F (2) and grade 8 (3) too small → gender F
        (8, "M", "M"),  # 8M (1), grade 8 (3) too small → gender M, n 5 = min_group_n is enough
        (9, "F", "F"),  # no grade-9 groups at all
        (7, None, "7"),
        (None, None, "all"),
    ],
)
def test_group_fallback(grade: int | None, gender: str | None, expected: str) -> None:
    norm, groups = fallback_set(min_group_n=5)
    assert norm.group_for(grade, gender) is groups[expected]


def test_group_fallback_to_all_and_to_nothing() -> None:
    norm, groups = fallback_set(min_group_n=9)  # only grade 7 (10) and all (13) are big enough
    assert norm.group_for(8, "M") is groups["all"]
    assert norm.group_for(7, "F") is groups["7"]
    norm, _ = fallback_set(min_group_n=14)
    assert norm.group_for(7, "F") is None
    assert norm.convert(1.0, 7, "F") is None


def test_convert_linear_and_normalized() -> None:
    group = NormGroup(10, 7, None, None, 1.5, 2.0, tuple(DISTRIBUTION))
    linear = NormSet("n", "1", "x", "total", "linear_t", "active", {}, (group,))
    placed = linear.convert(2.0, 7, "F")
    assert placed.t == pytest.approx(52.5, abs=1e-12)  # 50 + 10 (2 − 1.5) / 2
    assert placed.percentile == pytest.approx(70.0, abs=1e-12)
    assert placed.group == "grade=7,gender=*"
    normal = NormSet("n", "1", "x", "total", "normalized_t", "active", {}, (group,))
    placed = normal.convert(1.0, 7, "M")
    # PR 35 → z = Φ⁻¹(0.35) = −0.38532 (tables) → T = 46.147
    assert placed.percentile == pytest.approx(35.0, abs=1e-12)
    assert placed.t == pytest.approx(50 - 3.8532, abs=1e-3)
    assert linear.convert(None, 7, "F") is None


def test_group_stats_by_hand() -> None:
    # 1, 2, 2, 3, 7: mean 15/5 = 3; squared deviations 4 + 1 + 1 + 0 + 16 = 22; SD = √(22/4) = 2.3452078799
    stats = group_stats([1.0, 2.0, 2.0, 3.0, 7.0])
    assert stats == {"n": 5, "mean": 3.0, "sd": 2.345208, "distribution": [[1, 1], [2, 2], [3, 1], [7, 1]]}


def test_build_norm_data_groups_and_drops_zero_sd() -> None:
    rows = [(1.0, 7, "F"), (3.0, 7, "M"), (2.0, 8, "F")]
    data = build_norm_data(rows, "x", "total", method="linear_t", norm_id="x-total-w", version="w", population="p")
    groups = {(g.get("grade"), g.get("gender")): g for g in data["groups"]}
    assert set(groups) == {(7, "F"), (7, "M"), (7, None), (8, "F"), (8, None), (None, "F"), (None, "M"), (None, None)}
    assert groups[(7, None)] == {"grade": 7, "n": 2, "mean": 2.0, "sd": 1.414214, "distribution": [[1, 1], [3, 1]]}
    assert "sd" not in groups[(7, "F")]  # one score: SD 0 is not kept
    assert groups[(None, None)]["mean"] == 2.0
    assert (data["status"], data["provenance"]["n"], data["min_group_n"]) == ("draft", 3, 200)


# ---------------------------------------------------------------------------
# (b) Add Health, end to end


def make_root(tmp_path: Path) -> Path:
    """tests/declarations_psy plus the project's levels and intervention templates."""
    root = tmp_path / "declarations"
    shutil.copytree(PSY, root)
    shutil.copy(REPO / "rules" / "levels.yaml", root / "rules" / "levels.yaml")
    shutil.copytree(REPO / "rules" / "interventions", root / "rules" / "interventions")
    return root


def gender_of(rownames: str) -> str:
    return "M" if int(rownames) % 2 else "F"


def read_addhealth(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def midpoint_pr(x: float, values: list[float]) -> float:
    below = sum(1 for v in values if v < x)
    equal = sum(1 for v in values if v == x)
    return 100 * (below + equal / 2) / len(values)


def test_addhealth_grade_norms_end_to_end(tmp_path: Path, shared_data: Path, monkeypatch) -> None:
    csv_path = shared_data / "addhealth" / "AddHealth.csv"
    if not csv_path.is_file():
        pytest.skip(f"{csv_path} not found")
    rows = read_addhealth(csv_path)
    by_grade: dict[int, list[float]] = {}
    by_cell: Counter = Counter()
    for row in rows:
        by_grade.setdefault(int(row["grade"]), []).append(float(row["depression"]))
        by_cell[int(row["grade"]), gender_of(row["rownames"])] += 1
    assert len(rows) == 4344 and sorted(by_grade) == [7, 8, 9, 10, 11, 12]

    root = make_root(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'xinshu.db'}"
    monkeypatch.setenv("XINSHU_DECLARATIONS", str(root))  # how the CLI finds the declarations
    monkeypatch.setenv("XINSHU_PLUGINS", "")
    monkeypatch.setenv("XINSHU_BLOCK_PLUGINS", "")
    services = build_services({"DATABASE_URL": db_url, "DECLARATION_ROOT": str(root)})
    services.db.create_all()
    try:
        with services.db.transaction() as session:
            city = add_org_unit(session, "ah", "Add Health", "city", None)
            district = add_org_unit(session, "ah-d", "Add Health district", "district", city)
            school = add_org_unit(session, "ah-s", "Add Health school", "school", district)
            classes = {}
            for grade in by_grade:
                unit = add_org_unit(session, f"ah-s-g{grade}", f"{grade}年级", "grade", school)
                classes[grade] = add_org_unit(session, f"ah-s-g{grade}-c1", f"{grade}年级1班", "class", unit)
            session.add_all(
                Student(
                    school_id=school.id,
                    class_id=classes[int(row["grade"])].id,
                    name=f"AH{row['rownames']}",
                    gender=gender_of(row["rownames"]),
                    school_student_no=row["rownames"],
                    grade_level=int(row["grade"]),
                )
                for row in rows
            )
            session.flush()
            result = import_answers(session, services, csv_path, "addhealth_dep", "addhealth_csv")
        assert (result.rows, result.recorded, result.warnings) == (4344, 4344, 0)

        draft = tmp_path / "drafts" / "addhealth_dep-total-test.yaml"
        draft.parent.mkdir()
        args = ["norms", "build", "addhealth_dep", "--scale", "total", "--wave", "test", "--method", "linear_t"]
        args += ["--min-group-n", "1", "--out", str(draft), "--database", db_url]
        run = CliRunner().invoke(main, args)
        assert run.exit_code == 0, run.output
        data = yaml.safe_load(draft.read_text("utf-8"))
        assert (data["id"], data["version"], data["status"], data["method"]) == (
            "addhealth_dep-total-test",
            "test",
            "draft",
            "linear_t",
        )
        assert data["provenance"]["n"] == 4344

        grade_groups = {g["grade"]: g for g in data["groups"] if "grade" in g and "gender" not in g}
        assert sorted(grade_groups) == sorted(by_grade)
        for grade, values in by_grade.items():
            group = grade_groups[grade]
            assert group["n"] == len(values)
            assert group["mean"] == pytest.approx(statistics.mean(values), abs=1e-6)
            assert group["sd"] == pytest.approx(statistics.stdev(values), abs=1e-6)
            assert group["distribution"] == [[int(v), c] for v, c in sorted(Counter(values).items())]
        cells = {(g["grade"], g["gender"]): g["n"] for g in data["groups"] if "grade" in g and "gender" in g}
        assert cells == dict(by_cell)
        (everyone,) = [g for g in data["groups"] if "grade" not in g and "gender" not in g]
        all_values = [v for values in by_grade.values() for v in values]
        assert everyone["n"] == 4344
        assert everyone["mean"] == pytest.approx(statistics.mean(all_values), abs=1e-6)
        assert everyone["sd"] == pytest.approx(statistics.stdev(all_values), abs=1e-6)

        # Activate a copy; min_group_n 500 sends everyone to their grade group.
        assert max(by_cell.values()) < 500 <= min(len(v) for v in by_grade.values())
        active = dict(data, status="active", min_group_n=500)
        (root / "norms").mkdir()
        (root / "norms" / "addhealth_dep-total-test.yaml").write_text(
            yaml.safe_dump(active, allow_unicode=True, sort_keys=False), "utf-8"
        )
        services.store.reload()
        assert services.declarations.active_norm("addhealth_dep", "total").id == "addhealth_dep-total-test"

        extra = tmp_path / "extra.csv"
        extra.write_text("rownames,grade,depression,anxiety\nx9001,9,3,0\n", "utf-8")
        with services.db.transaction() as session:
            session.add(
                Student(
                    school_id=school.id,
                    class_id=classes[9].id,
                    name="AH extra",
                    gender="F",
                    school_student_no="x9001",
                    grade_level=9,
                )
            )
            session.flush()
            assert import_answers(session, services, extra, "addhealth_dep", "addhealth_csv").recorded == 1

        # Expected from the CSV alone; mean and SD rounded to 6 decimals as the YAML stores them.
        grade9 = by_grade[9]
        mean9, sd9 = round(statistics.mean(grade9), 6), round(statistics.stdev(grade9), 6)
        with services.db.sessionmaker() as session:
            score = session.scalars(
                select(Score).join(Response).join(Student).where(Student.school_student_no == "x9001")
            ).one()
            assert score.raw_score == 3.0
            assert score.t_score == pytest.approx(50 + 10 * (3 - mean9) / sd9, abs=1e-9)
            assert score.percentile == pytest.approx(midpoint_pr(3.0, grade9), abs=1e-9)
            assert (score.norm_set_id, score.norm_set_version) == ("addhealth_dep-total-test", "test")
            # Scores stored before the norm set was active carry no T.
            stamped = session.scalars(select(Score.id).where(Score.t_score.is_not(None))).all()
            assert stamped == [score.id]
    finally:
        services.db.dispose()


def test_linear_t_skips_a_group_without_sd():
    one = NormGroup(1, 7, "F", mean=3.0)  # a single student: SD 0, dropped by build_norm_data
    grade = NormGroup(40, 7, None, mean=2.0, sd=2.0)
    norm = NormSet("n", "1", "x", "total", "linear_t", "active", {}, (one, grade), 1)
    assert norm.group_for(7, "F") is grade
    assert norm.convert(4.0, 7, "F").t == 60.0  # 50 + 10 * (4 - 2) / 2


def test_a_region_group_comes_before_the_citywide_one():
    city = NormGroup(100, 7, None, mean=2.0, sd=2.0)
    district = NormGroup(100, 7, None, region="D01", mean=4.0, sd=2.0)
    norm = NormSet("n", "1", "x", "total", "linear_t", "active", {}, (city, district), 1)
    assert norm.group_for(7, "F", "D01") is district
    assert norm.group_for(7, "F", "D02") is city and norm.group_for(7, "F") is city
    assert norm.convert(4.0, 7, "M", "D01").t == 50.0 and norm.convert(4.0, 7, "M").t == 60.0
