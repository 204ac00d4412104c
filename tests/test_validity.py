"""Validity indicators, the longstring index and re-test routing.

The instrument ``psyval`` (``tests/declarations_psy/instruments/psyval.yaml``)
has items, in this order, ``pv_1 … pv_6`` (0–3; ``pv_2`` and ``pv_4`` reverse
keyed, 3 − x) and the lie items ``pv_l1 … pv_l3`` (0/1); ``total`` sums
``pv_1 … pv_6`` (all six required), ``lie`` sums the lie items (role validity);
``pv_6`` is critical at 1 or more. Its indicators:

* ``lie_high``: ``lie`` ≥ 3;
* ``straight``: longest run of identical consecutive answers (all nine items, as
  answered) ≥ 6;
* ``fast``: seconds / answered items < 2;
* ``incons``: at least 2 of the pairs (pv_1, pv_2), (pv_3, pv_4) differ by ≥ 2
  after reverse keying.

Its alert rules (``rules/alerts/psyval.yaml``): ``psyval.critical`` level 3 on
the critical flag, ``psyval.high_total`` level 2 when ``total`` ≥ 10.

Every expected value below is worked by hand in the comment next to it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from xinshu.alerting import record_response
from xinshu.models import Case, Response, Score, Student
from xinshu.models import RiskWarning as WarningRow
from xinshu.orgs import add_org_unit
from xinshu.scoring import longest_run, score_matrix
from xinshu.services import Services, build_services

REPO = Path(__file__).resolve().parent.parent
PSY = Path(__file__).resolve().parent / "declarations_psy"
ITEMS = ("pv_1", "pv_2", "pv_3", "pv_4", "pv_5", "pv_6", "pv_l1", "pv_l2", "pv_l3")
NAN = float("nan")

# BASE: total 1 + (3−2) + 0 + (3−3) + 1 + 0 = 3; lie 0+1+0 = 1; longest run 2 (pv_6, pv_l1 = 0, 0);
# pairs |1 − 1| = 0 and |0 − 0| = 0.
BASE = [1, 2, 0, 3, 1, 0, 0, 1, 0]

# (answers, seconds, indicators expected to fire)
BOUNDARY_ROWS = [
    (BASE, 60, set()),  # 60 / 9 = 6.7 s per item
    ([1, 2, 0, 3, 1, 0, 1, 1, 0], 60, set()),  # lie 2 < 3
    ([1, 2, 0, 3, 1, 0, 1, 1, 1], 60, {"lie_high"}),  # lie 3 (run 3 < 6)
    ([1, 2, 1, 1, 0, 0, 0, 0, 0], 60, set()),  # run pv_5..pv_l3 = 5 < 6; pairs 0 and |1 − 2| = 1
    ([1, 2, 1, 0, 0, 0, 0, 0, 0], 60, {"straight"}),  # run pv_4..pv_l3 = 6; one pair |1 − 3| = 2 < 2 pairs
    (BASE, 18, set()),  # 18 / 9 = 2.0, not below 2
    (BASE, 17.9, {"fast"}),  # 17.9 / 9 = 1.99
    ([1, 2, 0, 3, NAN, 0, 0, 1, 0], 16, set()),  # 8 answered: 16 / 8 = 2.0
    ([1, 2, 0, 3, NAN, 0, 0, 1, 0], 15.9, {"fast"}),  # 15.9 / 8 = 1.99
    ([3, 3, 0, 1, 1, 0, 0, 1, 0], 60, {"incons"}),  # |3 − 0| = 3, |0 − 2| = 2: two pairs
    ([3, 3, 0, 2, 1, 0, 0, 1, 0], 60, set()),  # |3 − 0| = 3, |0 − 1| = 1: one pair
    ([2, 3, 1, 0, 1, 0, 0, 1, 0], 60, {"incons"}),  # |2 − 0| = 2, |1 − 3| = 2: both exactly 2
    ([1, 3, 1, 0, 1, 0, 0, 1, 0], 60, set()),  # |1 − 0| = 1 < 2, |1 − 3| = 2: one pair
    ([3, 3, 0, 1, NAN, 0, 0, 1, 0], 60, {"incons"}),  # a missing item outside the pairs changes nothing
    ([3, 3, 0, NAN, 1, 0, 0, 1, 0], 60, set()),  # pair 2 unanswered never counts: one pair
]


def make_root(tmp_path: Path) -> Path:
    """tests/declarations_psy plus the project's levels and intervention templates."""
    root = tmp_path / "declarations"
    shutil.copytree(PSY, root)
    shutil.copy(REPO / "rules" / "levels.yaml", root / "rules" / "levels.yaml")
    shutil.copytree(REPO / "rules" / "interventions", root / "rules" / "interventions")
    return root


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}",
            "DECLARATION_ROOT": str(make_root(tmp_path)),
            "XINSHU_PLUGINS": "",
            "XINSHU_BLOCK_PLUGINS": "",
        }
    )
    svc.db.create_all()
    yield svc
    svc.db.dispose()


def test_declaration(services: Services) -> None:
    instrument = services.declarations.instruments["psyval"]
    assert instrument.item_ids == ITEMS
    assert [i.id for i in instrument.items if i.reverse] == ["pv_2", "pv_4"]
    assert instrument.scale("lie").role == "validity"
    assert [(v["id"], v["kind"]) for v in instrument.validity] == [
        ("lie_high", "scale_at_least"),
        ("straight", "longstring"),
        ("fast", "too_fast"),
        ("incons", "inconsistent_pairs"),
    ]


def test_each_indicator_fires_exactly_at_its_boundary(services: Services) -> None:
    instrument = services.declarations.instruments["psyval"]
    answers = np.array([row for row, _, _ in BOUNDARY_ROWS], dtype=float)
    seconds = np.array([s for _, s, _ in BOUNDARY_ROWS], dtype=float)
    table = score_matrix(instrument, answers, services.scorers(), seconds)
    assert set(table.invalid) == {"lie_high", "straight", "fast", "incons"}
    for i, (row, secs, expected) in enumerate(BOUNDARY_ROWS):
        fired = {ident for ident, mask in table.invalid.items() if mask[i]}
        assert fired == expected, (i, row, secs)
        result = table.result(i)
        assert {f.removeprefix("invalid:") for f in result.flags if f.startswith("invalid:")} == expected
        assert result.protocol_valid == (not expected)
    assert table.raw["total"][0] == 3 and table.raw["lie"][0] == 1
    assert table.raw["lie"][2] == 3
    assert table.result(7).flags == ("incomplete:total",)  # pv_5 missing, total needs all six


def test_too_fast_is_skipped_without_a_time(services: Services) -> None:
    instrument = services.declarations.instruments["psyval"]
    table = score_matrix(instrument, np.array([BASE], dtype=float), services.scorers())
    assert "fast" not in table.invalid
    assert table.result(0).protocol_valid


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([1, 1, 1, 2, 2], 3),
        ([1, 2, 1, 2, 1], 1),
        ([0, 0, 0, 0, 0], 5),
        ([2, 2, NAN, 2, 2], 2),  # NaN breaks the run (4 without it)
        ([NAN, 3, 3, 3, NAN], 3),
        ([NAN, NAN, NAN, NAN, NAN], 0),  # nothing answered: no run at all
        ([NAN, NAN, 1, NAN, NAN], 1),
    ],
)
def test_longest_run_rows(row: list[float], expected: int) -> None:
    assert longest_run(np.array([row], dtype=float)).tolist() == [expected]


def test_longest_run_matrix_and_edges() -> None:
    matrix = np.array([[1, 1, 1, 2, 2], [2, 2, NAN, 2, 2], [4, 4, 4, 4, 1]], dtype=float)
    assert longest_run(matrix).tolist() == [3, 2, 4]
    assert longest_run(np.empty((2, 0))).tolist() == [0, 0]
    assert longest_run(np.array([[4.0], [NAN]])).tolist() == [1, 0]


def enrol(session, count: int) -> list[Student]:
    city = add_org_unit(session, "c01", "示例市", "city", None)
    district = add_org_unit(session, "c01-d01", "示例区", "district", city)
    school = add_org_unit(session, "c01-d01-s01", "示例中学", "school", district)
    grade = add_org_unit(session, "c01-d01-s01-g8", "八年级", "grade", school)
    klass = add_org_unit(session, "c01-d01-s01-g8-c1", "八年级（1）班", "class", grade)
    students = [
        Student(
            school_id=school.id,
            class_id=klass.id,
            name=f"学生{n}",
            gender="F",
            school_student_no=f"2025{n:04d}",
            grade_level=8,
        )
        for n in range(1, count + 1)
    ]
    session.add_all(students)
    session.flush()
    return students


def answers(row: list[float]) -> dict[str, float]:
    return dict(zip(ITEMS, row, strict=True))


# HIGH: total 3 + (3−0) + 3 + (3−0) + 3 + 0 = 15 >= 10; lie 1; run 2; pairs |3 − 3| = 0 twice.
HIGH = [3, 0, 3, 0, 3, 0, 0, 1, 0]
# HIGH_LIE: the same symptoms with every lie item endorsed: lie 3 → invalid (run 1, 1, 1 = 3).
HIGH_LIE = [3, 0, 3, 0, 3, 0, 1, 1, 1]
# HIGH_LIE_CRITICAL: as HIGH_LIE with pv_6 = 2: total 17, critical pv_6.
HIGH_LIE_CRITICAL = [3, 0, 3, 0, 3, 2, 1, 1, 1]


def test_invalid_protocol_goes_to_retest_and_only_critical_items_warn(services: Services) -> None:
    with services.db.transaction() as session:
        valid, liar, liar_critical, hasty = enrol(session, 4)

        # Control: a valid protocol with total 15 warns at level 2.
        outcome = record_response(session, services, valid, "psyval", answers(HIGH), {}, "test", seconds=60)
        assert outcome.response.status == "scored"
        assert (outcome.warning.level, outcome.warning.rule_id) == (2, "psyval.high_total")
        assert outcome.warning.inputs == [
            {"rule_id": "psyval.high_total", "level": 2, "inputs": {"psyval:scale:total": 15.0}, "ruleset": "psyval"}
        ]

        # The same total with lie 3: re-test, and no warning from the total.
        outcome = record_response(session, services, liar, "psyval", answers(HIGH_LIE), {}, "test", seconds=60)
        assert outcome.response.status == "retest"
        assert outcome.warning is None
        assert outcome.result.flags == ("invalid:lie_high",)

        # Invalid as well, but pv_6 = 2: the critical rule alone fires (level 3); high_total is not evaluated.
        outcome = record_response(
            session, services, liar_critical, "psyval", answers(HIGH_LIE_CRITICAL), {}, "test", seconds=60
        )
        assert outcome.response.status == "retest"
        assert (outcome.warning.level, outcome.warning.rule_id) == (3, "psyval.critical")
        assert outcome.warning.inputs == [
            {
                "rule_id": "psyval.critical",
                "level": 3,
                "inputs": {"psyval:flag:critical:pv_6": True},
                "ruleset": "psyval",
            }
        ]
        assert outcome.case_opened is True
        assert set(outcome.result.flags) == {"critical:pv_6", "invalid:lie_high"}

        # Too fast: 10 s for 9 answers = 1.1 s per item < 2 → re-test, no warning.
        outcome = record_response(session, services, hasty, "psyval", answers(HIGH), {}, "test", seconds=10)
        assert outcome.response.status == "retest"
        assert outcome.warning is None
        assert outcome.result.flags == ("invalid:fast",)
        ids = {s.school_student_no: s.id for s in (valid, liar, liar_critical, hasty)}

    with services.db.sessionmaker() as session:
        by_student = {
            r.student_id: r for r in session.scalars(select(Response).where(Response.instrument_id == "psyval"))
        }
        assert [by_student[ids[no]].status for no in sorted(ids)] == ["scored", "retest", "retest", "retest"]
        assert by_student[ids["20250004"]].duration_seconds == 10
        warnings = {(w.student_id, w.level, w.rule_id) for w in session.scalars(select(WarningRow))}
        assert warnings == {(ids["20250001"], 2, "psyval.high_total"), (ids["20250003"], 3, "psyval.critical")}
        assert sorted(session.scalars(select(Case.student_id))) == [ids["20250001"], ids["20250003"]]
        # Scores of an invalid protocol are still stored, with the flags that explain the re-test.
        liar_scores = {
            s.scale: (s.raw_score, s.valid, tuple(s.flags))
            for s in session.scalars(select(Score).where(Score.response_id == by_student[ids["20250002"]].id))
        }
        assert liar_scores == {
            "total": (15.0, True, ("invalid:lie_high",)),
            "lie": (3.0, True, ("invalid:lie_high",)),
        }
