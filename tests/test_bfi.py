"""The IPIP Big-Five items of the psych package's ``bfi`` data, scored through a declared instrument.

``tests/declarations_psy/instruments/bfi.yaml`` declares the 25 items (1 Very
Inaccurate … 6 Very Accurate), the reverse keys of ``bfi.keys.csv`` and five
``mean`` subscales that need at least 3 of their 5 items answered. All 2,800
rows of ``../shared/data/bfi/bfi.csv`` are read through the ``bfi_csv`` import
profile (:func:`xinshu.answers.read_answers`, no database) and scored with the
matrix engine; every subscale score is compared with :func:`independent_scores`,
written here with the ``csv`` module only (a reverse-keyed answer x counts as
7 − x, README "Facts worth testing against").

Rows worked by hand (cells copied from bfi.csv; ``r`` = reversed, 7 − x):

* 61617 (first row): A1..A5 = 2, 4, 3, 4, 4 → agree (7−2 + 4 + 3 + 4 + 4) / 5 = 20/5 = 4.0;
  C = 2, 3, 3, 4r, 4r → (2 + 3 + 3 + 3 + 3) / 5 = 2.8; E = 3r, 3r, 3, 4, 4 →
  (4 + 4 + 3 + 4 + 4) / 5 = 3.8; N = 3, 4, 2, 2, 3 (not reversed) → 14/5 = 2.8;
  O = 3, 6r, 3, 4, 3r → (3 + 1 + 3 + 4 + 4) / 5 = 3.0.
* 61759: A1..A5 = 2, blank, 4, 6, 4 → agree (5 + 4 + 6 + 4) / 4 = 4.75 (four answered).
* 62512: N1..N5 = 4, blank, blank, 4, 1 → neuroticism (4 + 4 + 1) / 3 = 3.0 (exactly the
  minimum of three answered).
* 63030: only two items of every subscale answered (A1, A5; C1, C5; E2, E4; N2, N3; O2,
  O4) → all five subscales unscored, each flagged ``incomplete:<scale>``.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from xinshu.answers import read_answers
from xinshu.scoring import answers_matrix, score_matrix
from xinshu.services import build_services

REPO = Path(__file__).resolve().parent.parent
PSY = Path(__file__).resolve().parent / "declarations_psy"
MIN_ANSWERED = 3  # declared in bfi.yaml for every subscale
HAND = {
    ("61617", "agree"): 4.0,
    ("61617", "conscientious"): 2.8,
    ("61617", "extraversion"): 3.8,
    ("61617", "neuroticism"): 2.8,
    ("61617", "openness"): 3.0,
    ("61759", "agree"): 4.75,
    ("62512", "neuroticism"): 3.0,
}


def make_root(tmp_path: Path) -> Path:
    """tests/declarations_psy plus the project's levels and intervention templates
    (the project's own instruments stay out, so concurrent edits there cannot break this)."""
    root = tmp_path / "declarations"
    shutil.copytree(PSY, root)
    shutil.copy(REPO / "rules" / "levels.yaml", root / "rules" / "levels.yaml")
    shutil.copytree(REPO / "rules" / "interventions", root / "rules" / "interventions")
    return root


def config(tmp_path: Path) -> dict[str, str]:
    """Plugin settings are explicit so that the environment cannot leak in."""
    return {"DECLARATION_ROOT": str(make_root(tmp_path)), "XINSHU_PLUGINS": "", "XINSHU_BLOCK_PLUGINS": ""}


@pytest.fixture
def bfi_dir(shared_data: Path) -> Path:
    folder = shared_data / "bfi"
    if not (folder / "bfi.csv").is_file():
        pytest.skip(f"{folder / 'bfi.csv'} not found")
    return folder


def read_keys(path: Path) -> dict[str, list[tuple[str, bool]]]:
    """Scale -> [(item column, reversed)] from bfi.keys.csv (a leading "-" = reversed)."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    scales = [c for c in rows[0] if c != "rownames"]
    return {s: [(r[s].lstrip("-"), r[s].startswith("-")) for r in rows] for s in scales}


def independent_scores(data: Path, keys: dict[str, list[tuple[str, bool]]]) -> dict[str, dict[str, float | None]]:
    """respondent -> scale -> mean of the answered (reverse-keyed) items, None below the minimum."""
    scores = {}
    with data.open(newline="") as handle:
        for row in csv.DictReader(handle):
            per_scale = {}
            for scale, items in keys.items():
                values = [7 - int(row[c]) if rev else int(row[c]) for c, rev in items if row[c].strip() != ""]
                per_scale[scale] = math.fsum(values) / len(values) if len(values) >= MIN_ANSWERED else None
            scores[row["rownames"]] = per_scale
    return scores


def test_bfi_declaration_matches_the_published_keys(tmp_path: Path, bfi_dir: Path) -> None:
    services = build_services(config(tmp_path), with_db=False)
    instrument = services.declarations.instruments["bfi"]
    keys = read_keys(bfi_dir / "bfi.keys.csv")
    assert [s.id for s in instrument.scales] == list(keys)
    for scale in instrument.scales:
        assert scale.method == "mean"
        assert (scale.missing.min_answered, scale.missing.prorate) == (MIN_ANSWERED, "none")
        assert list(scale.items) == [f"bfi_{c.lower()}" for c, _ in keys[scale.id]]
        assert [instrument.item(i).reverse for i in scale.items] == [rev for _, rev in keys[scale.id]]
    assert sorted(i.id for i in instrument.items if i.reverse) == [
        "bfi_a1", "bfi_c4", "bfi_c5", "bfi_e1", "bfi_e2", "bfi_o2", "bfi_o5",
    ]  # fmt: skip
    for item in instrument.items:
        assert [v for v, _ in item.options] == [1, 2, 3, 4, 5, 6]
    assert instrument.items[0].options[0][1]["en"] == "Very Inaccurate"
    assert instrument.items[0].options[-1][1]["en"] == "Very Accurate"
    assert instrument.licence["status"] == "public_domain"


def test_every_bfi_subscale_score_matches_an_independent_computation(tmp_path: Path, bfi_dir: Path) -> None:
    services = build_services(config(tmp_path), with_db=False)
    decls = services.declarations
    instrument, profile = decls.instruments["bfi"], decls.profiles["bfi_csv"]
    answer_file = read_answers(bfi_dir / "bfi.csv", instrument, profile)

    expected = independent_scores(bfi_dir / "bfi.csv", read_keys(bfi_dir / "bfi.keys.csv"))
    assert len(expected) == 2800
    assert [r.respondent for r in answer_file.rows] == list(expected)
    assert answer_file.blank_rows == 0

    table = score_matrix(
        instrument, answers_matrix(instrument, [r.answers for r in answer_file.rows]), services.scorers()
    )
    assert len(table) == 2800
    compared = unscored = 0
    for i, row in enumerate(answer_file.rows):
        for scale, want in expected[row.respondent].items():
            got = table.raw[scale][i]
            if want is None:
                assert np.isnan(got) and not table.valid[scale][i], (row.respondent, scale)
                unscored += 1
            else:
                assert table.valid[scale][i], (row.respondent, scale)
                assert abs(got - want) <= 1e-9, (row.respondent, scale, got, want)
            compared += 1
    assert compared == 2800 * 5
    # Rows with only two of a subscale's five answered (counted from bfi.csv before writing this test):
    # agree 3, conscientious 4, extraversion 3, neuroticism 4, openness 4.
    assert unscored == 3 + 4 + 3 + 4 + 4

    position = {r.respondent: i for i, r in enumerate(answer_file.rows)}
    for (respondent, scale), value in HAND.items():
        assert table.raw[scale][position[respondent]] == pytest.approx(value, abs=1e-12)
    result = table.result(position["63030"])
    assert all(s.raw is None and s.answered == 2 for s in result.scales.values())
    assert result.flags == tuple(f"incomplete:{s}" for s in read_keys(bfi_dir / "bfi.keys.csv"))
