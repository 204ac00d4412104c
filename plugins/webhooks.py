"""WeCom (企业微信) and DingTalk (钉钉) group-robot webhook channels.

Both post one Markdown message per notification to a group chat's robot:

* ``wecom``: ``WECOM_WEBHOOK_URL`` (``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``);
  body ``{"msgtype": "markdown", "markdown": {"content": …}}``.
* ``dingtalk``: ``DINGTALK_WEBHOOK_URL`` (``https://oapi.dingtalk.com/robot/send?access_token=…``)
  and, when the robot uses the "加签" security setting, ``DINGTALK_SECRET`` (``SEC…``): the URL gets
  ``&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256 of "<ms>\\n<secret>">``; body
  ``{"msgtype": "markdown", "markdown": {"title": …, "text": …}}``.

Either robot answers ``{"errcode": 0, "errmsg": "ok"}``; any other ``errcode``, an HTTP error or a
network error is a failed attempt (retried by the dispatcher). ``WEBHOOK_TIMEOUT`` (seconds,
default 10) bounds each request. Settings come from the app config or ``XINSHU_<NAME>``.

The message is made only from ``notification.payload`` (subject, body, link: no names, ID
numbers or answers). Every request carries the idempotency key in an ``X-Xinshu-Key`` header;
the robots themselves do not de-duplicate, so a re-send after a crash shows twice in the group.
The webhook URL holds the robot's access token: it never appears in ``Delivery.detail`` or logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.models import Notification

DEFAULT_TIMEOUT = 10.0
#: WeCom refuses markdown content over 4096 bytes; DingTalk's limit is larger.
MAX_MARKDOWN_BYTES = 4096


@dataclass(frozen=True)
class HttpResult:
    """An HTTP answer: status code and the body parsed as JSON (``None`` if it is not JSON)."""

    status: int
    body: Any


def post_json(url: str, body: Mapping[str, Any], headers: Mapping[str, str], timeout: float) -> HttpResult:
    """POST ``body`` as UTF-8 JSON; return the status and parsed answer.

    HTTP error statuses are returned, not raised. Network errors (refused,
    timeout) raise :class:`OSError` subclasses, which the dispatcher records
    as a failed attempt.

    :raises ValueError: ``url`` is not ``http://`` or ``https://``.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("webhook URL must start with http:// or https://")
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - scheme checked above
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        parsed = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    return HttpResult(status, parsed)


def markdown(payload: Mapping[str, str]) -> str:
    """The payload as Markdown: subject as a heading, body, and the link (nothing else)."""
    text = f"### {payload['subject']}\n\n{payload['body']}\n\n[查看详情]({payload['link']})"
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_MARKDOWN_BYTES:
        text = encoded[: MAX_MARKDOWN_BYTES - 3].decode("utf-8", "ignore") + "…"
    return text


def robot_delivery(result: HttpResult) -> Delivery:
    """Interpret a group robot's answer: HTTP 2xx and ``errcode`` 0 is success."""
    if not 200 <= result.status < 300:
        return Delivery(False, f"HTTP {result.status}")
    if not isinstance(result.body, dict) or "errcode" not in result.body:
        return Delivery(False, f"HTTP {result.status} without a robot answer (errcode)")
    if result.body["errcode"] != 0:
        return Delivery(False, f"errcode {result.body['errcode']}: {str(result.body.get('errmsg', ''))[:200]}")
    return Delivery(True, "posted to the group robot")


def _timeout(config: Mapping[str, Any]) -> float:
    return float(config.get("WEBHOOK_TIMEOUT") or DEFAULT_TIMEOUT)


class WeComChannel(Channel):
    """企业微信群机器人 (WeCom group robot), Markdown message."""

    name = "wecom"
    description = "WeCom (企业微信) group robot webhook"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("WECOM_WEBHOOK_URL"))

    def send(self, notification: Notification, context: ChannelContext) -> Delivery:
        body = {"msgtype": "markdown", "markdown": {"content": markdown(notification.payload)}}
        headers = {"X-Xinshu-Key": notification.idempotency_key}
        result = post_json(context.config["WECOM_WEBHOOK_URL"], body, headers, _timeout(context.config))
        return robot_delivery(result)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature: base64 of HMAC-SHA256(secret, "<timestamp>\\n<secret>"), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))


def dingtalk_url(url: str, secret: str | None, timestamp_ms: int | None = None) -> str:
    """``url`` with ``&timestamp=…&sign=…`` appended when a signing ``secret`` is set."""
    if not secret:
        return url
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


class DingTalkChannel(Channel):
    """钉钉自定义机器人 (DingTalk custom robot), Markdown message, optionally signed."""

    name = "dingtalk"
    description = "DingTalk (钉钉) custom robot webhook, signed when DINGTALK_SECRET is set"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("DINGTALK_WEBHOOK_URL"))

    def send(self, notification: Notification, context: ChannelContext) -> Delivery:
        config = context.config
        payload = notification.payload
        body = {"msgtype": "markdown", "markdown": {"title": payload["subject"], "text": markdown(payload)}}
        url = dingtalk_url(config["DINGTALK_WEBHOOK_URL"], config.get("DINGTALK_SECRET"))
        headers = {"X-Xinshu-Key": notification.idempotency_key}
        return robot_delivery(post_json(url, body, headers, _timeout(config)))


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [WeComChannel, DingTalkChannel]
