"""The plugin system end to end, through the sample plugin in ``xinshu_sample_plugin``.

Each test builds its own application (own plugin manager, own SQLite file in
``tmp_path``). The declaration root is a copy of the project's instruments and
rules whose ``rules/levels.yaml`` also sends level-2 notifications through the
plugin's ``memo`` channel; the plugin adds ``sample4`` from
``tests/sample_declarations/``.

Hand-computed expectations for the answers used below (items take 0–3):
``sample4_1..4 = 3, 2, 1, 2`` gives ``total`` 3+2+1+2 = 8 and ``high_items``
(answers >= 2) = 3, which fires ``sample4.high_items`` (``high_items >= 2``)
at level 2. Level 2 opens a case (``case_threshold: 2``) and notifies three
roles at the school; ``email`` is not configured (no ``MAIL_SERVER``), so six
notifications are queued: ``inbox`` and ``memo`` for each role.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xinshu_sample_plugin as sample
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu import hookimpl
from xinshu.alerting import record_response
from xinshu.declarations.registry import load_declarations
from xinshu.dispatch import dispatch_pending
from xinshu.errors import DeclarationsInvalid
from xinshu.models import Case, InboxMessage, Notification, Score, Student
from xinshu.models import RiskWarning as WarningRow
from xinshu.orgs import add_org_unit
from xinshu.plugin_manager import PluginInfo, list_plugins
from xinshu.scoring import score_response
from xinshu.services import Services, build_services, declaration_roots, load_plugins

REPO = Path(__file__).resolve().parent.parent
STUDENT_NAME = "王小雨"
STUDENT_ID_NUMBER = "110101201001011234"
ANSWERS = {"sample4_1": 3, "sample4_2": 2, "sample4_3": 1, "sample4_4": 2}
SCHOOL_NAME = "示例第一中学"
MEMO_ROLES = ("psychology_teacher", "moral_education_director", "class_teacher")


@pytest.fixture(autouse=True)
def _fresh_sample_plugin() -> Iterator[None]:
    sample.reset()
    yield
    sample.reset()


def declaration_root(tmp_path: Path) -> Path:
    """Copy the project's declarations; add ``memo`` to every level-2 notify target."""
    root = tmp_path / "declarations"
    shutil.copytree(REPO / "instruments", root / "instruments")
    shutil.copytree(REPO / "rules", root / "rules")
    levels_path = root / "rules" / "levels.yaml"
    levels = yaml.safe_load(levels_path.read_text(encoding="utf-8"))
    (level2,) = [lv for lv in levels["levels"] if lv["level"] == 2]
    for target in level2["notify"]:
        target["channels"].append("memo")
    levels_path.write_text(yaml.safe_dump(levels, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def app_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Config for one test app; plugin settings are explicit so the environment cannot leak in."""
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}",
        "DECLARATION_ROOT": str(declaration_root(tmp_path)),
        "XINSHU_PLUGINS": "xinshu_sample_plugin",
        "XINSHU_BLOCK_PLUGINS": "",
        "XINSHU_TRACE_PLUGINS": "",
    }
    config.update(extra)
    return config


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = build_services(app_config(tmp_path))
    svc.db.create_all()
    yield svc
    svc.db.dispose()


def enrol_student(session: Session) -> Student:
    """city(1) → district(2) → school(3) → grade(4) → class(5), and one student (id 1)."""
    city = add_org_unit(session, "c01", "示例市", "city", None)
    district = add_org_unit(session, "c01-d01", "示例区", "district", city)
    school = add_org_unit(session, "c01-d01-s01", SCHOOL_NAME, "school", district)
    grade = add_org_unit(session, "c01-d01-s01-g7", "七年级", "grade", school)
    klass = add_org_unit(session, "c01-d01-s01-g7-c1", "七年级（1）班", "class", grade)
    student = Student(
        school_id=school.id,
        class_id=klass.id,
        name=STUDENT_NAME,
        gender="F",
        id_number=STUDENT_ID_NUMBER,
        school_student_no="20250001",
        grade_level=7,
    )
    session.add(student)
    session.flush()
    return student


def record_sample(services: Services) -> Student:
    """Enrol the student and record ``ANSWERS`` for ``sample4``, committed."""
    with services.db.transaction() as session:
        student = enrol_student(session)
        record_response(
            session,
            services,
            student,
            "sample4",
            ANSWERS,
            {f"第{i}题": v for i, v in enumerate(ANSWERS.values(), 1)},
            "test",
        )
    return student


def test_end_to_end_plugin_scorer_channel_and_observers(services: Services) -> None:
    with services.db.transaction() as session:
        student = enrol_student(session)
        assert (student.id, student.school_id, student.class_id) == (1, 3, 5)
        raw_cells = {"第1题": "总是", "第2题": "经常", "第3题": "有时", "第4题": "经常"}
        outcome = record_response(session, services, student, "sample4", ANSWERS, raw_cells, "test")
        assert outcome.duplicate is False
        assert outcome.case_opened is True
        assert outcome.notifications == 6

    report = dispatch_pending(services)
    assert report.as_dict() == {"sent": 6, "failed": 0, "dead": 0, "duplicates": 0}

    with services.db.sessionmaker() as session:
        scores = {s.scale: (s.raw_score, s.band, s.answered, s.valid) for s in session.scalars(select(Score))}
        assert scores == {"total": (8.0, None, 4, True), "high_items": (3.0, None, 4, True)}

        (warning,) = session.scalars(select(WarningRow)).all()
        assert (warning.id, warning.student_id, warning.level, warning.status) == (1, 1, 2, "open")
        assert (warning.rule_id, warning.ruleset_id, warning.ruleset_version) == (
            "sample4.high_items",
            "sample4",
            "test.1",
        )
        assert warning.inputs == [
            {
                "rule_id": "sample4.high_items",
                "level": 2,
                "inputs": {"sample4:scale:high_items": 3.0},
                "ruleset": "sample4",
            }
        ]

        (case,) = session.scalars(select(Case)).all()
        assert (case.level, case.state, case.template_id) == (2, "warned", "level2-serious")

        rows = session.scalars(select(Notification).order_by(Notification.id)).all()
        assert [(n.channel, n.role, n.status, n.attempts) for n in rows] == [
            (channel, role, "sent", 1) for role in MEMO_ROLES for channel in ("inbox", "memo")
        ]
        assert session.scalar(select(InboxMessage.id).where(InboxMessage.role == "class_teacher")) is not None
        payload = rows[1].payload

    expected_keys = [f"warning-1-L2:memo:{role}@3" for role in MEMO_ROLES]
    assert [m.key for m in sample.memos] == expected_keys
    assert [(m.role, m.level) for m in sample.memos] == [(role, 2) for role in MEMO_ROLES]
    assert all(m.payload == payload for m in sample.memos)
    assert payload["subject"] == f"[心数] 较重预警 个案 #1（{SCHOOL_NAME}）"
    assert payload["link"] == "http://127.0.0.1:5000/admin/case/details/?id=1"
    for memo in sample.memos:
        seen = memo.key + "".join(str(v) for v in memo.payload.values())
        assert STUDENT_NAME not in seen
        assert STUDENT_ID_NUMBER not in seen

    assert sample.raised_warnings == [sample.WarningSeen(1, 1, 2, "sample4.high_items", in_session=True)]
    assert (
        sorted((a.channel, a.ok, a.duplicate) for a in sample.attempts)
        == [("inbox", True, False)] * 3 + [("memo", True, False)] * 3
    )


def test_hook_register_scorers(services: Services) -> None:
    assert services.scorer_classes["count_at_least"] is sample.CountAtLeastScorer
    assert {"sum", "mean", "count_at_least"} <= set(services.scorer_classes)
    instrument = services.declarations.instruments["sample4"]
    assert instrument.scale("high_items").options == {"threshold": 2}

    # 3, 2, 1, 2: three answers are >= 2.
    result = score_response(instrument, ANSWERS, services.scorers())
    assert (result.scale_value("total"), result.scale_value("high_items")) == (8.0, 3.0)

    # One answer missing: ``total`` needs all four (invalid); ``high_items`` needs three
    # and counts the answered 3 and 2 but not the 0.
    result = score_response(
        instrument, {"sample4_1": 3, "sample4_2": None, "sample4_3": 2, "sample4_4": 0}, services.scorers()
    )
    assert result.scales["total"].valid is False
    assert result.scale_value("total") is None
    assert (result.scale_value("high_items"), result.scales["high_items"].answered) == (2.0, 3)
    assert result.flags == ("incomplete:total",)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('{threshold: "two"}', "scales[1].options.threshold: 'two' is not of type 'integer'"),
        ("{}", "scales[1].options: 'threshold' is a required property"),
        ("{threshold: 2, cutoff: 3}", "scales[1].options.cutoff: unknown key 'cutoff'"),
    ],
)
def test_plugin_scorer_options_are_validated(tmp_path: Path, options: str, expected: str) -> None:
    _, scorers, channels = load_plugins({"XINSHU_PLUGINS": "xinshu_sample_plugin", "XINSHU_BLOCK_PLUGINS": ""})
    text = (sample.DECLARATIONS / "instruments" / "sample4.yaml").read_text(encoding="utf-8")
    assert text.count("options: {threshold: 2}") == 1
    broken = tmp_path / "broken"
    (broken / "instruments").mkdir(parents=True)
    (broken / "instruments" / "sample4.yaml").write_text(
        text.replace("options: {threshold: 2}", f"options: {options}"), encoding="utf-8"
    )
    # The project supplies levels.yaml and the other instruments; only the broken file is ours.
    with pytest.raises(DeclarationsInvalid) as excinfo:
        load_declarations([REPO, broken], scorers, channels)
    # ``options:`` of the second scale is on line 34 of sample4.yaml.
    assert [str(e) for e in excinfo.value.errors] == [f"instruments/sample4.yaml:34: {expected}"]
    assert str(excinfo.value).startswith("instruments/sample4.yaml:34: scales[1].options")


def test_hook_register_channels(services: Services) -> None:
    assert services.channel_classes["memo"] is sample.MemoChannel
    assert services.configured_channels() == {"inbox", "memo"}
    assert "memo" in services.declarations.levels.get(2).notify[0].channels
    record_sample(services)
    assert dispatch_pending(services).as_dict() == {"sent": 6, "failed": 0, "dead": 0, "duplicates": 0}

    # At least once: a crash after sending but before marking sent leaves the row
    # pending; the re-send carries the same key and the channel reports a duplicate.
    key = "warning-1-L2:memo:class_teacher@3"
    with services.db.transaction() as session:
        row = session.scalar(select(Notification).where(Notification.idempotency_key == key))
        row.status = "pending"
    assert dispatch_pending(services).as_dict() == {"sent": 1, "failed": 0, "dead": 0, "duplicates": 1}
    assert [m.key for m in sample.memos].count(key) == 1
    assert len(sample.memos) == 3
    assert sample.attempts[-1] == sample.AttemptSeen(key, "memo", True, True, "already noted")


def test_hook_register_declaration_dirs(tmp_path: Path, services: Services) -> None:
    roots = declaration_roots(services.pm, services.config)
    assert roots == [Path(services.config["DECLARATION_ROOT"]), sample.DECLARATIONS]
    decls = services.declarations
    assert {"phq9", "gad7", "sample4"} <= set(decls.instruments)
    assert decls.instruments["sample4"].file == "instruments/sample4.yaml"
    ruleset = decls.ruleset_for("sample4")
    assert (ruleset.id, ruleset.file, [r.id for r in ruleset.rules]) == (
        "sample4",
        "rules/alerts/sample4.yaml",
        ["sample4.high_items"],
    )
    assert ruleset.rules[0].when == {"scale": "high_items", "gte": 2}


def test_block_plugins_removes_everything_the_plugin_adds(tmp_path: Path) -> None:
    svc = build_services(
        {"XINSHU_PLUGINS": "xinshu_sample_plugin", "XINSHU_BLOCK_PLUGINS": "xinshu_sample_plugin"}, with_db=False
    )
    assert svc.pm.get_plugin("xinshu_sample_plugin") is None
    assert "count_at_least" not in svc.scorer_classes
    assert "memo" not in svc.channel_classes
    assert "sample4" not in svc.declarations.instruments


def test_list_plugins_names_the_sample_plugin_and_its_hooks(services: Services) -> None:
    infos = {info.name: info for info in list_plugins(services.pm)}
    assert {"scorers", "inbox", "email", "xinshu_sample_plugin"} <= set(infos)
    assert infos["xinshu_sample_plugin"] == PluginInfo(
        name="xinshu_sample_plugin",
        distribution="",
        version="",
        hooks=(
            "notification_attempted",
            "register_admin_views",
            "register_channels",
            "register_commands",
            "register_declaration_dirs",
            "register_scorers",
            "warning_raised",
        ),
    )
    assert infos["scorers"].hooks == ("register_scorers",)


def test_trace_plugins_logs_hook_calls(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="xinshu.plugin_manager"):
        build_services({"XINSHU_PLUGINS": "xinshu_sample_plugin", "XINSHU_TRACE_PLUGINS": "1"}, with_db=False)
    traced = "\n".join(r.getMessage() for r in caplog.records if r.name == "xinshu.plugin_manager")
    assert "register_scorers" in traced
    assert "register_declaration_dirs" in traced


def test_hook_register_admin_views(tmp_path: Path) -> None:
    app_module = pytest.importorskip("xinshu.app")
    app = app_module.create_app(app_config(tmp_path, SECRET_KEY="test-secret", TESTING=True))
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert f"{sample.ADMIN_ENDPOINT}.index" in endpoints
    assert sample.admin_calls == [app.name]
    # SecureView's login requirement applies to the plugin's page too.
    response = app.test_client().get("/admin/sample_plugin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    app.extensions["xinshu"].db.dispose()


def test_hook_register_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    import click
    from click.testing import CliRunner

    from xinshu.plugin_manager import get_plugin_manager

    group = click.Group("xinshu")
    get_plugin_manager(extra_modules=["xinshu_sample_plugin"]).hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["sample-hello", "城东"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello 城东 from the sample plugin\n"
    # The real command line calls the hook at import with the configured plugins.
    from xinshu import cli

    assert "sample-hello" not in cli.main.commands  # XINSHU_LOAD_PLUGINS=xinshu in tests: not loaded


def test_hook_warning_raised(services: Services) -> None:
    record_sample(services)
    assert sample.raised_warnings == [sample.WarningSeen(1, 1, 2, "sample4.high_items", in_session=True)]

    # A lower-or-equal level for the same student adds no warning, so no call.
    with services.db.transaction() as session:
        student = session.get(Student, 1)
        answers = {"sample4_1": 2, "sample4_2": 2, "sample4_3": 0, "sample4_4": 0}
        outcome = record_response(session, services, student, "sample4", answers, {}, "test")
        assert outcome.warning is None
    assert len(sample.raised_warnings) == 1


def test_hook_notification_attempted(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    def memo_down(self: sample.MemoChannel, notification: Any, context: Any) -> Any:
        raise RuntimeError("memo down")

    monkeypatch.setattr(sample.MemoChannel, "send", memo_down)
    record_sample(services)
    assert dispatch_pending(services).as_dict() == {"sent": 3, "failed": 3, "dead": 0, "duplicates": 0}

    # Success and failure alike reach the observer, in dispatch order.
    assert [(a.key, a.ok, a.detail) for a in sample.attempts] == [
        (
            f"warning-1-L2:{channel}:{role}@3",
            channel == "inbox",
            "stored" if channel == "inbox" else "RuntimeError: memo down",
        )
        for role in MEMO_ROLES
        for channel in ("inbox", "memo")
    ]
    with services.db.sessionmaker() as session:
        failed = session.scalars(select(Notification).where(Notification.channel == "memo")).all()
        assert [(n.status, n.attempts, n.last_error) for n in failed] == [("pending", 1, "RuntimeError: memo down")] * 3


class Raiser:
    """An inline plugin whose observers always raise."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def fail(self, hook: str) -> None:
        self.calls.append(hook)
        raise RuntimeError(f"{hook} exploded")


class FirstRaiser(Raiser):
    @hookimpl(tryfirst=True)
    def warning_raised(self, warning: Any) -> None:
        self.fail("warning_raised")

    @hookimpl(tryfirst=True)
    def notification_attempted(self, delivery: Any) -> None:
        self.fail("notification_attempted")


class LastRaiser(Raiser):
    @hookimpl(trylast=True)
    def warning_raised(self, warning: Any, session: Any) -> None:
        self.fail("warning_raised")

    @hookimpl(trylast=True)
    def notification_attempted(self, notification: Any, delivery: Any) -> None:
        self.fail("notification_attempted")


def test_failing_observers_do_not_stop_warnings_or_deliveries(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    # One raiser runs before the sample plugin's observer and one after, whichever
    # order observers are called in.
    first, last = FirstRaiser(), LastRaiser()
    services.pm.register(first, name="raiser-first")
    services.pm.register(last, name="raiser-last")
    try:
        with caplog.at_level(logging.ERROR, logger="xinshu.plugin_manager"):
            record_sample(services)
            report = dispatch_pending(services)
    finally:
        services.pm.unregister(name="raiser-first")
        services.pm.unregister(name="raiser-last")

    with services.db.sessionmaker() as session:
        (warning,) = session.scalars(select(WarningRow)).all()
        assert (warning.level, warning.rule_id, warning.status) == (2, "sample4.high_items", "open")
        assert session.scalar(select(Case.id)) == 1
    assert report.as_dict() == {"sent": 6, "failed": 0, "dead": 0, "duplicates": 0}
    assert sample.raised_warnings == [sample.WarningSeen(1, 1, 2, "sample4.high_items", in_session=True)]
    assert len(sample.attempts) == 6
    assert len(sample.memos) == 3
    for raiser in (first, last):
        assert raiser.calls == ["warning_raised"] + ["notification_attempted"] * 6
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.count("warning_raised hook of plugin raiser-first failed") == 1
    assert logged.count("notification_attempted hook of plugin raiser-last failed") == 6
    assert services.pm.get_plugin("raiser-first") is None
