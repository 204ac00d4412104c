"""The real NHANES PHQ-9 answers through xinshu's own import, scoring and rules.

Expected counts come from tests/independent.py (plain Python over the CSV)
and are also pinned as literals, counted once by hand-written script.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from independent import expected_phq9
from sqlalchemy import func, select

from xinshu.cli import main
from xinshu.models import Response, RiskWarning, Student

PINNED_BANDS = {"minimal": 3772, "mild": 837, "moderate": 292, "moderately_severe": 124, "severe": 43, "incomplete": 26}
PINNED_ITEM9 = 192


def _score_csv(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_score_command_reproduces_bands_and_item9(shared_data):
    dpq = shared_data / "nhanes_phq9" / "DPQ_J.csv"
    result = CliRunner().invoke(main, ["score", "phq9", str(dpq), "--profile", "nhanes_dpq"])
    assert result.exit_code == 0, result.output
    rows = _score_csv(result.stdout)
    bands = dict.fromkeys(PINNED_BANDS, 0)
    for row in rows:
        bands[row["total_band"] or "incomplete"] += 1
    expected = expected_phq9(dpq)
    assert bands == PINNED_BANDS == dict(expected["bands"])
    assert sum("critical:phq9_9" in r["flags"].split(";") for r in rows) == PINNED_ITEM9 == expected["item9_above_0"]
    assert len(rows) == expected["answered"] == 5094
    assert "5094 scored, 439 blank rows skipped" in result.stderr


def test_missing_codes_are_never_summed(shared_data):
    """A row with a 7 or 9 code has no total (the declared rule needs all 9 items)."""
    dpq = shared_data / "nhanes_phq9" / "DPQ_J.csv"
    with dpq.open(newline="") as handle:
        coded = {
            str(int(float(r["SEQN"])))
            for r in csv.DictReader(handle)
            if any(r[f"DPQ0{i}0"].strip() in ("7.0", "9.0") for i in range(1, 10))
        }
    assert len(coded) > 0
    result = CliRunner().invoke(main, ["score", "phq9", str(dpq), "--profile", "nhanes_dpq"])
    rows = {r["respondent"]: r for r in _score_csv(result.stdout)}
    for seqn in coded:
        assert rows[seqn]["total"] == "" and rows[seqn]["total_band"] == ""
        assert "incomplete:total" in rows[seqn]["flags"]


def test_console_script_runs_without_a_database(shared_data, tmp_path):
    dpq = shared_data / "nhanes_phq9" / "DPQ_J.csv"
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "xinshu"), "score", "phq9", str(dpq), "--profile", "nhanes_dpq"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert completed.stdout.splitlines()[0] == "respondent,total,total_band,flags"
    assert completed.stdout.splitlines()[1] == "93705,0,minimal,"
    assert not (tmp_path / "instance").exists()


def test_every_item9_respondent_gets_a_warning(shared_data, services, org, tmp_path):
    """Import the real answers; whoever answered item 9 above 0 is warned, whatever the total."""
    from xinshu.answers import import_answers
    from xinshu.rosters import get_school

    dpq = shared_data / "nhanes_phq9" / "DPQ_J.csv"
    expected = expected_phq9(dpq)
    with services.db.transaction() as session:
        school = get_school(session, "S1")
        _enrol(session, school, _seqns(dpq))
        result = import_answers(session, services, dpq, "phq9", "nhanes_dpq")
    assert result.recorded == 5094 and result.blank_rows == 439
    with services.db.sessionmaker() as session:
        warned = set(
            session.scalars(select(Student.school_student_no).join(RiskWarning, RiskWarning.student_id == Student.id))
        )
        assert expected["item9_respondents"] <= warned
        levels = dict(session.execute(select(RiskWarning.level, func.count()).group_by(RiskWarning.level)).all())
        assert {lv: levels.get(lv, 0) for lv in (1, 2, 3, 4)} == expected["levels"]
        low_total = session.scalars(select(RiskWarning).join(Response).where(RiskWarning.rule_id == "phq9.item9")).all()
        assert any(w.inputs[0]["inputs"] == {"phq9:flag:critical:phq9_9": True} for w in low_total)
    # importing the same file again adds nothing
    with services.db.transaction() as session:
        again = import_answers(session, services, dpq, "phq9", "nhanes_dpq")
    assert again.recorded == 0 and again.duplicates == 5094 and again.warnings == 0


def _seqns(path):
    with path.open(newline="") as handle:
        return [str(int(float(r["SEQN"]))) for r in csv.DictReader(handle)]


def _enrol(session, school, seqns):
    from xinshu.models import OrgUnit
    from xinshu.orgs import add_org_unit

    grade = add_org_unit(session, "S1-G07", "七年级", "grade", school)
    klass = add_org_unit(session, "S1-G07-C01", "七年级1班", "class", grade)
    session.add_all(
        Student(school_id=school.id, class_id=klass.id, name=f"学生{i}", gender="F", grade_level=7, school_student_no=s)
        for i, s in enumerate(seqns)
    )
    session.flush()
    assert session.get(OrgUnit, klass.id).path.startswith(school.path)
