"""Escalation channels: the base class plugins subclass, and delivery results.

A channel delivers one outbox :class:`~xinshu.models.Notification` to the
holders of its role at its org unit. ``send`` must be idempotent on
``notification.idempotency_key`` (the dispatcher delivers at least once, so a
crash between sending and marking sent causes a re-send with the same key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Delivery:
    """Outcome of one attempt: ``ok``, and a short ``detail`` (no personal data).

    ``duplicate`` is True when the receiver already had this idempotency key.
    """

    ok: bool
    detail: str = ""
    duplicate: bool = False


@dataclass
class ChannelContext:
    """What a channel may use while sending: the session and app config."""

    session: Session
    config: Mapping[str, Any]


class Channel:
    """Base class for a notification channel (register subclasses with
    ``register_channels``).

    Subclasses set ``name`` (used in ``rules/levels.yaml``) and implement
    :meth:`send`. :meth:`configured` says whether this deployment can use the
    channel (e.g. an SMTP host is set); notifications are queued only for
    configured channels, and ``xinshu check`` lists the others.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return True

    def send(self, notification: Any, context: ChannelContext) -> Delivery:  # pragma: no cover
        raise NotImplementedError
