"""Every condition type of the alert-rule language at its boundaries.

Rules are built here as :class:`xinshu.rules.RuleSet` objects and evaluated by
:class:`xinshu.rules.Engine` on :class:`xinshu.facts.Facts` tables whose
columns are written out by hand with numpy. Each expected mask is worked out
by hand next to the data (a threshold, one below, one above, unknown).

The declaration checks at the end break copies of the project's
declarations in a temporary root, like tests/test_declarations.py.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from xinshu.declarations.registry import load_declarations
from xinshu.errors import DeclarationsInvalid
from xinshu.facts import Facts, facts_from_rows
from xinshu.rules import Decision, Engine, FiredRule, Rule, RuleSet
from xinshu.services import PROJECT_ROOT, load_plugins

NAN = np.nan
T, F = True, False


def ruleset(*rules: tuple[str, int, dict], instrument: str | None = "phq9", ident: str = "t") -> RuleSet:
    """A ruleset of ``(rule id, level, when)`` triples."""
    built = tuple(Rule(rid, level, when, {"zh": rid}) for rid, level, when in rules)
    return RuleSet(ident, "1", "digest-" + ident, instrument, built, f"rules/alerts/{ident}.yaml")


def fires(when: dict, facts: Facts, instrument: str | None = "phq9") -> list[bool]:
    """Whether a single level-1 rule with condition ``when`` fires, per row."""
    evaluation = Engine([ruleset(("r", 1, when), instrument=instrument)]).evaluate(facts)
    assert evaluation.fired.shape == (facts.n, 1)
    assert evaluation.level.tolist() == [1 if f else 0 for f in evaluation.fired[:, 0]]
    return evaluation.fired[:, 0].tolist()


def valid(n: int, instrument: str = "phq9") -> dict[str, np.ndarray]:
    return {f"{instrument}:valid": np.ones(n, dtype=bool)}


# --- comparisons: threshold − 1, threshold, threshold + 1, unknown ---------------------------------------------------

BY_OP = {
    "gte": [F, T, T, F],
    "gt": [F, F, T, F],
    "lte": [T, T, F, F],
    "lt": [T, F, F, F],
    "eq": [F, T, F, F],
}


@pytest.mark.parametrize("op", list(BY_OP))
@pytest.mark.parametrize(
    ("kind", "column", "threshold"),
    [("scale", "scale", 11), ("t", "t", 70), ("percentile", "pr", 95)],
)
def test_score_comparisons_at_the_threshold(kind, column, threshold, op):
    values = np.array([threshold - 1, threshold, threshold + 1, NAN], dtype=float)
    facts = Facts(4, {f"phq9:{column}:total": values, **valid(4)})
    assert fires({kind: "total", op: threshold}, facts) == BY_OP[op]


@pytest.mark.parametrize("op", list(BY_OP))
def test_item_comparisons_at_the_threshold(op):
    facts = Facts(4, {"phq9:item:phq9_9": np.array([0.0, 1.0, 2.0, NAN]), **valid(4)})
    assert fires({"item": "phq9_9", op: 1}, facts) == BY_OP[op]


@pytest.mark.parametrize("op", list(BY_OP))
def test_judgement_comparisons_at_the_threshold(op):
    facts = Facts(4, {"judgement:level": np.array([2.0, 3.0, 4.0, NAN])})
    assert fires({"judgement": "level", op: 3}, facts, instrument=None) == BY_OP[op]


def test_fractional_threshold():
    # 69.5 ≥ 69.5 holds, 69.4 does not; 69.6 > 69.5 holds.
    facts = Facts(3, {"phq9:t:total": np.array([69.4, 69.5, 69.6]), **valid(3)})
    assert fires({"t": "total", "gte": 69.5}, facts) == [F, T, T]
    assert fires({"t": "total", "gt": 69.5}, facts) == [F, F, T]


def test_every_comparison_given_must_hold():
    # 10 ≤ total ≤ 14 (the moderate range): 9 no, 10 yes, 14 yes, 15 no, unknown no.
    facts = Facts(5, {"phq9:scale:total": np.array([9.0, 10.0, 14.0, 15.0, NAN]), **valid(5)})
    assert fires({"scale": "total", "gte": 10, "lte": 14}, facts) == [F, T, T, F, F]
    # gt 10 and lt 14: only 11–13; none of the rows.
    assert fires({"scale": "total", "gt": 10, "lt": 14}, facts) == [F, F, F, F, F]


def test_a_missing_column_is_unknown_and_never_fires():
    facts = Facts(2, valid(2))
    for when in (
        {"scale": "total", "gte": 0},
        {"scale": "total", "lte": 0},
        {"t": "total", "lt": 1000},
        {"percentile": "total", "gte": 0},
        {"item": "phq9_9", "gte": 0},
        {"band": "total", "in": ["severe"]},
        {"critical": "phq9_9"},
        {"critical_missing": "phq9_9"},
        {"validity": "lie"},
        {"change": "total", "worsened_by": 1},
        {"change": "total", "band_worsened_by": 1},
        {"teacher_report": ["bullying"]},
        {"parent_report": ["bullying"]},
    ):
        assert fires(when, facts) == [F, F], when
    assert fires({"judgement": "level", "gte": 0}, facts, instrument=None) == [F, F]


# --- bands, items, critical items, validity --------------------------------------------------------------------------


def test_band_in():
    bands = np.array(["severe", "moderately_severe", "moderate", None, "minimal"], dtype=object)
    facts = Facts(5, {"phq9:band:total": bands, **valid(5)})
    assert fires({"band": "total", "in": ["severe", "moderately_severe"]}, facts) == [T, T, F, F, F]
    assert fires({"band": "total", "in": ["moderate"]}, facts) == [F, F, T, F, F]


def test_critical_and_critical_missing():
    facts = Facts(
        3,
        {
            "phq9:flag:critical:phq9_9": np.array([T, F, F]),
            "phq9:flag:critical_missing:phq9_9": np.array([F, T, F]),
            **valid(3),
        },
    )
    assert fires({"critical": "phq9_9"}, facts) == [T, F, F]
    assert fires({"critical_missing": "phq9_9"}, facts) == [F, T, F]


def test_validity_named_and_any():
    facts = Facts(
        4,
        {
            "mht:flag:invalid:mht_lie": np.array([T, F, F, F]),
            "mht:flag:invalid:mht_fast": np.array([F, T, F, F]),
            "mht:taken": np.array([T, T, T, F]),
            "mht:valid": np.array([F, F, T, F]),
        },
    )
    # Row 0: the lie indicator fired. Row 1: another indicator fired. Row 2: valid (a protocol is valid when no
    # indicator fired, xinshu.scoring.ScoreResult.protocol_valid). Row 3: never took the MHT.
    assert fires({"validity": "mht_lie"}, facts, instrument="mht") == [T, F, F, F]
    assert fires({"validity": "any"}, facts, instrument="mht") == [T, T, F, F]
    # No column at all for that instrument: not known to be invalid.
    assert fires({"validity": "any"}, Facts(2, {}), instrument="mht") == [F, F]


def test_validity_any_does_not_fire_for_a_student_without_that_instrument():
    """In a table of several students (a back-test) a student who never took the instrument has False in the
    ``:valid`` column; that is not an invalid protocol (the live one-student table has no column at all)."""
    facts = facts_from_rows(
        [
            {"mht:taken": True, "mht:valid": False, "mht:flag:invalid:mht_lie": True},
            {},  # never took the MHT
            {"mht:taken": True, "mht:valid": True},
        ]
    )
    assert facts.columns["mht:valid"].tolist() == [F, F, T]
    assert fires({"validity": "any"}, facts, instrument="mht") == [T, F, F]
    assert fires({"validity": "any"}, facts_from_rows([{}]), instrument="mht") == [F]


# --- change since the previous response ------------------------------------------------------------------------------


def test_change_worsened_by_exactly_n_and_n_minus_1():
    facts = Facts(
        6,
        {
            # rises:                              5     4     6    prev?  now?   −5
            "phq9:scale:total": np.array([15.0, 14.0, 16.0, 15.0, NAN, 5.0]),
            "phq9:prev:scale:total": np.array([10.0, 10.0, 10.0, NAN, 10.0, 10.0]),
            **valid(6),
        },
    )
    assert fires({"change": "total", "worsened_by": 5}, facts) == [T, F, T, F, F, F]


def test_change_band_worsened_by():
    facts = Facts(
        5,
        {
            # band index rises:                       2    1    3   prev?  −2
            "phq9:bandindex:total": np.array([3.0, 2.0, 4.0, 3.0, 1.0]),
            "phq9:prev:bandindex:total": np.array([1.0, 1.0, 1.0, NAN, 3.0]),
            **valid(5),
        },
    )
    assert fires({"change": "total", "band_worsened_by": 2}, facts) == [T, F, T, F, F]
    assert fires({"change": "total", "band_worsened_by": 1}, facts) == [T, T, T, F, F]


# --- reports ---------------------------------------------------------------------------------------------------------


def test_teacher_and_parent_reports_with_several_categories():
    facts = Facts(
        5,
        {
            "teacher:bullying": np.array([T, F, F, F, F]),
            "teacher:loss": np.array([F, T, F, F, F]),
            "teacher:withdrawal": np.array([F, F, T, F, F]),
            "parent:bullying": np.array([F, F, F, T, F]),
        },
    )
    assert fires({"teacher_report": ["bullying", "loss"]}, facts, instrument=None) == [T, T, F, F, F]
    assert fires({"teacher_report": ["withdrawal"]}, facts, instrument=None) == [F, F, T, F, F]
    # A parent's report is not a teacher's, and the other way round.
    assert fires({"parent_report": ["bullying", "loss"]}, facts, instrument=None) == [F, F, F, T, F]
    assert fires({"parent_report": ["withdrawal", "other"]}, facts, instrument=None) == [F, F, F, F, F]


# --- combinators -----------------------------------------------------------------------------------------------------

ATOMS = ("bullying", "loss", "withdrawal")
COMBOS = list(itertools.product([F, T], repeat=3))  # all 8 rows of three true/false atoms


def _atoms_facts() -> Facts:
    columns = {f"teacher:{a}": np.array([combo[i] for combo in COMBOS]) for i, a in enumerate(ATOMS)}
    return Facts(len(COMBOS), columns)


def _atom(name: str) -> dict:
    return {"teacher_report": [name]}


def test_all_any_not():
    facts = _atoms_facts()
    leaves = [_atom(a) for a in ATOMS]
    assert fires({"all": leaves}, facts, None) == [a and b and c for a, b, c in COMBOS]
    assert fires({"any": leaves}, facts, None) == [a or b or c for a, b, c in COMBOS]
    assert fires({"not": _atom("bullying")}, facts, None) == [not a for a, _b, _c in COMBOS]
    nested = {"all": [_atom("bullying"), {"not": {"any": [_atom("loss"), _atom("withdrawal")]}}]}
    assert fires(nested, facts, None) == [a and not (b or c) for a, b, c in COMBOS]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_at_least_k_of(k):
    facts = _atoms_facts()
    got = fires({"at_least": k, "of": [_atom(a) for a in ATOMS]}, facts, None)
    for combo, fired in zip(COMBOS, got, strict=True):
        count = sum(combo)
        assert fired == (count >= k), (combo, k)
    # exactly k true fires, exactly k − 1 does not
    assert any(f for combo, f in zip(COMBOS, got, strict=True) if sum(combo) == k)
    assert not any(f for combo, f in zip(COMBOS, got, strict=True) if sum(combo) == k - 1)


# --- instrument qualifier, gating on a valid protocol ----------------------------------------------------------------


def test_instrument_on_a_leaf_overrides_the_ruleset_default():
    facts = Facts(
        3,
        {
            "phq9:scale:total": np.array([20.0, 5.0, 20.0]),
            "gad7:scale:total": np.array([5.0, 12.0, 12.0]),
            "phq9:valid": np.array([T, F, F]),
            "gad7:valid": np.array([T, T, F]),
        },
    )
    # Reads gad7's total (not phq9's) and needs gad7's protocol (not phq9's) to be valid.
    assert fires({"scale": "total", "gte": 10, "instrument": "gad7"}, facts) == [F, T, F]
    assert fires({"scale": "total", "gte": 10}, facts) == [T, F, F]
    evaluation = Engine([ruleset(("g", 1, {"scale": "total", "gte": 10, "instrument": "gad7"}))]).evaluate(facts)
    assert evaluation.decision(1).fired[0].inputs == {"gad7:scale:total": 12.0}


def test_score_rules_need_a_valid_protocol_critical_and_validity_rules_do_not():
    n = 2
    facts = Facts(
        n,
        {
            "phq9:scale:total": np.array([25.0, 25.0]),
            "phq9:t:total": np.array([80.0, 80.0]),
            "phq9:pr:total": np.array([99.0, 99.0]),
            "phq9:band:total": np.array(["severe", "severe"], dtype=object),
            "phq9:item:phq9_9": np.array([3.0, 3.0]),
            "phq9:bandindex:total": np.array([4.0, 4.0]),
            "phq9:prev:bandindex:total": np.array([0.0, 0.0]),
            "phq9:prev:scale:total": np.array([0.0, 0.0]),
            "phq9:flag:critical:phq9_9": np.array([T, T]),
            "phq9:flag:critical_missing:phq9_9": np.array([T, T]),
            "phq9:flag:invalid:lie": np.array([F, T]),
            "phq9:taken": np.array([T, T]),
            "phq9:valid": np.array([T, F]),  # row 1: invalid protocol, goes to re-test
            "teacher:bullying": np.array([T, T]),
        },
    )
    gated = [
        {"scale": "total", "gte": 20},
        {"t": "total", "gte": 70},
        {"percentile": "total", "gte": 95},
        {"band": "total", "in": ["severe"]},
        {"item": "phq9_9", "gte": 1},
        {"change": "total", "worsened_by": 5},
        {"change": "total", "band_worsened_by": 2},
        {"not": {"scale": "total", "lt": 20}},
        # documented: a rule that reads scores is gated as a whole, even next to a critical leaf
        {"any": [{"critical": "phq9_9"}, {"scale": "total", "gte": 20}]},
    ]
    for when in gated:
        assert fires(when, facts) == [T, F], when
    for when, expected in (
        ({"critical": "phq9_9"}, [T, T]),
        ({"critical_missing": "phq9_9"}, [T, T]),
        ({"validity": "lie"}, [F, T]),
        ({"validity": "any"}, [F, T]),
        ({"teacher_report": ["bullying"]}, [T, T]),
        ({"any": [{"critical": "phq9_9"}, {"teacher_report": ["loss"]}]}, [T, T]),
    ):
        assert fires(when, facts) == expected, when


def test_a_rule_on_two_instruments_needs_both_protocols_valid():
    facts = Facts(
        4,
        {
            "phq9:scale:total": np.full(4, 15.0),
            "gad7:scale:total": np.full(4, 15.0),
            "phq9:valid": np.array([T, T, F, F]),
            "gad7:valid": np.array([T, F, T, F]),
        },
    )
    when = {"all": [{"scale": "total", "gte": 10}, {"scale": "total", "gte": 10, "instrument": "gad7"}]}
    assert fires(when, facts) == [T, F, F, F]


# --- levels and explain-why ------------------------------------------------------------------------------------------


def _explain_engine() -> Engine:
    phq9 = ruleset(
        ("a.frequent_and_severe", 4, {"all": [{"item": "phq9_9", "gte": 2}, {"band": "total", "in": ["severe"]}]}),
        ("a.item9", 3, {"critical": "phq9_9"}),
        ("a.severe", 3, {"band": "total", "in": ["severe"]}),
        ("a.cutoff", 1, {"scale": "total", "gte": 11}),
        ident="a",
    )
    reports = ruleset(
        ("b.self_harm", 3, {"any": [{"teacher_report": ["self_harm_talk"]}, {"parent_report": ["self_harm_talk"]}]}),
        instrument=None,
        ident="b",
    )
    return Engine([phq9, reports])


def _explain_facts() -> Facts:
    return Facts(
        4,
        {
            # row 0: item 9 = 1, total 21 (severe) → a.item9, a.severe (3), a.cutoff (1); not level 4 (item 9 < 2)
            # row 1: item 9 = 2, total 22 (severe) → everything in ruleset a, level 4
            # row 2: item 9 = 0, total 10 → nothing from a; teacher report → b.self_harm (3)
            # row 3: nothing
            "phq9:item:phq9_9": np.array([1.0, 2.0, 0.0, 0.0]),
            "phq9:scale:total": np.array([21.0, 22.0, 10.0, 0.0]),
            "phq9:band:total": np.array(["severe", "severe", "moderate", "minimal"], dtype=object),
            "phq9:flag:critical:phq9_9": np.array([T, T, F, F]),
            "phq9:valid": np.array([T, T, T, T]),
            "teacher:self_harm_talk": np.array([F, F, T, F]),
        },
    )


def test_level_is_the_highest_matching_level():
    evaluation = _explain_engine().evaluate(_explain_facts())
    assert evaluation.level.tolist() == [3, 4, 3, 0]
    assert evaluation.fired.tolist() == [
        [F, T, T, T, F],
        [T, T, T, T, F],
        [F, F, F, F, T],
        [F, F, F, F, F],
    ]


def test_decision_names_the_first_top_rule_and_the_exact_values_read():
    evaluation = _explain_engine().evaluate(_explain_facts())
    # a.item9 and a.severe are both level 3: the first in order is the top rule.
    assert evaluation.decision(0) == Decision(
        3,
        "a.item9",
        (
            FiredRule("a.item9", 3, {"phq9:flag:critical:phq9_9": True}, "a"),
            FiredRule("a.severe", 3, {"phq9:band:total": "severe"}, "a"),
            FiredRule("a.cutoff", 1, {"phq9:scale:total": 21.0}, "a"),
        ),
    )
    top = evaluation.decision(1)
    assert (top.level, top.rule_id) == (4, "a.frequent_and_severe")
    assert top.fired[0].inputs == {"phq9:item:phq9_9": 2.0, "phq9:band:total": "severe"}
    # values read that have no column are reported as unknown (None)
    assert evaluation.decision(2) == Decision(
        3,
        "b.self_harm",
        (FiredRule("b.self_harm", 3, {"teacher:self_harm_talk": True, "parent:self_harm_talk": None}, "b"),),
    )
    assert evaluation.decision(3) == Decision(None, None, ())


def test_input_values_are_plain_python():
    evaluation = _explain_engine().evaluate(_explain_facts())
    for fired in evaluation.decision(1).fired:
        for value in fired.inputs.values():
            assert type(value) in (bool, float, str), (fired.rule_id, value)


def test_order_of_rulesets_decides_among_equal_levels():
    engine = _explain_engine()
    reversed_engine = Engine(list(reversed(engine.rulesets)))
    facts = _explain_facts()
    facts.columns["teacher:self_harm_talk"] = np.array([T, F, T, F])
    assert engine.evaluate(facts).decision(0).rule_id == "a.item9"
    assert reversed_engine.evaluate(facts).decision(0).rule_id == "b.self_harm"


def test_empty_table_and_empty_engine():
    assert _explain_engine().evaluate(Facts(0, {})).level.tolist() == []
    assert Engine([]).evaluate(_explain_facts()).level.tolist() == [0, 0, 0, 0]


# --- declaration checks for the new leaves ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the project's declarations to break."""
    for folder in ("instruments", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder)
    return tmp_path


@pytest.fixture(scope="module")
def registry():
    _pm, scorers, channels = load_plugins({})
    return scorers, channels


def _errors(root: Path, registry) -> list[str]:
    with pytest.raises(DeclarationsInvalid) as info:
        load_declarations([root], *registry)
    return [str(e) for e in info.value.errors]


def _write_rules(root: Path, name: str, instrument: str | None, when: str) -> tuple[str, int]:
    """Write ``rules/alerts/<name>.yaml`` with one rule; return its display name and the line of ``when``."""
    lines = ["kind: alert_rules", f"id: {name}", "version: '1'"]
    if instrument:
        lines.append(f"instrument: {instrument}")
    lines += ["rules:", f"  - id: {name}.one", "    level: 2", f"    when: {when}", "    explain: {zh: 测试}"]
    (root / "rules" / "alerts" / f"{name}.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    return f"rules/alerts/{name}.yaml", lines.index(f"    when: {when}") + 1


NEEDS = "needs an instrument (set it on the ruleset or the condition)"


@pytest.mark.parametrize(
    ("instrument", "when", "message"),
    [
        ("phq9", "{validity: lie}", "phq9 has no validity indicator 'lie'"),
        ("mht", "{validity: mht_lies}", "mht has no validity indicator 'mht_lies'"),
        (None, "{any: [{teacher_report: [bullying]}, {scale: total, gte: 10}]}", f"scale 'total' {NEEDS}"),
        (None, "{all: [{parent_report: [loss]}, {critical: phq9_9}]}", f"critical 'phq9_9' {NEEDS}"),
        (None, "{validity: any}", f"validity 'any' {NEEDS}"),
        (None, "{change: total, worsened_by: 5}", f"change 'total' {NEEDS}"),
        ("phq9", "{change: totl, worsened_by: 5}", "phq9 has no scale 'totl'"),
        ("phq9", "{critical: phq9_8}", "'phq9_8' is not a critical item of phq9"),
        ("phq9", "{critical_missing: phq9_1}", "'phq9_1' is not a critical item of phq9"),
        ("phq9", "{t: totl, gte: 70}", "phq9 has no scale 'totl'"),
        ("phq9", "{percentile: total, gte: 95, instrument: phq99}", "no instrument 'phq99'"),
        ("phq9", "{not: {item: phq9_10, gte: 1}}", "phq9 has no item 'phq9_10'"),
    ],
)
def test_bad_leaves_are_refused_with_file_and_line(root, registry, instrument, when, message):
    display, line = _write_rules(root, "extra", instrument, when)
    assert _errors(root, registry) == [f"{display}:{line}: rules[0].when: {message}"]


@pytest.mark.parametrize(
    ("when", "path"),
    [
        ("{teacher_report: [gossip]}", "rules[0].when"),
        ("{parent_report: []}", "rules[0].when"),
        ("{judgement: mood, gte: 3}", "rules[0].when"),
        ("{change: total, worsened_by: 0}", "rules[0].when"),
        ("{change: total, worsened_by: 5, band_worsened_by: 1}", "rules[0].when"),
        ("{at_least: 0, of: [{teacher_report: [loss]}]}", "rules[0].when"),
    ],
)
def test_malformed_leaves_are_refused_by_the_schema(root, registry, when, path):
    display, line = _write_rules(root, "extra", "phq9", when)
    errors = _errors(root, registry)
    assert errors and all(e.startswith(f"{display}:{line}: {path}") for e in errors), errors


@pytest.mark.parametrize(
    ("instrument", "when"),
    [
        ("mht", "{validity: mht_lie}"),
        ("mht", "{validity: any}"),
        (None, "{all: [{teacher_report: [bullying, loss]}, {scale: total, gte: 10, instrument: phq9}]}"),
        (None, "{all: [{judgement: level, gte: 2}, {critical: asq_1, instrument: asq}]}"),
        ("phq9", "{any: [{change: total, worsened_by: 3}, {change: total, band_worsened_by: 1}]}"),
    ],
)
def test_good_leaves_are_accepted(root, registry, instrument, when):
    _write_rules(root, "extra", instrument, when)
    decls = load_declarations([root], *registry)
    assert decls.rulesets["extra"].rules[0].id == "extra.one"


def test_a_malformed_leaf_says_what_is_wrong(root, registry):
    display, line = _write_rules(root, "extra", "phq9", "{teacher_report: [gossip]}")
    (error,) = _errors(root, registry)
    assert error.startswith(f"{display}:{line}: rules[0].when.teacher_report[0]: 'gossip' is not one of")
