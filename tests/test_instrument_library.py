"""The instrument library: hand-computed scores for every new instrument.

Every expected value below is computed by hand from the published facts in
../shared/docs/instruments.md (band limits, reverse keys, item-to-scale keys),
never taken from running the engine. Patterns are written so the arithmetic is
visible in the test or its comment.
"""

from __future__ import annotations

import pytest

from xinshu.rules import evaluate
from xinshu.scoring import AnswerError, score_response
from xinshu.services import build_services


@pytest.fixture(scope="module")
def svc():
    return build_services({}, with_db=False)


def _score(svc, instrument_id: str, answers: dict):
    inst = svc.declarations.instruments[instrument_id]
    return score_response(inst, answers, svc.scorers())


def _ids(prefix: str, numbers) -> list[str]:
    return [f"{prefix}_{n}" for n in numbers]


def _fill(item_ids: list[str], total: int, low: int, high: int) -> dict[str, int]:
    """Answers (no reverse items) whose sum is ``total``: items filled to ``high``
    in order, the remainder on the next item, the rest at ``low``."""
    answers, left = {}, total - low * len(item_ids)
    assert 0 <= left <= (high - low) * len(item_ids)
    for item_id in item_ids:
        step = min(high - low, left)
        answers[item_id] = low + step
        left -= step
    assert sum(answers.values()) == total
    return answers


def _band_cases(svc, instrument_id, item_ids, low, high, cases, scale="total"):
    for total, band in cases:
        result = _score(svc, instrument_id, _fill(item_ids, total, low, high))
        assert result.scales[scale].valid, (instrument_id, total)
        assert result.scales[scale].raw == total, (instrument_id, total)
        assert result.scales[scale].band == band, (instrument_id, total)


def _assert_incomplete(result, scale: str) -> None:
    assert result.scales[scale].raw is None
    assert result.scales[scale].valid is False
    assert result.scales[scale].band is None
    assert f"incomplete:{scale}" in result.flags


# --- PHQ-8 (0-24; 0-4 / 5-9 / 10-14 / 15-19 / 20-24; Kroenke 2001 thresholds via CamCOPS phq8.rst)

PHQ8 = _ids("phq8", range(1, 9))


def test_phq8_band_boundaries(svc):
    cases = [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (24, "severe"),
    ]
    _band_cases(svc, "phq8", PHQ8, 0, 3, cases)


def test_phq8_has_no_suicide_item_and_needs_all_items(svc):
    inst = svc.declarations.instruments["phq8"]
    assert len(inst.items) == 8
    assert inst.critical_items == ()
    answers = dict.fromkeys(PHQ8, 3)
    del answers["phq8_8"]  # 7 of 8 answered, min_answered 8
    _assert_incomplete(_score(svc, "phq8", answers), "total")


# --- PHQ-2 and GAD-2 (0-6; >= 3 positive)


@pytest.mark.parametrize("instrument_id", ["phq2", "gad2"])
def test_two_item_screeners_cutoff_3(svc, instrument_id):
    items = _ids(instrument_id, (1, 2))
    cases = [(0, "negative"), (2, "negative"), (3, "positive"), (6, "positive")]
    _band_cases(svc, instrument_id, items, 0, 3, cases)
    # one of two answered (min_answered 2): invalid, never "negative"
    _assert_incomplete(_score(svc, instrument_id, {items[0]: 3}), "total")


# --- PHQ-4 (items 1-2 = GAD-2 anxiety, 3-4 = PHQ-2 depression; total 0-2 / 3-5 / 6-8 / 9-12)

PHQ4 = _ids("phq4", range(1, 5))


def test_phq4_total_band_boundaries(svc):
    cases = [
        (0, "none"),
        (2, "none"),
        (3, "mild"),
        (5, "mild"),
        (6, "moderate"),
        (8, "moderate"),
        (9, "severe"),
        (12, "severe"),
    ]
    _band_cases(svc, "phq4", PHQ4, 0, 3, cases)


def test_phq4_subscales(svc):
    # anxiety = items 1+2 = 3+0 = 3 (positive); depression = items 3+4 = 1+1 = 2 (negative); total 5 (mild)
    r = _score(svc, "phq4", {"phq4_1": 3, "phq4_2": 0, "phq4_3": 1, "phq4_4": 1})
    assert (r.scales["anxiety"].raw, r.scales["anxiety"].band) == (3, "positive")
    assert (r.scales["depression"].raw, r.scales["depression"].band) == (2, "negative")
    assert (r.scales["total"].raw, r.scales["total"].band) == (5, "mild")
    # anxiety = 0+2 = 2 (negative); depression = 2+1 = 3 (positive); total 5
    r = _score(svc, "phq4", {"phq4_1": 0, "phq4_2": 2, "phq4_3": 2, "phq4_4": 1})
    assert (r.scales["anxiety"].raw, r.scales["anxiety"].band) == (2, "negative")
    assert (r.scales["depression"].raw, r.scales["depression"].band) == (3, "positive")
    assert r.scales["total"].raw == 5


def test_phq4_missing_item_invalidates_its_subscale_and_total_only(svc):
    r = _score(svc, "phq4", {"phq4_2": 3, "phq4_3": 3, "phq4_4": 3})
    _assert_incomplete(r, "anxiety")
    _assert_incomplete(r, "total")
    assert (r.scales["depression"].raw, r.scales["depression"].band) == (6, "positive")


# --- K6 (US 0-4 scoring, 0-24; 0-7 low / 8-12 moderate / >= 13 probable serious mental illness)

K6 = _ids("k6", range(1, 7))


def test_k6_band_boundaries(svc):
    cases = [
        (0, "low"),
        (7, "low"),
        (8, "moderate"),
        (12, "moderate"),
        (13, "serious"),
        (24, "serious"),
    ]
    _band_cases(svc, "k6", K6, 0, 4, cases)


def test_k6_missing(svc):
    answers = dict.fromkeys(K6, 4)
    answers["k6_3"] = None  # 5 of 6 answered
    _assert_incomplete(_score(svc, "k6", answers), "total")


# --- K10 (ABS 1-5 scoring, 10-50; 10-15 low / 16-21 moderate / 22-29 high / 30-50 very high)

K10 = _ids("k10", range(1, 11))


def test_k10_band_boundaries(svc):
    cases = [
        (10, "low"),
        (15, "low"),
        (16, "moderate"),
        (21, "moderate"),
        (22, "high"),
        (29, "high"),
        (30, "very_high"),
        (50, "very_high"),
    ]
    _band_cases(svc, "k10", K10, 1, 5, cases)


def test_k10_embedded_k6_items_2_4_5_8_9_10(svc):
    # answers by item 1..10: 1, 2, 3, 4, 5, 1, 2, 3, 4, 5
    # total = 1+2+3+4+5+1+2+3+4+5 = 30 (very high)
    # K6 = items 2, 4, 5, 8, 9, 10 = 2+4+5+3+4+5 = 23
    answers = dict(zip(K10, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5], strict=True))
    r = _score(svc, "k10", answers)
    assert (r.scales["total"].raw, r.scales["total"].band) == (30, "very_high")
    assert r.scales["k6"].raw == 23
    # the non-K6 items 1, 3, 6, 7 at 5, the K6 items at 1: total 4*5 + 6*1 = 26, K6 = 6
    answers = {k: 5 if k in ("k10_1", "k10_3", "k10_6", "k10_7") else 1 for k in K10}
    r = _score(svc, "k10", answers)
    assert (r.scales["total"].raw, r.scales["total"].band) == (26, "high")
    assert r.scales["k6"].raw == 6


def test_k10_rejects_0_4_coding_and_missing(svc):
    with pytest.raises(AnswerError):
        _score(svc, "k10", dict.fromkeys(K10, 0))  # 0 is not an ABS 1-5 answer
    answers = dict.fromkeys(K10, 3)
    del answers["k10_10"]
    _assert_incomplete(_score(svc, "k10", answers), "total")


# --- CES-D (0-60; reverse items 4, 8, 12, 16 recoded 3 - x; >= 16 depression risk)

CESD = _ids("cesd", range(1, 21))
CESD_REVERSE = {"cesd_4", "cesd_8", "cesd_12", "cesd_16"}


def test_cesd_reverse_items(svc):
    inst = svc.declarations.instruments["cesd"]
    assert {i.id for i in inst.items if i.reverse} == CESD_REVERSE
    # every item answered 0: 16 forward items * 0 + 4 reverse items * (3 - 0) = 12
    r = _score(svc, "cesd", dict.fromkeys(CESD, 0))
    assert (r.scales["total"].raw, r.scales["total"].band) == (12, "below_cutoff")
    # every item answered 3: 16 * 3 + 4 * (3 - 3) = 48
    r = _score(svc, "cesd", dict.fromkeys(CESD, 3))
    assert (r.scales["total"].raw, r.scales["total"].band) == (48, "depression_risk")


def test_cesd_range_ends(svc):
    # minimum: forward items 0, reverse items 3 (keyed 0) -> 0
    low = {k: 3 if k in CESD_REVERSE else 0 for k in CESD}
    r = _score(svc, "cesd", low)
    assert (r.scales["total"].raw, r.scales["total"].band) == (0, "below_cutoff")
    # maximum: forward items 3, reverse items 0 (keyed 3) -> 20 * 3 = 60
    high = {k: 0 if k in CESD_REVERSE else 3 for k in CESD}
    r = _score(svc, "cesd", high)
    assert (r.scales["total"].raw, r.scales["total"].band) == (60, "depression_risk")


def test_cesd_cutoff_16_both_sides(svc):
    # reverse items answered 0 -> keyed 3 each = 12; cesd_1 = 3 -> 15; rest 0
    answers = dict.fromkeys(CESD, 0) | {"cesd_1": 3}
    r = _score(svc, "cesd", answers)
    assert (r.scales["total"].raw, r.scales["total"].band) == (15, "below_cutoff")
    # ... plus cesd_2 = 1 -> 16
    r = _score(svc, "cesd", answers | {"cesd_2": 1})
    assert (r.scales["total"].raw, r.scales["total"].band) == (16, "depression_risk")
    # forward items all 1 (16 * 1 = 16), reverse items all 3 (keyed 0): 16
    answers = {k: 3 if k in CESD_REVERSE else 1 for k in CESD}
    r = _score(svc, "cesd", answers)
    assert (r.scales["total"].raw, r.scales["total"].band) == (16, "depression_risk")
    # the same with cesd_16 answered 2 instead of 3 (keyed 3 - 2 = 1): 17
    r = _score(svc, "cesd", answers | {"cesd_16": 2})
    assert r.scales["total"].raw == 17
    # the same with cesd_20 answered 0 instead of 1: 15
    r = _score(svc, "cesd", answers | {"cesd_20": 0})
    assert (r.scales["total"].raw, r.scales["total"].band) == (15, "below_cutoff")


def test_cesd_missing(svc):
    answers = dict.fromkeys(CESD, 1)
    answers["cesd_12"] = None  # 19 of 20 answered
    _assert_incomplete(_score(svc, "cesd", answers), "total")


# --- WHO-5 (raw 0-25; percentage = raw x 4; raw <= 7 i.e. percentage <= 28 likely depression,
#     raw < 13 i.e. percentage < 52 poor well-being)

WHO5 = _ids("who5", range(1, 6))


@pytest.mark.parametrize(
    ("raw", "pct", "band"),
    [
        (0, 0, "likely_depression"),
        (7, 28, "likely_depression"),
        (8, 32, "poor_wellbeing"),
        (12, 48, "poor_wellbeing"),
        (13, 52, "adequate"),
        (25, 100, "adequate"),
    ],
)
def test_who5_raw_and_percentage(svc, raw, pct, band):
    r = _score(svc, "who5", _fill(WHO5, raw, 0, 5))
    assert (r.scales["raw"].raw, r.scales["raw"].band) == (raw, band)
    assert (r.scales["percentage"].raw, r.scales["percentage"].band) == (pct, band)


def test_who5_percentage_is_raw_times_4(svc):
    # 5 + 0 + 3 + 1 + 2 = 11 -> 44
    r = _score(svc, "who5", dict(zip(WHO5, [5, 0, 3, 1, 2], strict=True)))
    assert r.scales["raw"].raw == 11
    assert r.scales["percentage"].raw == 44


def test_who5_missing(svc):
    r = _score(svc, "who5", {"who5_1": 5, "who5_2": 5, "who5_3": 5, "who5_4": 5})
    _assert_incomplete(r, "raw")
    _assert_incomplete(r, "percentage")


# --- ASQ (Q1-4 yes/no, any yes = positive; Q5 yes = acute positive)

ASQ14 = _ids("asq", range(1, 5))


def _asq_level(svc, result):
    return evaluate(svc.declarations.ruleset_for("asq"), result).level


def test_asq_negative_screen(svc):
    # four "no", Q5 not asked
    r = _score(svc, "asq", dict.fromkeys(ASQ14, 0))
    assert (r.scales["positive"].raw, r.scales["positive"].band) == (0, "negative")
    assert not [f for f in r.flags if f.startswith("critical:")]
    assert "critical_missing:asq_5" in r.flags  # expected: Q5 is skipped after four "no"
    assert _asq_level(svc, r) is None


@pytest.mark.parametrize("item", ASQ14)
def test_asq_any_yes_is_positive_level_3(svc, item):
    r = _score(svc, "asq", dict.fromkeys(ASQ14, 0) | {item: 1, "asq_5": 0})
    assert (r.scales["positive"].raw, r.scales["positive"].band) == (1, "positive")
    assert f"critical:{item}" in r.flags
    assert "critical:asq_5" not in r.flags
    assert _asq_level(svc, r) == 3


def test_asq_count_of_yes(svc):
    # yes to Q1, Q2, Q4: count 3
    r = _score(svc, "asq", {"asq_1": 1, "asq_2": 1, "asq_3": 0, "asq_4": 1, "asq_5": 0})
    assert (r.scales["positive"].raw, r.scales["positive"].band) == (3, "positive")
    assert {"critical:asq_1", "critical:asq_2", "critical:asq_4"} <= set(r.flags)


def test_asq_acute_positive_level_4(svc):
    r = _score(svc, "asq", {"asq_1": 0, "asq_2": 0, "asq_3": 1, "asq_4": 0, "asq_5": 1})
    assert {"critical:asq_3", "critical:asq_5"} <= set(r.flags)
    decision = evaluate(svc.declarations.ruleset_for("asq"), r)
    assert decision.level == 4
    assert decision.rule_id == "asq.acute_positive"


def test_asq_skipped_question_is_invalid_but_a_yes_still_warns(svc):
    # Q3 skipped: 3 of 4 answered (min_answered 4) -> positive scale invalid
    r = _score(svc, "asq", {"asq_1": 1, "asq_2": 0, "asq_4": 0})
    _assert_incomplete(r, "positive")
    assert {"critical:asq_1", "critical_missing:asq_3"} <= set(r.flags)
    assert _asq_level(svc, r) == 3
    # Q3 skipped and every other answer "no": never read as negative, level 1 (ask in person)
    r = _score(svc, "asq", {"asq_1": 0, "asq_2": 0, "asq_4": 0})
    _assert_incomplete(r, "positive")
    assert _asq_level(svc, r) == 1


# --- RSES (UMD order; 3 strongly agree .. 0 strongly disagree; reverse 2, 5, 6, 8, 9;
#     0-14 low / 15-25 normal / 26-30 above normal)

RSES = _ids("rses", range(1, 11))
RSES_REVERSE = {"rses_2", "rses_5", "rses_6", "rses_8", "rses_9"}


def test_rses_reverse_items(svc):
    inst = svc.declarations.instruments["rses"]
    assert {i.id for i in inst.items if i.reverse} == RSES_REVERSE
    # positive items strongly agree (3), negative items strongly disagree (0, keyed 3): 10 * 3 = 30
    consistent_high = {k: 0 if k in RSES_REVERSE else 3 for k in RSES}
    r = _score(svc, "rses", consistent_high)
    assert (r.scales["total"].raw, r.scales["total"].band) == (30, "above_normal")
    # the mirror image: positive items 0, negative items 3 (keyed 0): 0
    consistent_low = {k: 3 if k in RSES_REVERSE else 0 for k in RSES}
    r = _score(svc, "rses", consistent_low)
    assert (r.scales["total"].raw, r.scales["total"].band) == (0, "low")


def test_rses_band_boundaries(svc):
    # answers for items 1..10; negative items keyed 3 - x
    # 14: positives 1,3,4,7,10 = 2+2+2+1+0 = 7; negatives 2,5,6,8,9 = (3-1)+(3-1)+(3-2)+(3-2)+(3-2) = 7
    a14 = dict(zip(RSES, [2, 1, 2, 2, 1, 2, 1, 2, 2, 0], strict=True))
    # 15: the same with item 10 = 1
    a15 = a14 | {"rses_10": 1}
    # 25: positives = 3+3+3+2+2 = 13; negatives = (3-0)+(3-0)+(3-1)+(3-1)+(3-1) = 12
    a25 = dict(zip(RSES, [3, 0, 3, 3, 0, 1, 2, 1, 1, 2], strict=True))
    # 26: the same with item 10 = 3
    a26 = a25 | {"rses_10": 3}
    for answers, total, band in [(a14, 14, "low"), (a15, 15, "normal"), (a25, 25, "normal"), (a26, 26, "above_normal")]:
        r = _score(svc, "rses", answers)
        assert (r.scales["total"].raw, r.scales["total"].band) == (total, band)
        assert "invalid:rses_contradiction" not in r.flags  # keyed pair differences are all 0 or 1


def test_rses_missing(svc):
    answers = {k: 0 if k in RSES_REVERSE else 3 for k in RSES}
    answers["rses_9"] = None
    _assert_incomplete(_score(svc, "rses", answers), "total")


def test_rses_validity_engine_contradictory_pairs_flag(svc):
    # pairs (1,2) (3,5) (7,6) (10,9); keyed difference >= 2 in >= 2 pairs -> invalid
    # acquiescence: "strongly agree" (3) to all 10: positives keyed 3, negatives keyed 0
    # total = 5 * 3 + 5 * 0 = 15; all 4 pair differences = 3 -> flagged
    r = _score(svc, "rses", dict.fromkeys(RSES, 3))
    assert (r.scales["total"].raw, r.scales["total"].band) == (15, "normal")
    assert "invalid:rses_contradiction" in r.flags
    consistent = {k: 0 if k in RSES_REVERSE else 3 for k in RSES}
    # exactly 2 contradictory pairs: items 2 and 5 answered 3 (keyed 0) against 1 and 3 (keyed 3)
    r = _score(svc, "rses", consistent | {"rses_2": 3, "rses_5": 3})
    assert r.scales["total"].raw == 24  # 30 - 3 - 3
    assert "invalid:rses_contradiction" in r.flags
    # only 1 contradictory pair: not flagged (at_least 2); total 30 - 3 = 27
    r = _score(svc, "rses", consistent | {"rses_2": 3})
    assert r.scales["total"].raw == 27
    assert "invalid:rses_contradiction" not in r.flags
    # every pair differs by exactly 1 (positives 3, negatives answered 1 -> keyed 2): below min_difference 2
    r = _score(svc, "rses", {k: 1 if k in RSES_REVERSE else 3 for k in RSES})
    assert r.scales["total"].raw == 25  # 5 * 3 + 5 * 2
    assert "invalid:rses_contradiction" not in r.flags


# --- MHT (100 yes/no items, 是 = 1; 8 content scales; total of 90 content items 0-55 / 56-64 / 65-90;
#     lie scale = even items 82-100, >= 7 invalid; key items 85, 97)

MHT = _ids("mht", range(1, 101))
MHT_LIE = _ids("mht", range(82, 101, 2))
MHT_CONTENT = [k for k in MHT if k not in MHT_LIE]
MHT_SCALES = {
    "learning_anxiety": range(1, 16),
    "social_anxiety": range(16, 26),
    "loneliness": range(26, 36),
    "self_blame": range(36, 46),
    "sensitivity": range(46, 56),
    "somatic": range(56, 71),
    "phobia": range(71, 81),
    "impulsivity": range(81, 100, 2),
}


def _mht(yes: set[str]) -> dict[str, int]:
    return {k: 1 if k in yes else 0 for k in MHT}


def test_mht_structure(svc):
    inst = svc.declarations.instruments["mht"]
    assert inst.text_source == "local_file"
    assert inst.licence["text_shipped"] is False
    assert all(not item.text for item in inst.items)
    assert len(MHT_CONTENT) == 90
    for scale_id, numbers in MHT_SCALES.items():
        assert inst.scale(scale_id).items == tuple(_ids("mht", numbers))
    assert inst.scale("lie").items == tuple(MHT_LIE)
    assert inst.scale("lie").role == "validity"


def test_mht_content_scales(svc):
    # "是" to every item of one scale at a time: that scale = its item count, the others 0
    for scale_id, numbers in MHT_SCALES.items():
        r = _score(svc, "mht", _mht(set(_ids("mht", numbers))))
        assert r.scales[scale_id].raw == len(numbers)
        assert r.scales["total"].raw == len(numbers)
        assert r.scales["lie"].raw == 0
        others = [s for s in MHT_SCALES if s != scale_id]
        assert all(r.scales[s].raw == 0 for s in others)


def test_mht_total_band_boundaries(svc):
    # "是" to the first n content items (lie items all 不是): total n
    for total, band in [(0, "general"), (55, "general"), (56, "attention"), (64, "attention"), (65, "key_attention")]:
        r = _score(svc, "mht", _mht(set(MHT_CONTENT[:total])))
        assert (r.scales["total"].raw, r.scales["total"].band) == (total, band)
        assert r.scales["lie"].raw == 0
    r = _score(svc, "mht", _mht(set(MHT_CONTENT)))
    assert (r.scales["total"].raw, r.scales["total"].band) == (90, "key_attention")


def test_mht_key_items_are_critical(svc):
    r = _score(svc, "mht", _mht({"mht_85"}))
    assert "critical:mht_85" in r.flags
    assert "critical:mht_97" not in r.flags
    assert r.scales["impulsivity"].raw == 1
    r = _score(svc, "mht", _mht({"mht_97"}))
    assert "critical:mht_97" in r.flags


def test_mht_missing(svc):
    answers = _mht(set())
    answers["mht_1"] = None  # a content item: learning_anxiety and total invalid
    r = _score(svc, "mht", answers)
    _assert_incomplete(r, "learning_anxiety")
    _assert_incomplete(r, "total")
    assert r.scales["lie"].raw == 0
    answers = _mht(set())
    answers["mht_100"] = None  # a lie item: 9 of 10 answered
    r = _score(svc, "mht", answers)
    _assert_incomplete(r, "lie")
    assert r.scales["total"].raw == 0


def test_mht_validity_engine_lie_scale(svc):
    # 6 lie items "是": lie = 6, below 7 -> not flagged
    r = _score(svc, "mht", _mht(set(MHT_LIE[:6])))
    assert r.scales["lie"].raw == 6
    assert r.scales["total"].raw == 0
    assert "invalid:mht_lie" not in r.flags
    # 7 lie items "是": lie = 7 -> invalid (>= 7 chosen over > 7, see mht.yaml notes)
    r = _score(svc, "mht", _mht(set(MHT_LIE[:7])))
    assert r.scales["lie"].raw == 7
    assert "invalid:mht_lie" in r.flags
    assert not r.protocol_valid


def test_mht_validity_engine_never_suppresses_key_items(svc):
    # lie = 10 (invalid) and key item 85 "是": both flags
    r = _score(svc, "mht", _mht(set(MHT_LIE) | {"mht_85"}))
    assert r.scales["lie"].raw == 10
    assert {"invalid:mht_lie", "critical:mht_85"} <= set(r.flags)


def test_mht_all_no_is_a_valid_protocol(svc):
    # A student with no symptoms answers 不是 to all 100 yes/no items. A longstring check would send
    # them to re-test, so MHT declares none (careless longstring suits scales with reverse-keyed items,
    # instruments.md §3.3); the lie scale is the validity check here.
    r = _score(svc, "mht", _mht(set()))
    assert r.protocol_valid and r.scales["lie"].raw == 0 and r.scales["total"].raw == 0


# --- MSSMHS (60 items 1-5; 10 factors = mean of 6 items; total = mean of 60; >= 2 needs attention;
#     bands 1-1.99 / 2-2.99 / 3-3.99 / 4-4.99 / 5 [unverified])

MSSMHS = _ids("mssmhs", range(1, 61))
MSSMHS_FACTORS = {
    "obsessive_compulsive": [3, 10, 12, 22, 23, 48],
    "paranoid": [11, 20, 24, 26, 47, 49],
    "hostility": [19, 21, 25, 50, 52, 58],
    "interpersonal_sensitivity": [4, 17, 18, 45, 51, 59],
    "depression": [5, 13, 14, 16, 44, 57],
    "anxiety": [6, 15, 34, 43, 46, 56],
    "academic_stress": [31, 33, 36, 38, 40, 55],
    "maladjustment": [1, 8, 9, 29, 39, 41],
    "emotional_imbalance": [2, 7, 27, 32, 35, 53],
    "psychological_imbalance": [28, 30, 37, 42, 54, 60],
}


def test_mssmhs_factor_items(svc):
    inst = svc.declarations.instruments["mssmhs"]
    for scale_id, numbers in MSSMHS_FACTORS.items():
        assert inst.scale(scale_id).items == tuple(_ids("mssmhs", numbers))
        assert inst.scale(scale_id).method == "mean"
    assert sorted(n for ns in MSSMHS_FACTORS.values() for n in ns) == list(range(1, 61))


@pytest.mark.parametrize(
    ("factor_answers", "mean", "band"),
    [
        ([1, 1, 1, 1, 1, 1], 1.0, "none"),
        ([2, 2, 2, 2, 2, 1], 11 / 6, "none"),  # 1.833
        ([2, 2, 2, 2, 2, 2], 2.0, "mild"),
        ([3, 3, 3, 3, 3, 2], 17 / 6, "mild"),  # 2.833
        ([3, 3, 3, 3, 3, 3], 3.0, "moderate"),
        ([4, 4, 4, 4, 4, 3], 23 / 6, "moderate"),  # 3.833
        ([4, 4, 4, 4, 4, 4], 4.0, "relatively_severe"),
        ([5, 5, 5, 5, 5, 4], 29 / 6, "relatively_severe"),  # 4.833
        ([5, 5, 5, 5, 5, 5], 5.0, "severe"),
    ],
)
def test_mssmhs_factor_band_boundaries(svc, factor_answers, mean, band):
    # the depression factor at the pattern, every other item 1
    answers = dict.fromkeys(MSSMHS, 1)
    answers |= dict(zip(_ids("mssmhs", MSSMHS_FACTORS["depression"]), factor_answers, strict=True))
    r = _score(svc, "mssmhs", answers)
    assert r.scales["depression"].raw == pytest.approx(mean)
    assert r.scales["depression"].band == band
    assert r.scales["anxiety"].raw == pytest.approx(1.0)
    # total = (54 * 1 + sum(factor_answers)) / 60
    assert r.scales["total"].raw == pytest.approx((54 + sum(factor_answers)) / 60)


def test_mssmhs_total_boundary(svc):
    # all 60 items 2: mean 2.0 (mild, needs attention)
    r = _score(svc, "mssmhs", dict.fromkeys(MSSMHS, 2))
    assert (r.scales["total"].raw, r.scales["total"].band) == (pytest.approx(2.0), "mild")
    # 59 items 2, one item 1: 119 / 60 = 1.983 (none)
    r = _score(svc, "mssmhs", dict.fromkeys(MSSMHS, 2) | {"mssmhs_60": 1})
    assert r.scales["total"].raw == pytest.approx(119 / 60)
    assert r.scales["total"].band == "none"
    # psychological_imbalance (28, 30, 37, 42, 54, 60) = (5 * 2 + 1) / 6 = 11 / 6 -> none
    assert r.scales["psychological_imbalance"].raw == pytest.approx(11 / 6)
    assert r.scales["psychological_imbalance"].band == "none"


def test_mssmhs_missing(svc):
    answers = dict.fromkeys(MSSMHS, 3)
    answers["mssmhs_3"] = None  # an obsessive_compulsive item: 5 of 6, and 59 of 60
    r = _score(svc, "mssmhs", answers)
    _assert_incomplete(r, "obsessive_compulsive")
    _assert_incomplete(r, "total")
    assert (r.scales["paranoid"].raw, r.scales["paranoid"].band) == (pytest.approx(3.0), "moderate")


# --- every new instrument: licence block and sources present


@pytest.mark.parametrize(
    "instrument_id", ["phq8", "phq2", "gad2", "phq4", "k6", "k10", "cesd", "who5", "asq", "rses", "mht", "mssmhs"]
)
def test_licence_and_sources(svc, instrument_id):
    inst = svc.declarations.instruments[instrument_id]
    assert inst.licence["status"] in {"public_domain", "free_with_conditions", "restricted"}
    assert inst.licence["statement"]
    restricted = inst.licence["status"] == "restricted"
    assert inst.licence["text_shipped"] is not restricted
    for scale in inst.scales:
        assert scale.missing.source
        if scale.bands:
            assert scale.bands_source
        for cutoff in scale.cutoffs:
            assert cutoff["source"]
    for critical in inst.critical_items:
        assert critical.source
    if not restricted:
        assert all(item.text.get("zh") and item.text.get("en") for item in inst.items)
