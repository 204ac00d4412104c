"""The example plugin, installed as a package (``pip install -e .``), end to end.

Run from this folder with ``python -m pytest``. Nothing here registers the
plugin by hand: every application finds it through the ``xinshu`` entry point,
as a deployment would.

Each application gets its own declaration root in ``tmp_path``: a copy of the
xinshu checkout's ``instruments/`` and ``rules/`` in which the deployment has
added ``example_sms`` to every level-2 notify target and written alert rules
for the plugin's scale (``rules/alerts/example_wellbeing.yaml``: band ``low``
raises level 2). The plugin itself adds ``instruments/example_wellbeing.yaml``.

Hand-computed scores (weights ew_1 1, ew_2 1.5, ew_3 1 reverse-keyed as 3 − x,
ew_4 0.5; bands low 0–4, middle 4.5–8, high 8.5–12):

* 1, 0, 3, 2 → 1·1 + 0·1.5 + (3−3)·1 + 2·0.5 = 2.0, low;
* 2, 1, 1, 1 → 2 + 1.5 + 2 + 0.5 = 6.0, middle;
* 3, 3, 0, 3 → 3 + 4.5 + 3 + 1.5 = 12.0, high.
"""

from __future__ import annotations

import configparser
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xinshu_example
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session
from xinshu_example.plugin import DECLARATIONS, ExampleSmsChannel, WeightedSumScorer

from xinshu.alerting import record_response
from xinshu.channels import ChannelContext, Delivery
from xinshu.declarations.registry import load_declarations
from xinshu.dispatch import dispatch_pending
from xinshu.errors import DeclarationsInvalid
from xinshu.instruments import MissingRule
from xinshu.models import Notification, Student
from xinshu.orgs import add_org_unit
from xinshu.plugin_manager import get_plugin_manager, installed_entry_points, list_plugins
from xinshu.scoring import ScaleInput, answers_matrix, score_matrix, score_response
from xinshu.services import Services, build_services, declaration_roots, default_declaration_root, load_plugins

EXAMPLE = Path(__file__).resolve().parent.parent
INSTRUMENT_FILE = DECLARATIONS / "instruments" / "example_wellbeing.yaml"
WEIGHTS_LINE = "      weights: {ew_1: 1, ew_2: 1.5, ew_3: 1, ew_4: 0.5}"
STUDENT_NAME = "王小雨"
STUDENT_ID_NUMBER = "110101201001011234"
SCHOOL_CODE = "c01-d01-s01"
GATEWAY_TOKEN = "gateway-test-token"  # noqa: S105 - a test value, sent to the local test gateway
ROLES = ("psychology_teacher", "moral_education_director", "class_teacher")
LOW = {"ew_1": 1, "ew_2": 0, "ew_3": 3, "ew_4": 2}  # 2.0, band low → level 2 with the rule below
ALERT_RULES = {
    "kind": "alert_rules",
    "id": "example_wellbeing",
    "version": "deployment.1",
    "instrument": "example_wellbeing",
    "rules": [
        {
            "id": "example_wellbeing.low",
            "level": 2,
            "when": {"band": "wellbeing", "in": ["low"]},
            "explain": {"zh": "幸福感加权分偏低", "en": "Low weighted wellbeing score"},
            "source": "deployment rule for the example scale (tests)",
        }
    ],
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _all_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load every installed plugin (xinshu's own tests load only xinshu's)."""
    monkeypatch.delenv("XINSHU_LOAD_PLUGINS", raising=False)


def project_root() -> Path:
    """The xinshu checkout whose declarations the tests copy (editable install)."""
    root = default_declaration_root()
    if not (root / "instruments").is_dir() or not (root / "rules" / "levels.yaml").is_file():
        pytest.skip(f"no xinshu declarations at {root} (install xinshu editable or set XINSHU_DECLARATIONS)")
    return root


def declaration_root(tmp_path: Path, uses_example: bool = True) -> Path:
    """The deployment's root: the project's declarations; with ``uses_example``, example_sms at
    level 2 and alert rules for the example's scale."""
    root = tmp_path / "declarations"
    shutil.copytree(project_root() / "instruments", root / "instruments")
    shutil.copytree(project_root() / "rules", root / "rules")
    if not uses_example:
        return root
    levels_path = root / "rules" / "levels.yaml"
    levels = yaml.safe_load(levels_path.read_text(encoding="utf-8"))
    (level2,) = [lv for lv in levels["levels"] if lv["level"] == 2]
    for target in level2["notify"]:
        target["channels"].append("example_sms")
    levels_path.write_text(yaml.safe_dump(levels, allow_unicode=True, sort_keys=False), encoding="utf-8")
    alerts = root / "rules" / "alerts" / "example_wellbeing.yaml"
    alerts.write_text(yaml.safe_dump(ALERT_RULES, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return root


def app_config(tmp_path: Path, uses_example: bool = True, **extra: Any) -> dict[str, Any]:
    """Settings are explicit so that the environment cannot leak in."""
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}",
        "DECLARATION_ROOT": str(declaration_root(tmp_path, uses_example)),
        "XINSHU_PLUGINS": "",
        "XINSHU_BLOCK_PLUGINS": "",
        "XINSHU_TRACE_PLUGINS": "",
        "MAIL_SERVER": "",
        "EXAMPLE_SMS_URL": "",
        "EXAMPLE_SMS_TOKEN": "",
    }
    config.update(extra)
    return config


@dataclass
class Received:
    """One request the SMS gateway got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Gateway:
    """A real HTTP SMS gateway on 127.0.0.1: de-duplicates on the key (409 for a repeat).

    Set ``fail_with`` to answer every request with that status instead.
    """

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_with: int | None = None
    seen: set[str] = field(default_factory=set)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if self.fail_with is not None:
            status = self.fail_with
        else:
            key = json.loads(body.decode("utf-8"))["key"]
            status = 409 if key in self.seen else 202
            self.seen.add(key)
        self.received.append(Received(path, headers, body, status))
        return status


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer(self.path, dict(self.headers.items()), body)
            reply = b'{"status": "ok"}' if status < 300 else b'{"status": "error"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sms/send"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def services(tmp_path: Path, gateway: Gateway) -> Iterator[Services]:
    svc = build_services(app_config(tmp_path, EXAMPLE_SMS_URL=gateway.url, EXAMPLE_SMS_TOKEN=GATEWAY_TOKEN))
    svc.db.create_all()
    yield svc
    svc.db.dispose()


def enrol_student(session: Session) -> Student:
    """city → district → school (id 3, code c01-d01-s01) → grade → class, and one student."""
    city = add_org_unit(session, "c01", "示例市", "city", None)
    district = add_org_unit(session, "c01-d01", "示例区", "district", city)
    school = add_org_unit(session, SCHOOL_CODE, "示例第一中学", "school", district)
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


def record_low_wellbeing(services: Services) -> None:
    with services.db.transaction() as session:
        student = enrol_student(session)
        outcome = record_response(session, services, student, "example_wellbeing", LOW, {}, "test")
        # Level 2: inbox for three roles, example_sms for three roles; email is not configured.
        assert outcome.case_opened is True
        assert outcome.notifications == 6


# --------------------------------------------------------------------------- installation


def test_installed_plugin_is_found_through_its_entry_point() -> None:
    assert "example" in installed_entry_points()
    pm = get_plugin_manager()
    assert pm.get_plugin("example") is not None
    infos = {info.name: info for info in list_plugins(pm)}
    info = infos["example"]
    assert (info.distribution, info.version) == ("xinshu-example-plugin", xinshu_example.__version__)
    assert metadata.version("xinshu-example-plugin") == xinshu_example.__version__
    assert info.hooks == ("register_channels", "register_declaration_dirs", "register_scorers")


def test_plugin_can_be_blocked_like_any_other() -> None:
    svc = build_services({"XINSHU_PLUGINS": "", "XINSHU_BLOCK_PLUGINS": "example"}, with_db=False)
    assert svc.pm.get_plugin("example") is None
    assert "example_weighted_sum" not in svc.scorer_classes
    assert "example_sms" not in svc.channel_classes
    assert "example_wellbeing" not in svc.declarations.instruments


def test_blocked_or_not_loaded_the_plugin_adds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("XINSHU_BLOCK_PLUGINS", "example"), ("XINSHU_LOAD_PLUGINS", "xinshu")):
        (tmp_path / name).mkdir()
        config = app_config(tmp_path / name, uses_example=False) | {name: value}
        svc = build_services(config, with_db=False)
        assert svc.pm.get_plugin("example") is None
        assert declaration_roots(svc.pm, svc.config) == [Path(svc.config["DECLARATION_ROOT"])]
        assert "example_weighted_sum" not in svc.scorer_classes and "example_sms" not in svc.channel_classes


def test_package_data_ships_every_declaration_file() -> None:
    """setup.cfg's package_data must match the YAML, or a regular install ships no instrument."""
    cfg = configparser.ConfigParser()
    cfg.read(EXAMPLE / "setup.cfg", encoding="utf-8")
    patterns = cfg["options.package_data"]["xinshu_example"].split()
    package = EXAMPLE / "xinshu_example"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    declared = {p for p in (package / "declarations").rglob("*") if p.is_file()}
    assert declared == shipped == {INSTRUMENT_FILE}
    assert not (package / "declarations" / "rules").exists()  # levels.yaml belongs to the deployment


# --------------------------------------------------------------------------- scorer and scale


def test_scale_loads_from_the_plugin_root_and_scores_hand_computed_values(tmp_path: Path) -> None:
    svc = build_services(app_config(tmp_path), with_db=False)
    assert declaration_roots(svc.pm, svc.config)[-1] == DECLARATIONS
    assert svc.scorer_classes["example_weighted_sum"] is WeightedSumScorer
    instrument = svc.declarations.instruments["example_wellbeing"]
    assert instrument.file == "instruments/example_wellbeing.yaml"
    scale = instrument.scale("wellbeing")
    assert (scale.method, scale.options) == (
        "example_weighted_sum",
        {"weights": {"ew_1": 1, "ew_2": 1.5, "ew_3": 1, "ew_4": 0.5}},
    )

    cases = [
        (LOW, 2.0, "low"),
        ({"ew_1": 2, "ew_2": 1, "ew_3": 1, "ew_4": 1}, 6.0, "middle"),
        ({"ew_1": 3, "ew_2": 3, "ew_3": 0, "ew_4": 3}, 12.0, "high"),
        ({"ew_1": 0, "ew_2": 0, "ew_3": 3, "ew_4": 0}, 0.0, "low"),
    ]
    for answers, raw, band in cases:
        result = score_response(instrument, answers, svc.scorers())
        assert (result.scale_value("wellbeing"), result.band("wellbeing")) == (raw, band), answers
        assert result.flags == ()

    # min_answered 4: one missing answer leaves the scale unscored.
    result = score_response(instrument, {**LOW, "ew_4": None}, svc.scorers())
    assert (result.scales["wellbeing"].valid, result.scale_value("wellbeing")) == (False, None)
    assert result.flags == ("incomplete:wellbeing",)


def test_scorer_is_vectorised_over_every_answer_pattern(tmp_path: Path) -> None:
    svc = build_services(app_config(tmp_path), with_db=False)
    instrument = svc.declarations.instruments["example_wellbeing"]
    grid = np.array(np.meshgrid(*[np.arange(4.0)] * 4, indexing="ij")).reshape(4, -1).T  # all 256 patterns
    table = score_matrix(instrument, grid, svc.scorers())
    expected = grid[:, 0] * 1 + grid[:, 1] * 1.5 + (3 - grid[:, 2]) * 1 + grid[:, 3] * 0.5
    np.testing.assert_array_equal(table.raw["wellbeing"], expected)
    assert table.valid["wellbeing"].all()
    # Every possible score lies in a band (steps of 0.5 between the bands' edges).
    assert (table.band["wellbeing"] >= 0).all()
    rows = [dict(zip(instrument.item_ids, row, strict=True)) for row in grid[:3].tolist()]
    np.testing.assert_array_equal(answers_matrix(instrument, rows), grid[:3])


def test_weighted_proration_and_default_weight(tmp_path: Path) -> None:
    svc = build_services(app_config(tmp_path), with_db=False)
    scale = svc.declarations.instruments["example_wellbeing"].scale("wellbeing")
    scorer = WeightedSumScorer()
    nan = np.nan
    keyed = np.array([[2.0, nan, 2.0, 1.0], [2.0, 1.0, 2.0, 1.0]])  # already reverse-keyed
    present = ~np.isnan(keyed)
    data = ScaleInput(keyed, [0, 1, 2, 3], np.where(present, keyed, 0).sum(axis=1), present.sum(axis=1))

    # prorate none: answered items only, 2·1 + 2·1 + 1·0.5 = 4.5; complete row 4.5 + 1·1.5 = 6.0.
    np.testing.assert_array_equal(scorer.score(data, scale), [4.5, 6.0])
    # mean_times_n: 4.5 / answered weight 2.5 × total weight 4 = 7.2; a complete row is not changed.
    prorated = replace(scale, missing=MissingRule(3, "mean_times_n"))
    np.testing.assert_allclose(scorer.score(data, prorated), [7.2, 6.0])
    # An item without a weight weighs 1: ew_2 at 1 instead of 1.5 → 5.5 for the complete row.
    partial = replace(scale, options={"weights": {"ew_1": 1, "ew_3": 1, "ew_4": 0.5}})
    np.testing.assert_array_equal(scorer.score(data, partial), [4.5, 5.5])


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (
            "weights: {ew_1: heavy, ew_2: 1.5, ew_3: 1, ew_4: 0.5}",
            ["scales[0].options.weights.ew_1: 'heavy' is not of type 'number'"],
        ),
        (
            "weights: {ew_1: 1, ew_2: 0, ew_3: 1, ew_4: -2}",
            [
                "scales[0].options.weights.ew_2: 0 is less than or equal to the minimum of 0",
                "scales[0].options.weights.ew_4: -2 is less than or equal to the minimum of 0",
            ],
        ),
        ("weights: {}", ["scales[0].options.weights: {} should be non-empty"]),
        ("weights: [1, 1.5, 1, 0.5]", ["scales[0].options.weights: [1, 1.5, 1, 0.5] is not of type 'object'"]),
        (
            "weight: {ew_1: 1}",
            ["scales[0].options: 'weights' is a required property", "scales[0].options.weight: unknown key 'weight'"],
        ),
    ],
)
def test_bad_weights_are_refused_with_file_and_line(tmp_path: Path, weights: str, expected: list[str]) -> None:
    _, scorers, channels = load_plugins({"XINSHU_PLUGINS": "", "XINSHU_BLOCK_PLUGINS": ""})
    text = INSTRUMENT_FILE.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines.count(WEIGHTS_LINE) == 1
    line = lines.index(WEIGHTS_LINE) + 1
    broken = tmp_path / "broken"
    (broken / "instruments").mkdir(parents=True)
    (broken / "instruments" / INSTRUMENT_FILE.name).write_text(
        text.replace(WEIGHTS_LINE.strip(), weights), encoding="utf-8"
    )
    # The project supplies levels.yaml and its instruments; only the broken copy is the plugin's.
    with pytest.raises(DeclarationsInvalid) as excinfo:
        load_declarations([project_root(), broken], scorers, channels)
    assert [str(e) for e in excinfo.value.errors] == [
        f"instruments/example_wellbeing.yaml:{line}: {e}" for e in expected
    ]


# --------------------------------------------------------------------------- SMS channel


def test_sms_channel_is_configured_only_with_a_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXAMPLE_SMS_URL", raising=False)
    assert ExampleSmsChannel.configured({}) is False
    assert ExampleSmsChannel.configured({"EXAMPLE_SMS_URL": "http://127.0.0.1:9/sms"}) is True
    monkeypatch.setenv("EXAMPLE_SMS_URL", "http://127.0.0.1:9/sms")
    assert ExampleSmsChannel.configured({}) is True

    svc = build_services(app_config(tmp_path), with_db=False)  # EXAMPLE_SMS_URL "" in the config, set in env
    assert "example_sms" in svc.configured_channels()
    monkeypatch.delenv("EXAMPLE_SMS_URL")
    assert "example_sms" not in svc.configured_channels()


def test_sms_is_delivered_to_the_gateway_with_the_key_and_no_name(services: Services, gateway: Gateway) -> None:
    record_low_wellbeing(services)
    assert dispatch_pending(services).as_dict() == {"sent": 6, "failed": 0, "dead": 0, "duplicates": 0}

    with services.db.sessionmaker() as session:
        rows = session.scalars(
            select(Notification).where(Notification.channel == "example_sms").order_by(Notification.id)
        ).all()
        assert [(n.role, n.status, n.attempts) for n in rows] == [(role, "sent", 1) for role in ROLES]
        sent = [(n.idempotency_key, n.role, dict(n.payload)) for n in rows]

    assert [r.status for r in gateway.received] == [202, 202, 202]
    for request, (key, role, payload) in zip(gateway.received, sent, strict=True):
        assert request.path == "/sms/send"
        assert request.json == {"to": f"{role}@{SCHOOL_CODE}", "text": payload["subject"], "key": key}
        assert key == f"warning-1-L2:example_sms:{role}@3"
        assert request.headers["Idempotency-Key"] == key
        assert request.headers["Authorization"] == f"Bearer {GATEWAY_TOKEN}"
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
        everything = request.body.decode("utf-8") + json.dumps(request.headers, ensure_ascii=False)
        assert STUDENT_NAME not in everything
        assert STUDENT_ID_NUMBER not in everything
    assert sent[0][2]["subject"] == "[心数] 较重预警 个案 #1（示例第一中学）"

    # At least once: a re-send after a crash carries the same key; the gateway answers 409
    # and the channel reports a duplicate, which still counts as delivered.
    key = sent[2][0]
    with services.db.transaction() as session:
        session.scalar(select(Notification).where(Notification.idempotency_key == key)).status = "pending"
    assert dispatch_pending(services).as_dict() == {"sent": 1, "failed": 0, "dead": 0, "duplicates": 1}
    assert [(r.json["key"], r.status) for r in gateway.received[3:]] == [(key, 409)]


def test_gateway_error_is_a_failed_delivery(services: Services, gateway: Gateway) -> None:
    record_low_wellbeing(services)
    gateway.fail_with = 500
    assert dispatch_pending(services).as_dict() == {"sent": 3, "failed": 3, "dead": 0, "duplicates": 0}
    with services.db.sessionmaker() as session:
        rows = session.scalars(select(Notification).where(Notification.channel == "example_sms")).all()
        assert [(n.status, n.attempts, n.last_error) for n in rows] == [("pending", 1, "gateway answered HTTP 500")] * 3
        delivery = ExampleSmsChannel().send(rows[0], ChannelContext(session, services.config))
    assert delivery == Delivery(False, "gateway answered HTTP 500")
    assert [r.status for r in gateway.received] == [500] * 4


def test_unreachable_gateway_and_bad_url_are_failed_deliveries(services: Services, gateway: Gateway) -> None:
    record_low_wellbeing(services)
    with services.db.sessionmaker() as session:
        row = session.scalars(select(Notification).where(Notification.channel == "example_sms")).first()
        bad_scheme = ChannelContext(session, {**services.config, "EXAMPLE_SMS_URL": "file:///etc/passwd"})
        assert ExampleSmsChannel().send(row, bad_scheme) == Delivery(
            False, "EXAMPLE_SMS_URL must be an http:// or https:// URL"
        )
        # Port 9 (discard) on 127.0.0.1: nothing listens, the connection is refused.
        refused = ChannelContext(session, {**services.config, "EXAMPLE_SMS_URL": "http://127.0.0.1:9/sms"})
        delivery = ExampleSmsChannel().send(row, refused)
    assert delivery.ok is False
    assert delivery.detail.startswith("gateway unreachable: ")
    assert gateway.received == []
