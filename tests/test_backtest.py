"""Back-testing and activating a changed alert ruleset on the real NHANES answers.

The NHANES PHQ-9 file is imported once for the module, with the same
enrolment and :func:`xinshu.answers.import_answers` as
tests/test_nhanes_phq9.py, into one school. The per-response re-evaluation
(warning episodes, cases, notifications) is stubbed out during this import: the
back-test reads only the stored responses and scores (its levels are the
rules' levels, without episodes or judgements), the episode path is covered
by tests/test_nhanes_phq9.py and tests/test_episodes.py, and the stub cuts
the import from ~25 s to ~8 s.

Expected counts come from the bureau's PHQ-9 rules re-implemented by hand
over DPQ_J.csv (tests/independent.py, with the adolescent cut-off as a
parameter). The GAD-7, ASQ and report rules cannot fire on this data (no such
responses or reports), nor can phq9.worsened (one response per student).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner
from independent import item9, phq9_band, phq9_level, phq9_rows, phq9_total
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from xinshu.answers import import_answers
from xinshu.cli import main
from xinshu.declarations.registry import load_declarations
from xinshu.episodes import Change
from xinshu.models import Response, RiskWarning, RulesetActivation, Score, Student
from xinshu.orgs import add_org_unit
from xinshu.services import PROJECT_ROOT, build_services, load_plugins

DATA_DIR = Path(os.environ.get("XINSHU_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
DPQ_J = DATA_DIR / "nhanes_phq9" / "DPQ_J.csv"
ACTIVE_PHQ9 = PROJECT_ROOT / "rules" / "alerts" / "phq9.yaml"


# --- the bureau's PHQ-9 rules by hand, with the cut-off as a parameter -----------------------------------------------


def phq9_level_with_cutoff(row: dict[str, str], cutoff: int) -> int:
    """rules/alerts/phq9.yaml by hand (0 = no rule), ``phq9.adolescent_cutoff`` at ``total >= cutoff``."""
    total, q9 = phq9_total(row), item9(row)
    band = phq9_band(total)
    levels = [0]
    if q9 is not None and q9 >= 2 and band == "severe":
        levels.append(4)  # phq9.item9_frequent_and_severe
    if q9 is not None and q9 >= 1:
        levels.append(3)  # phq9.item9
    if q9 is None:
        levels.append(1)  # phq9.item9_unanswered (blank, 7 refused, 9 don't know)
    if band == "severe":
        levels.append(3)  # phq9.severe
    if band == "moderately_severe":
        levels.append(2)  # phq9.moderately_severe
    if total is not None and total >= cutoff:
        levels.append(1)  # phq9.adolescent_cutoff
    return max(levels)


def _seqn(row: dict[str, str]) -> str:
    return str(int(float(row["SEQN"])))


@pytest.fixture(scope="module")
def expected() -> dict:
    """Levels of every enrolled student (every SEQN; unanswered rows are never imported: 0)."""
    if not DPQ_J.is_file():
        pytest.skip(f"shared data not found at {DATA_DIR} (set XINSHU_SHARED_DATA)")
    with DPQ_J.open(newline="") as handle:
        everyone = [_seqn(r) for r in csv.DictReader(handle)]
    answered = phq9_rows(DPQ_J)
    for row in answered:  # the parameterised variant is the hand-written rules of independent.py at 11
        assert phq9_level_with_cutoff(row, 11) == (phq9_level(row) or 0)
    before = dict.fromkeys(everyone, 0) | {_seqn(r): phq9_level_with_cutoff(r, 11) for r in answered}
    after = dict.fromkeys(everyone, 0) | {_seqn(r): phq9_level_with_cutoff(r, 10) for r in answered}
    changed = {s for s in everyone if before[s] != after[s]}
    count_before, count_after = Counter(before.values()), Counter(after.values())
    return {
        "students": len(everyone),
        "answered": len(answered),
        "seqns": everyone,
        "changed": changed,
        "levels_before": {str(lv): count_before.get(lv, 0) for lv in range(5)},
        "levels_after": {str(lv): count_after.get(lv, 0) for lv in range(5)},
        "totals_of_changed": {phq9_total(r) for r in answered if _seqn(r) in changed},
    }


@pytest.fixture(scope="module")
def database(expected, tmp_path_factory) -> str:
    """A SQLite file holding the NHANES answers of one school (S1); its URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('backtest') / 'xinshu.db'}"
    services = build_services({"DATABASE_URL": url}, with_db=True)
    services.db.create_all()
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        school = add_org_unit(session, "S1", "一中", "school", district)
        grade = add_org_unit(session, "S1-G07", "七年级", "grade", school)
        klass = add_org_unit(session, "S1-G07-C01", "七年级1班", "class", grade)
        session.add_all(
            Student(school_id=school.id, class_id=klass.id, name=f"学生{i}", gender="F", grade_level=7,
                    school_student_no=seqn)
            for i, seqn in enumerate(expected["seqns"])
        )  # fmt: skip
        session.flush()
        with mock.patch("xinshu.alerting.reevaluate", lambda *args, **kwargs: Change()):
            result = import_answers(session, services, DPQ_J, "phq9", "nhanes_dpq")
    assert result.recorded == expected["answered"] == 5094
    with services.db.sessionmaker() as session:
        assert session.scalar(select(func.count()).select_from(Response)) == 5094
        assert session.scalar(select(func.count()).select_from(Score)) == 5094
        assert session.scalar(select(func.count()).select_from(RiskWarning)) == 0
    services.db.dispose()
    return url


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """rules/alerts/phq9.yaml with the adolescent cut-off lowered from 11 to 10."""
    text = ACTIVE_PHQ9.read_text("utf-8")
    assert text.count("gte: 11") == 1
    path = tmp_path / "candidate" / "phq9.yaml"
    path.parent.mkdir()
    path.write_text(text.replace("gte: 11", "gte: 10"), "utf-8")
    return path


@pytest.fixture
def invalid_candidate(tmp_path: Path) -> tuple[Path, int]:
    """rules/alerts/phq9.yaml with a level 5; the file and the line of that level."""
    text = ACTIVE_PHQ9.read_text("utf-8")
    assert "    level: 4\n" in text
    path = tmp_path / "invalid" / "phq9.yaml"
    path.parent.mkdir()
    path.write_text(text.replace("    level: 4\n", "    level: 5\n", 1), "utf-8")
    line = path.read_text("utf-8").splitlines().index("    level: 5") + 1
    return path, line


@pytest.fixture
def project_root_env(monkeypatch):
    """The CLI reads the project's declarations (whatever the caller's environment says)."""
    monkeypatch.delenv("XINSHU_DECLARATIONS", raising=False)


@pytest.fixture
def declaration_root(tmp_path: Path, monkeypatch) -> Path:
    """A copy of the project's instruments/ and rules/, made the CLI's declaration root."""
    root = tmp_path / "declarations"
    for folder in ("instruments", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, root / folder)
    monkeypatch.setenv("XINSHU_DECLARATIONS", str(root))
    return root


def _diff(candidate: Path, url: str, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["rules", "diff", str(candidate), "--database", url, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _read(url: str, stmt) -> list:
    """Rows of ``stmt`` read straight from the database file (no services, no declarations)."""
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            return list(session.scalars(stmt))
    finally:
        engine.dispose()


def _activations(url: str) -> list[RulesetActivation]:
    return _read(url, select(RulesetActivation).order_by(RulesetActivation.id))


def test_diff_matches_the_hand_computed_counts(database, expected, candidate, project_root_env):
    active_before = ACTIVE_PHQ9.read_bytes()
    report = _diff(candidate, database, "--list")
    assert report["students"] == expected["students"] == 5533
    assert report["levels_before"] == expected["levels_before"]
    assert report["levels_after"] == expected["levels_after"]
    assert report["changed"] == len(expected["changed"]) > 0
    # who changes: exactly the students with a total of 10 and no other rule, from no warning to level 1
    assert expected["totals_of_changed"] == {10}
    assert report["per_school"] == {"S1": {"up": len(expected["changed"])}}
    assert {(c["school"], c["from"], c["to"], c["rule"]) for c in report["students_changed"]} == {
        ("S1", 0, 1, "phq9.adolescent_cutoff")
    }
    ids = [c["student_id"] for c in report["students_changed"]]
    numbers = _read(database, select(Student.school_student_no).where(Student.id.in_(ids)))
    assert len(numbers) == len(ids) and set(numbers) == expected["changed"]
    assert ACTIVE_PHQ9.read_bytes() == active_before


def test_diff_of_the_active_rules_changes_nobody(database, expected, project_root_env):
    report = _diff(ACTIVE_PHQ9, database)
    assert report["changed"] == 0 and report["per_school"] == {}
    assert report["levels_before"] == report["levels_after"] == expected["levels_before"]
    assert "students_changed" not in report


def _assert_refused(result, line: int) -> None:
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert errors, result.output
    for error in errors:
        assert re.match(rf"rules/alerts/phq9\.yaml:{line}: rules\[0\]\.level: ", error), error
    assert "5 is greater than the maximum of 4" in result.stderr


def test_an_invalid_candidate_is_refused_with_file_and_line(database, invalid_candidate, project_root_env):
    path, line = invalid_candidate
    active_before = ACTIVE_PHQ9.read_bytes()
    result = CliRunner().invoke(main, ["rules", "diff", str(path), "--database", database])
    _assert_refused(result, line)
    assert result.stdout == ""
    assert ACTIVE_PHQ9.read_bytes() == active_before


def test_an_invalid_candidate_is_not_activated(database, invalid_candidate, declaration_root):
    path, line = invalid_candidate
    active = declaration_root / "rules" / "alerts" / "phq9.yaml"
    before, count = active.read_bytes(), len(_activations(database))
    result = CliRunner().invoke(
        main, ["rules", "activate", str(path), "--by", "张主任", "--reason", "试一试", "--database", database]
    )
    _assert_refused(result, line)
    assert active.read_bytes() == before
    assert len(_activations(database)) == count


def test_activation_needs_a_reason(database, candidate, declaration_root):
    active = declaration_root / "rules" / "alerts" / "phq9.yaml"
    before, count = active.read_bytes(), len(_activations(database))
    result = CliRunner().invoke(
        main, ["rules", "activate", str(candidate), "--by", "张主任", "--reason", "  ", "--database", database]
    )
    assert result.exit_code == 1 and "reason" in result.stderr
    assert active.read_bytes() == before and len(_activations(database)) == count


def test_activate_records_who_why_and_the_backtest(database, expected, candidate, declaration_root):
    active = declaration_root / "rules" / "alerts" / "phq9.yaml"
    repo_before = ACTIVE_PHQ9.read_bytes()
    count = len(_activations(database))
    reason = "采用界值10以提高青少年抑郁筛查敏感度"
    result = CliRunner().invoke(
        main, ["rules", "activate", str(candidate), "--by", "张主任", "--reason", reason, "--database", database]
    )
    assert result.exit_code == 0, result.output
    changed = len(expected["changed"])
    assert f"by 张主任: {changed} students change level" in result.stdout

    # the candidate is now the active file of the declaration root, and the repository is untouched
    assert active.read_bytes() == candidate.read_bytes()
    assert ACTIVE_PHQ9.read_bytes() == repo_before
    _pm, scorers, channels = load_plugins({})
    fresh = load_declarations([declaration_root], scorers, channels)
    cutoff = next(r for r in fresh.rulesets["phq9"].rules if r.id == "phq9.adolescent_cutoff")
    assert cutoff.when == {"scale": "total", "gte": 10}

    records = _activations(database)
    assert len(records) == count + 1
    record = records[-1]
    assert (record.activated_by, record.reason) == ("张主任", reason)
    assert record.backtest == {
        "students": expected["students"],
        "changed": changed,
        "levels_before": expected["levels_before"],
        "levels_after": expected["levels_after"],
        "per_school": {"S1": {"up": changed}},
    }
    files = {
        f"rules/alerts/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((declaration_root / "rules" / "alerts").glob("*.yaml"))
    }
    assert record.files == files
    combined = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(files.items())).encode()).hexdigest()
    assert record.digest == combined and result.stdout.startswith(f"activated alert rules {combined[:12]} ")

    # the new rule is the active one: replaying the same candidate changes nobody
    report = _diff(candidate, database)
    assert report["changed"] == 0
    assert report["levels_before"] == report["levels_after"] == expected["levels_after"]
