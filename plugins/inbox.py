"""In-app inbox channel: writes the message into the ``inbox_message`` table.

Holders of the notification's role at its org unit read it in the back
office. The table is unique on the idempotency key, so a re-delivery is
recorded once and reported as a duplicate.
"""

from __future__ import annotations

from sqlalchemy import select

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.models import InboxMessage, Notification


class InboxChannel(Channel):
    name = "inbox"
    description = "in-app inbox in the back office"

    def send(self, notification: Notification, context: ChannelContext) -> Delivery:
        session = context.session
        key = notification.idempotency_key
        if session.scalar(select(InboxMessage.id).where(InboxMessage.idempotency_key == key)) is not None:
            return Delivery(True, "already in inbox", duplicate=True)
        payload = notification.payload
        session.add(
            InboxMessage(
                idempotency_key=key,
                role=notification.role,
                org_unit_id=notification.org_unit_id,
                subject=payload["subject"],
                body=payload["body"],
                link=payload["link"],
                level=notification.level,
            )
        )
        session.flush()
        return Delivery(True, "stored")


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [InboxChannel]
