"""Webhook (WeCom, DingTalk) and SMS channels against real receivers on 127.0.0.1, and
the dispatcher's fault behaviour with real processes killed by SIGKILL.

Receivers: ``http_receiver.Receiver`` (``http.server`` in a thread: robot and
SMS-gateway answers, de-duplication counted on ``X-Xinshu-Key``) and
aiosmtpd for email. The declaration root is a copy of the project's with the
level-3 psychology-teacher target also sent through ``wecom``, ``dingtalk``
and ``sms``.

Level 3 (``phq9_9 = 1``) in rules/levels.yaml notifies the psychology teacher
(inbox, email), the principal (inbox, email) and the district admin (inbox).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from http_receiver import Receiver, free_port
from sqlalchemy import select

from xinshu.alerting import record_response
from xinshu.auth import create_user
from xinshu.channels import ChannelContext
from xinshu.dispatch import backoff, dispatch_pending
from xinshu.models import InboxMessage, Notification, Student, utcnow
from xinshu.orgs import add_org_unit
from xinshu.plugins.sms import MAX_SMS_CHARS, HttpSmsChannel, sms_text
from xinshu.plugins.webhooks import dingtalk_url
from xinshu.services import build_services

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
STUDENT_NAME = "张测试"
ID_NUMBER = "110101200901011234"
LEVEL3 = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1}
DINGTALK_SECRET = "SECtest0123456789abcdef"
EXTRA = ("wecom", "dingtalk", "sms")


def declaration_root(tmp_path: Path, extra: tuple[str, ...] = EXTRA) -> Path:
    """The project's declarations; level 3's psychology-teacher target also uses ``extra``."""
    root = tmp_path / "declarations"
    if root.exists():
        return root
    shutil.copytree(REPO / "instruments", root / "instruments")
    shutil.copytree(REPO / "rules", root / "rules")
    path = root / "rules" / "levels.yaml"
    levels = yaml.safe_load(path.read_text("utf-8"))
    (level3,) = [lv for lv in levels["levels"] if lv["level"] == 3]
    (target,) = [t for t in level3["notify"] if t["role"] == "psychology_teacher"]
    target["channels"].extend(extra)
    path.write_text(yaml.safe_dump(levels, allow_unicode=True, sort_keys=False), "utf-8")
    return root


class Mailbox:
    def __init__(self):
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


def channel_settings(receiver: Receiver, smtp_port: int | None = None) -> dict[str, Any]:
    settings = {
        "WECOM_WEBHOOK_URL": receiver.url("/cgi-bin/webhook/send?key=wecom-test-key"),
        "DINGTALK_WEBHOOK_URL": receiver.url("/robot/send?access_token=ding-test-token"),
        "DINGTALK_SECRET": DINGTALK_SECRET,
        "WEBHOOK_TIMEOUT": 5,
        "SMS_GATEWAY_URL": receiver.url("/sms/send"),
        "SMS_GATEWAY_TOKEN": "sms-token",
        "SMS_RECIPIENTS": json.dumps({"psychology_teacher@S1": ["13800000001", "13800000002"]}),
        "SMS_TIMEOUT": 5,
    }
    if smtp_port:
        settings |= {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_port, "MAIL_TIMEOUT": 5}
    return settings


def make_services(tmp_path: Path, **settings):
    config = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}",
        "DECLARATION_ROOT": str(declaration_root(tmp_path)),
        "XINSHU_PLUGINS": "",
        "XINSHU_BLOCK_PLUGINS": "",
        "PUBLIC_URL": "https://xinshu.example.edu.cn",
    } | settings
    services = build_services(config)
    services.db.create_all()
    return services


def enrol(services) -> int:
    """city C01 → district D01 → school S1 → class; staff with email; one student. Returns the student id."""
    with services.db.transaction() as session:
        city = add_org_unit(session, "C01", "示范市", "city", None)
        district = add_org_unit(session, "D01", "一区", "district", city)
        school = add_org_unit(session, "S1", "一中", "school", district)
        klass = add_org_unit(session, "S1-C1", "七年级1班", "class", school)
        create_user(session, "psy", "pw-123456789", "psychology_teacher", school, email="psy@school.test")
        create_user(session, "head", "pw-123456789", "principal", school, email="head@school.test")
        create_user(session, "dist", "pw-123456789", "district_admin", district, email="dist@district.test")
        create_user(session, "city", "pw-123456789", "bureau_admin", city, email="city@bureau.test")
        student = Student(school_id=school.id, class_id=klass.id, name=STUDENT_NAME, gender="F", grade_level=7,
                          id_number=ID_NUMBER)  # fmt: skip
        session.add(student)
        session.flush()
        return student.id


def warn(services, student_id: int, answers: dict | None = None) -> int:
    with services.db.transaction() as session:
        outcome = record_response(session, services, session.get(Student, student_id), "phq9", answers or LEVEL3, {},
                                  "test")  # fmt: skip
        return outcome.warning.id


def rows(services, channel: str | None = None) -> list[Notification]:
    with services.db.sessionmaker() as session:
        stmt = select(Notification).order_by(Notification.id)
        if channel:
            stmt = stmt.where(Notification.channel == channel)
        return list(session.scalars(stmt))


def assert_no_personal_data(text: str) -> None:
    assert STUDENT_NAME not in text and ID_NUMBER not in text and "phq9" not in text


# --- WeCom and DingTalk -------------------------------------------------------------


def test_wecom_and_dingtalk_post_markdown_with_key_and_a_valid_signature(tmp_path, receiver):
    services = make_services(tmp_path, **channel_settings(receiver))
    warning_id = warn(services, enrol(services))
    started_ms = int(time.time() * 1000)
    report = dispatch_pending(services)
    assert report.as_dict() == {"sent": 6, "failed": 0, "dead": 0, "duplicates": 0}  # 3 inbox, wecom, dingtalk, sms

    (wecom,) = receiver.on("/cgi-bin/webhook/send")
    assert wecom.query == {"key": ["wecom-test-key"]}
    assert wecom.headers["Content-Type"].startswith("application/json")
    assert set(wecom.body) == {"msgtype", "markdown"} and wecom.body["msgtype"] == "markdown"
    assert set(wecom.body["markdown"]) == {"content"}
    content = wecom.body["markdown"]["content"]
    (row,) = rows(services, "wecom")
    assert wecom.headers["X-Xinshu-Key"] == row.idempotency_key == f"warning-{warning_id}-L3:wecom:psychology_teacher@3"
    assert content.startswith(f"### {row.payload['subject']}\n\n{row.payload['body']}")
    assert f"[查看详情]({row.payload['link']})" in content and "https://xinshu.example.edu.cn/admin/case/" in content
    assert "一中" in content and "严重" in content
    assert_no_personal_data(content)

    (ding,) = receiver.on("/robot/send")
    assert set(ding.query) == {"access_token", "timestamp", "sign"}
    assert ding.query["access_token"] == ["ding-test-token"]
    timestamp = ding.query["timestamp"][0]
    assert started_ms - 1000 <= int(timestamp) <= int(time.time() * 1000)
    # recomputed independently from the DingTalk custom-robot docs
    string_to_sign = f"{timestamp}\n{DINGTALK_SECRET}".encode()
    expected = base64.b64encode(hmac.new(DINGTALK_SECRET.encode(), string_to_sign, hashlib.sha256).digest()).decode()
    assert ding.query["sign"] == [expected]  # parse_qs undid the URL encoding
    assert ding.body["msgtype"] == "markdown" and set(ding.body["markdown"]) == {"title", "text"}
    assert ding.body["markdown"]["title"] == row.payload["subject"]
    assert ding.headers["X-Xinshu-Key"] == f"warning-{warning_id}-L3:dingtalk:psychology_teacher@3"
    assert_no_personal_data(json.dumps(ding.body, ensure_ascii=False))


def test_dingtalk_signature_is_url_encoded_and_unsigned_without_a_secret():
    url = dingtalk_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SECx", timestamp_ms=1700000000000)
    digest = hmac.new(b"SECx", b"1700000000000\nSECx", hashlib.sha256).digest()
    sign = base64.b64encode(digest).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    assert url == f"https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1700000000000&sign={sign}"
    assert dingtalk_url("https://x.test/send?access_token=t", None) == "https://x.test/send?access_token=t"


def test_webhook_retried_after_the_receiver_fails_then_succeeds(tmp_path, receiver):
    services = make_services(tmp_path, **channel_settings(receiver))
    warn(services, enrol(services))
    receiver.fail_next(1, status=500)  # the first webhook request (wecom: its row comes first) gets HTTP 500
    receiver.fail_next(1, status=200, body={"errcode": 93000, "errmsg": "invalid webhook url"})  # then dingtalk
    now = utcnow()
    report = dispatch_pending(services, now=now)
    assert (report.sent, report.failed) == (4, 2)
    failed = {n.channel: n for n in rows(services) if n.status == "pending"}
    assert failed["wecom"].last_error == "HTTP 500" and failed["wecom"].attempts == 1
    assert failed["dingtalk"].last_error == "errcode 93000: invalid webhook url"
    assert failed["wecom"].next_attempt_at == now + backoff(1)

    assert dispatch_pending(services, now=now + backoff(1) - dt.timedelta(seconds=1)).sent == 0  # not due yet
    report = dispatch_pending(services, now=now + backoff(1))
    assert (report.sent, report.failed) == (2, 0)
    assert all(n.status == "sent" for n in rows(services))
    wecom_requests = receiver.on("/cgi-bin/webhook/send")
    assert [r.answered for r in wecom_requests] == [500, 200]
    assert len({r.headers["X-Xinshu-Key"] for r in wecom_requests}) == 1  # the same key on the retry
    assert receiver.duplicates() == {}  # the failed attempt was not accepted, so no duplicate


def test_unreachable_webhook_is_a_failed_attempt_not_a_crash(tmp_path, receiver):
    settings = channel_settings(receiver) | {"WECOM_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/send?key=k"}
    services = make_services(tmp_path, **settings)
    warn(services, enrol(services))
    assert (dispatch_pending(services).sent, len(rows(services))) == (5, 6)
    (wecom,) = rows(services, "wecom")
    assert wecom.status == "pending" and wecom.last_error.startswith("URLError")
    assert "key=k" not in wecom.last_error  # the robot's access key never lands in the error


# --- SMS ------------------------------------------------------------------------------


def test_sms_reference_gateway_gets_phones_short_text_and_key(tmp_path, receiver):
    services = make_services(tmp_path, **channel_settings(receiver))
    warning_id = warn(services, enrol(services))
    dispatch_pending(services)
    (sms,) = receiver.on("/sms/send")
    key = f"warning-{warning_id}-L3:sms:psychology_teacher@3"
    assert sms.headers["X-Xinshu-Key"] == key and sms.headers["Authorization"] == "Bearer sms-token"
    assert set(sms.body) == {"key", "phones", "text"} and sms.body["key"] == key
    assert sms.body["phones"] == ["13800000001", "13800000002"]
    assert len(sms.body["text"]) <= MAX_SMS_CHARS and "一中" in sms.body["text"]
    assert_no_personal_data(sms.body["text"])
    (row,) = rows(services, "sms")
    assert row.status == "sent" and "13800000001" not in (row.last_error or "")


def test_sms_text_fits_one_segment():
    payload = {"subject": "[心数] 非常严重预警 个案 #123456（" + "很长的学校名称" * 10 + "）", "body": "", "link": ""}
    text = sms_text(payload)
    assert len(text) == MAX_SMS_CHARS and text.endswith("…，请登录系统处理")
    assert sms_text({"subject": "[心数] 严重预警 个案 #7（一中）"}) == "[心数] 严重预警 个案 #7（一中），请登录系统处理"


def test_sms_without_phone_numbers_for_the_target_fails_clearly(tmp_path, receiver):
    settings = channel_settings(receiver) | {"SMS_RECIPIENTS": {"principal@S1": ["13800000009"]}}
    services = make_services(tmp_path, **settings)
    warn(services, enrol(services))
    (row,) = rows(services, "sms")
    with services.db.sessionmaker() as session:
        delivery = HttpSmsChannel().send(session.get(Notification, row.id), ChannelContext(session, services.config))
    assert not delivery.ok and delivery.detail == "no phone numbers for psychology_teacher@S1 in SMS_RECIPIENTS"
    assert receiver.on("/sms") == []


def test_a_failing_sms_gateway_never_stops_inbox_and_email(tmp_path, receiver, smtp):
    mailbox, port = smtp
    settings = channel_settings(receiver, port)
    for name in ("WECOM_WEBHOOK_URL", "DINGTALK_WEBHOOK_URL"):
        settings.pop(name)  # only inbox, email and sms are configured
    services = make_services(tmp_path, **settings)
    warn(services, enrol(services))
    receiver.fail_next(1, status=503)
    report = dispatch_pending(services)
    assert (report.sent, report.failed) == (5, 1)  # 3 inbox + 2 email delivered; sms failed
    assert sorted(r for recipients, _ in mailbox.messages for r in recipients) == [
        "head@school.test", "psy@school.test",
    ]  # fmt: skip
    (sms,) = rows(services, "sms")
    assert sms.status == "pending" and sms.last_error == "SMS gateway HTTP 503"
    with services.db.sessionmaker() as session:
        assert session.query(InboxMessage).count() == 3


# --- faults with real processes ---------------------------------------------------------


def subprocess_env(tmp_path: Path, settings: dict[str, Any], **extra: str) -> dict[str, str]:
    """Environment for a child process: everything through XINSHU_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XINSHU_")}
    env |= {f"XINSHU_{k}": str(v) for k, v in settings.items()}
    env |= {
        "XINSHU_DATABASE_URL": f"sqlite:///{tmp_path / 'xinshu.db'}",
        "XINSHU_DECLARATIONS": str(declaration_root(tmp_path)),
        "XINSHU_PLUGINS": "xinshu_fault_plugin",
        "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    return env | extra


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xinshu.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("channel", ["sms", "wecom"])
def test_dispatcher_killed_after_sending_redelivers_with_the_same_key(tmp_path, receiver, channel):
    """SIGKILL between the send and the commit that marks it sent: the restarted
    dispatcher sends again with the same key; the receiver counts a duplicate
    (and the SMS gateway says so, so the dispatcher counts it too)."""
    settings = channel_settings(receiver)
    services = make_services(tmp_path, **settings)
    warning_id = warn(services, enrol(services))
    key = f"warning-{warning_id}-L3:{channel}:psychology_teacher@3"

    env = subprocess_env(tmp_path, settings)
    killed = run_cli(env | {"XINSHU_TEST_KILL_AFTER_SEND": channel}, "dispatch")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert receiver.accepted[key] == 1  # the message went out...
    (row,) = rows(services, channel)
    assert (row.status, row.attempts, row.sent_at) == ("pending", 0, None)  # ...but was never marked sent

    restarted = run_cli(env, "dispatch")
    assert restarted.returncode == 0, restarted.stderr
    counts = json.loads(restarted.stdout)
    assert receiver.accepted[key] == 2 and receiver.duplicates() == {key: 1}
    assert {r.headers["X-Xinshu-Key"] for r in receiver.requests if r.headers["X-Xinshu-Key"] == key} == {key}
    assert counts["duplicates"] == (1 if channel == "sms" else 0)  # robots cannot report a repeat; the gateway can
    assert counts["failed"] == counts["dead"] == 0
    assert all(n.status == "sent" for n in rows(services))
    (row,) = rows(services, channel)
    assert row.attempts == 1
    with services.db.sessionmaker() as session:  # the inbox rows of the killed transaction were rolled back with it
        keys = list(session.scalars(select(InboxMessage.idempotency_key)))
        assert len(keys) == len(set(keys)) == 3


APP_SCRIPT = """
import os, signal, sys
from xinshu.alerting import record_response
from xinshu.models import Student
from xinshu.services import build_services

services = build_services({})
answers = {f"phq9_{i}": 0 for i in range(1, 9)} | {"phq9_9": 1}
with services.db.transaction() as session:
    outcome = record_response(session, services, session.get(Student, int(sys.argv[1])), "phq9", answers, {}, "web")
    warning_id = outcome.warning.id
print(warning_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # right after the commit, before anything is dispatched
"""


def test_app_killed_right_after_the_warning_commits_delivers_after_restart(tmp_path, receiver, smtp):
    mailbox, port = smtp
    settings = channel_settings(receiver, port)
    services = make_services(tmp_path, **settings)
    student_id = enrol(services)
    env = subprocess_env(tmp_path, settings)
    app = subprocess.run(
        [sys.executable, "-c", APP_SCRIPT, str(student_id)], env=env, capture_output=True, text=True, timeout=120
    )
    assert app.returncode == -signal.SIGKILL, app.stderr
    warning_id = int(app.stdout.strip())
    pending = rows(services)
    assert len(pending) == 8 and {n.status for n in pending} == {"pending"}  # 3 inbox, 2 email, wecom, dingtalk, sms
    assert receiver.requests == [] and mailbox.messages == []

    restarted = run_cli(env, "scheduler", "run", "--once")
    assert restarted.returncode == 0, restarted.stderr
    tick = json.loads(restarted.stdout)
    assert tick["ran"] is True
    reminders = tick["remind_tasks"]["reminders"]  # plan tasks due within 24 h, queued by the same tick
    assert tick["dispatch"] == {"sent": 8 + reminders, "failed": 0, "dead": 0, "duplicates": 0}
    assert all(n.status == "sent" for n in rows(services))
    assert sorted(r.path for r in receiver.requests) == ["/cgi-bin/webhook/send", "/robot/send", "/sms/send"]
    assert all(r.headers["X-Xinshu-Key"].startswith(f"warning-{warning_id}-L3:") for r in receiver.requests)
    assert len(mailbox.messages) == 2
    for _, content in mailbox.messages:
        assert_no_personal_data(content)
