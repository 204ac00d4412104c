"""SMS channel: the plugin interface for SMS gateways and one reference implementation.

xinshu stores no phone numbers on user accounts. The phones an SMS goes to
come from the ``SMS_RECIPIENTS`` setting (``XINSHU_SMS_RECIPIENTS``): a JSON
object (or, in the app config, a mapping) from ``<role>@<org unit code>`` to a
list of numbers, e.g.::

    {"district_admin@D01": ["13800000001"], "bureau_admin@C01": ["13800000002", "13800000003"]}

A key ``<role>@*`` applies to every org unit without its own entry.

:class:`SmsChannel` is the interface: it finds the phones for the
notification's role and org unit, makes the text (:func:`sms_text`: at most
70 characters, one Chinese SMS segment, from the payload's subject; no names,
ID numbers or answers), and calls :meth:`SmsChannel.send_sms`, the one method
a gateway plugin implements. :class:`HttpSmsChannel` (channel ``sms``) is the
reference implementation: it posts JSON to a generic HTTP SMS gateway
(``SMS_GATEWAY_URL``, optional bearer token ``SMS_GATEWAY_TOKEN``,
``SMS_TIMEOUT`` seconds, default 10)::

    POST <SMS_GATEWAY_URL>
    X-Xinshu-Key: <idempotency key>
    Authorization: Bearer <SMS_GATEWAY_TOKEN>      (only when set)
    {"key": "<idempotency key>", "phones": ["138…"], "text": "…"}

Any 2xx answer is success, unless its JSON body says ``{"ok": false, "error": …}``;
``{"duplicate": true}`` reports that the gateway already had this key (a
re-send after a crash). Anything else is a failed attempt, retried with
backoff. See docs/plugins.md, "Writing an SMS gateway plugin".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.models import Notification, OrgUnit
from xinshu.plugins.webhooks import post_json

#: One SMS segment of Chinese text (UCS-2) holds 70 characters.
MAX_SMS_CHARS = 70
SMS_SUFFIX = "，请登录系统处理"
#: A gateway's error text may echo a number; ``Delivery.detail`` must not keep it.
_PHONE_LIKE = re.compile(r"\+?\d[\d -]{5,}\d")


def sms_text(payload: Mapping[str, str]) -> str:
    """The SMS text: the payload's subject and a call to log in, at most :data:`MAX_SMS_CHARS`
    characters. The link is left out (it would not fit); the subject names only the case or
    warning number, the level and the school."""
    subject = payload["subject"].strip()
    room = MAX_SMS_CHARS - len(SMS_SUFFIX)
    if len(subject) > room:
        subject = subject[: room - 1] + "…"
    return subject + SMS_SUFFIX


def recipients_setting(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """``SMS_RECIPIENTS`` as ``{"role@code": [phone, ...]}``.

    :raises ValueError: the setting is not a JSON object of lists (or comma-separated strings).
    """
    value = config.get("SMS_RECIPIENTS") or {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SMS_RECIPIENTS is not valid JSON: {exc.msg}") from None
    if not isinstance(value, Mapping):
        raise ValueError("SMS_RECIPIENTS must be a JSON object of role@code: [phones]")
    mapping = {}
    for key, phones in value.items():
        if isinstance(phones, str):
            phones = phones.split(",")
        if not isinstance(phones, Sequence):
            raise ValueError(f"SMS_RECIPIENTS[{key!r}] must be a list of phone numbers")
        mapping[str(key)] = [str(p).strip() for p in phones if str(p).strip()]
    return mapping


class SmsChannel(Channel):
    """Base class of SMS channels: subclass it, set ``name``, implement :meth:`send_sms`.

    It is not registered itself (it has no ``name``); :class:`HttpSmsChannel`
    is the built-in subclass.
    """

    description = "SMS"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("SMS_RECIPIENTS"))

    def send(self, notification: Notification, context: ChannelContext) -> Delivery:
        unit = context.session.get(OrgUnit, notification.org_unit_id)
        target = f"{notification.role}@{unit.code}"
        mapping = recipients_setting(context.config)
        phones = mapping.get(target) or mapping.get(f"{notification.role}@*") or []
        if not phones:
            return Delivery(False, f"no phone numbers for {target} in SMS_RECIPIENTS")
        return self.send_sms(phones, sms_text(notification.payload), notification.idempotency_key, context.config)

    def send_sms(self, phones: list[str], text: str, key: str, config: Mapping[str, Any]) -> Delivery:
        """Send ``text`` to every number in ``phones``; ``key`` is the notification's idempotency key.

        Return :class:`~xinshu.channels.Delivery`; never put the phone numbers in ``detail``.
        Raising is a failed attempt too (retried). Pass ``key`` to the gateway if it can
        de-duplicate (``Delivery(True, …, duplicate=True)`` when it already had it).
        """
        raise NotImplementedError  # pragma: no cover


class HttpSmsChannel(SmsChannel):
    """Reference SMS gateway: JSON over HTTP(S) to ``SMS_GATEWAY_URL``."""

    name = "sms"
    description = "SMS through a generic HTTP gateway (SMS_GATEWAY_URL)"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("SMS_GATEWAY_URL")) and super().configured(config)

    def send_sms(self, phones: list[str], text: str, key: str, config: Mapping[str, Any]) -> Delivery:
        headers = {"X-Xinshu-Key": key}
        if config.get("SMS_GATEWAY_TOKEN"):
            headers["Authorization"] = f"Bearer {config['SMS_GATEWAY_TOKEN']}"
        body = {"key": key, "phones": phones, "text": text}
        result = post_json(config["SMS_GATEWAY_URL"], body, headers, float(config.get("SMS_TIMEOUT") or 10))
        if not 200 <= result.status < 300:
            return Delivery(False, f"SMS gateway HTTP {result.status}")
        answer = result.body if isinstance(result.body, dict) else {}
        if answer.get("ok") is False:
            error = _PHONE_LIKE.sub("<number>", str(answer.get("error", "")))[:200]
            return Delivery(False, f"SMS gateway refused: {error}")
        return Delivery(True, f"sent to {len(phones)} phone(s)", duplicate=bool(answer.get("duplicate")))


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [HttpSmsChannel]
