"""``xinshu demo`` end to end on the real NHANES answers; its JSON summary
must match the counts computed independently (tests/independent.py)."""

from __future__ import annotations

import json

import openpyxl
from click.testing import CliRunner
from independent import expected_phq9
from sqlalchemy import select
from stdnum.cn import ric

from xinshu.cli import main
from xinshu.db import Database
from xinshu.models import InboxMessage, Notification, Student

# In-app inbox targets per level in rules/levels.yaml (email is not configured
# in the demo, so only inbox rows are queued): 2, 3, 3 and 4 roles.
INBOX_TARGETS = {1: 2, 2: 3, 3: 3, 4: 4}


def test_demo_summary_matches_independent_counts(shared_data, tmp_path):
    db = tmp_path / "demo.db"
    result = CliRunner().invoke(main, ["demo", "--database", f"sqlite:///{db}", "--data-dir", str(shared_data)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    expected = expected_phq9(shared_data / "nhanes_phq9" / "DPQ_J.csv")
    assert summary["students"] == expected["rows"] == 5533
    assert summary["responses_scored"] == expected["answered"] == 5094
    assert summary["severity_bands"] == dict(expected["bands"])
    assert summary["item9_above_0"] == expected["item9_above_0"]
    assert summary["warnings_per_level"] == {str(k): v for k, v in expected["levels"].items()}
    assert summary["cases_opened"] == expected["cases"]
    delivered = sum(INBOX_TARGETS[level] * n for level, n in expected["levels"].items())
    assert summary["notifications"] == {"delivered": delivered, "pending": 0, "undeliverable": 0}
    assert "http://127.0.0.1:5000/admin/" in result.stderr and "bureau" in result.stderr

    rosters = sorted((tmp_path / "demo_rosters").glob("*.xlsx"))
    assert [p.stem for p in rosters] == ["D01-S01", "D01-S02", "D02-S01", "D02-S02"]
    sheet = openpyxl.load_workbook(rosters[0]).active
    header = [c.value for c in sheet[1]]
    id_cell = sheet.cell(row=2, column=header.index("身份证号") + 1)
    assert isinstance(id_cell.value, str) and id_cell.number_format == "@" and ric.is_valid(id_cell.value)

    database = Database(f"sqlite:///{db}")
    with database.sessionmaker() as session:
        stored = session.scalar(select(Student).where(Student.id_number == id_cell.value))
        assert stored is not None and stored.student_number == "G" + id_cell.value  # exact strings
        people = list(session.execute(select(Student.name, Student.id_number)))
        texts = [json.dumps(n.payload, ensure_ascii=False) for n in session.scalars(select(Notification))]
        texts += [m.subject + m.body for m in session.scalars(select(InboxMessage))]
        assert len(texts) == 2 * delivered
        assert not any(name in text or id_number in text for text in texts for name, id_number in people)
    database.dispose()


def test_demo_refuses_to_overwrite_another_database(shared_data, tmp_path):
    other = tmp_path / "school.db"
    other.write_bytes(b"keep me")
    result = CliRunner().invoke(main, ["demo", "--database", f"sqlite:///{other}", "--data-dir", str(shared_data)])
    assert result.exit_code == 1 and "only replaces a file named demo.db" in result.stderr
    assert other.read_bytes() == b"keep me"
