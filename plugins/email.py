"""Email channel over SMTP (standard library ``smtplib``).

Configuration (app config, or ``XINSHU_MAIL_SERVER`` etc. in the environment): ``MAIL_SERVER``,
``MAIL_PORT`` (25), ``MAIL_USE_TLS`` (STARTTLS), ``MAIL_USERNAME``,
``MAIL_PASSWORD``, ``MAIL_FROM``. Recipients are the active users holding the
notification's role at its org unit who have an email address. The message
carries the idempotency key in ``Message-ID`` and ``X-Xinshu-Key`` so that a
re-sent message can be recognised.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.models import Notification, RoleAssignment, User


class EmailChannel(Channel):
    name = "email"
    description = "email over SMTP"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(config.get("MAIL_SERVER"))

    def send(self, notification: Notification, context: ChannelContext) -> Delivery:
        recipients = self._recipients(notification, context)
        if not recipients:
            return Delivery(False, f"no active {notification.role} with an email address at this org unit")
        config = context.config
        message = EmailMessage()
        message["Subject"] = notification.payload["subject"]
        message["From"] = config.get("MAIL_FROM", "xinshu@localhost")
        message["To"] = ", ".join(recipients)
        message["Message-ID"] = f"<{notification.idempotency_key}@xinshu>"
        message["X-Xinshu-Key"] = notification.idempotency_key
        message.set_content(notification.payload["body"] + "\n\n" + notification.payload["link"])
        port = int(config.get("MAIL_PORT", 25))
        with smtplib.SMTP(config["MAIL_SERVER"], port, timeout=float(config.get("MAIL_TIMEOUT", 10))) as smtp:
            if config.get("MAIL_USE_TLS"):
                smtp.starttls()
            if config.get("MAIL_USERNAME"):
                smtp.login(config["MAIL_USERNAME"], config.get("MAIL_PASSWORD", ""))
            smtp.send_message(message)
        return Delivery(True, f"sent to {len(recipients)} recipient(s)")

    @staticmethod
    def _recipients(notification: Notification, context: ChannelContext) -> list[str]:
        stmt = (
            select(User.email)
            .join(RoleAssignment, RoleAssignment.user_id == User.id)
            .where(
                RoleAssignment.role == notification.role,
                RoleAssignment.org_unit_id == notification.org_unit_id,
                User.active.is_(True),
                User.email.is_not(None),
            )
        )
        return sorted(set(context.session.scalars(stmt)))


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [EmailChannel]
