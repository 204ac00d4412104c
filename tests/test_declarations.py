"""Declarations are strict: every error as ``file:line: path: message``, and a
bad file never replaces the active set."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from xinshu.cli import main
from xinshu.declarations.registry import DeclarationStore, load_declarations
from xinshu.errors import DeclarationsInvalid
from xinshu.services import PROJECT_ROOT, load_plugins


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the project's declarations to break."""
    for folder in ("instruments", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder)
    return tmp_path


@pytest.fixture
def registry():
    _pm, scorers, channels = load_plugins({})
    return scorers, channels


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text("utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), "utf-8")


def _errors(root: Path, registry) -> list[str]:
    with pytest.raises(DeclarationsInvalid) as info:
        load_declarations([root], *registry)
    return [str(e) for e in info.value.errors]


def test_project_declarations_are_valid(registry):
    decls = load_declarations([PROJECT_ROOT], *registry)
    assert {"phq9", "gad7"} <= set(decls.instruments)
    assert [lv.name["zh"] for lv in decls.levels.levels] == ["一般", "较重", "严重", "非常严重"]
    assert decls.instruments["phq9"].critical_items[0].item == "phq9_9"


def test_wrong_type_points_at_file_line_and_path(root, registry):
    path = root / "instruments" / "phq9.yaml"
    _edit(path, "min_answered: 9", "min_answered: nine")
    line = _line_of(path, "min_answered: nine")
    assert _errors(root, registry) == [
        f"instruments/phq9.yaml:{line}: scales[0].missing.min_answered: 'nine' is not of type 'integer'"
    ]


def test_yaml_syntax_error_has_a_line(root, registry):
    path = root / "rules" / "alerts" / "gad7.yaml"
    _edit(path, "instrument: gad7", "instrument: [gad7")
    errors = _errors(root, registry)
    assert len(errors) == 1 and errors[0].startswith("rules/alerts/gad7.yaml:")
    assert "YAML syntax" in errors[0]


def test_unknown_key_duplicate_key_and_every_error_listed(root, registry):
    path = root / "rules" / "levels.yaml"
    _edit(path, "case_threshold: 2", "case_threshold: 2\ncase_treshold: 3")
    gad = root / "instruments" / "gad7.yaml"
    _edit(gad, 'version: "2026.1"', 'version: "2026.1"\nversion: "2026.2"')
    errors = _errors(root, registry)
    assert f"instruments/gad7.yaml:{_line_of(gad, '2026.2')}: duplicate key 'version' (first at line 5)" in errors
    assert f"rules/levels.yaml:{_line_of(path, 'case_treshold')}: case_treshold: unknown key 'case_treshold'" in errors


def test_band_gap_and_unknown_method(root, registry):
    path = root / "instruments" / "phq9.yaml"
    _edit(path, "{id: mild, min: 5, max: 9,", "{id: mild, min: 6, max: 9,")
    _edit(root / "instruments" / "gad7.yaml", "method: sum", "method: summ")
    errors = _errors(root, registry)
    mild = _line_of(path, "id: mild")
    assert (
        f"instruments/phq9.yaml:{mild}: scales[0].bands.ranges[1].min: leaves a gap after the previous band" in errors
    )
    gad_line = _line_of(root / "instruments" / "gad7.yaml", "method: summ")
    known = "count_at_or_above, mean, sum"
    message = f"unknown scoring method 'summ' (known: {known})"
    assert f"instruments/gad7.yaml:{gad_line}: scales[0].method: {message}" in errors


def test_rule_naming_a_band_that_does_not_exist(root, registry):
    path = root / "rules" / "alerts" / "phq9.yaml"
    _edit(path, "in: [moderately_severe]", "in: [moderate_severe]")
    line = _line_of(path, "in: [moderate_severe]")
    assert _errors(root, registry) == [
        f"rules/alerts/phq9.yaml:{line}: rules[4].when.in[0]: no band 'moderate_severe' "
        "(known: minimal, mild, moderate, moderately_severe, severe)"
    ]


def test_levels_naming_an_unregistered_channel(root, registry):
    path = root / "rules" / "levels.yaml"
    _edit(
        path, "{role: bureau_admin, at: city, channels: [inbox]}", "{role: bureau_admin, at: city, channels: [pager]}"
    )
    line = _line_of(path, "channels: [pager]")
    known = "dingtalk, email, inbox, sms, wecom"
    message = f"unknown channel 'pager' (known: {known})"
    assert _errors(root, registry) == [f"rules/levels.yaml:{line}: levels[3].notify[3].channels[0]: {message}"]


def test_python_tags_are_refused_and_never_run(root, registry, tmp_path):
    marker = tmp_path / "pwn"
    path = root / "rules" / "alerts" / "gad7.yaml"
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n', "utf-8")
    errors = _errors(root, registry)
    assert errors[0].startswith("rules/alerts/gad7.yaml:1: YAML syntax")
    assert not marker.exists()


def test_aliases_are_refused(root, registry):
    path = root / "rules" / "alerts" / "gad7.yaml"
    _edit(path, "explain: {zh: 总分15–21", "explain: &e {zh: 总分15–21")
    assert _errors(root, registry) == [
        f"rules/alerts/gad7.yaml:{_line_of(path, '&e')}: YAML anchors and aliases are not allowed"
    ]


def test_bad_edit_keeps_the_last_good_declarations(root, registry):
    store = DeclarationStore([root], *registry)
    good = store.current
    _edit(root / "instruments" / "phq9.yaml", "min: 20, max: 27", "min: 20, max: 26")
    with pytest.raises(DeclarationsInvalid):
        store.reload()
    assert store.current is good
    assert store.current.instruments["phq9"].scale("total").bands[-1].max == 27


def test_check_command_prints_errors_and_fails(root):
    path = root / "instruments" / "phq9.yaml"
    _edit(path, "min_answered: 9", "min_answered: 10")
    result = CliRunner().invoke(main, ["check", "--root", str(root)])
    assert result.exit_code == 1
    line = _line_of(path, "min_answered: 10")
    assert (
        f"instruments/phq9.yaml:{line}: scales[0].missing.min_answered: more than the scale's item count"
        in result.stderr
    )


def test_check_command_passes_on_the_project():
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert re.match(r"ok: \d+ files, \d+ instruments, \d+ alert rulesets", result.stdout)


def test_rules_may_not_warn_on_a_validity_scale(root, registry):
    path = root / "rules" / "alerts" / "mht_lie.yaml"
    path.write_text(
        "kind: alert_rules\nid: mht-lie\nversion: '1'\ninstrument: mht\nrules:\n"
        "  - id: mht.lie\n    level: 1\n    when: {scale: lie, gte: 2}\n    explain: {zh: 测谎}\n",
        "utf-8",
    )
    message = "'lie' is a validity scale of mht; it routes to re-test and never warns"
    assert _errors(root, registry) == [f"rules/alerts/mht_lie.yaml:8: rules[0].when: {message}"]
