"""通知 and 收件箱: the outbox and the inbox, addressed to org units (no student data in them)."""

from __future__ import annotations

from typing import Any, ClassVar

from flask_babel import lazy_gettext as _l

from xinshu.admin.base import SecureModelView
from xinshu.admin.formatting import NOTIFICATION_STATUS_LABELS, choices, fmt_level, fmt_link, fmt_role


class NotificationView(SecureModelView):
    """通知: the outbox, addressed to org units (no student data in it)."""

    column_list = ("id", "channel", "role", "org_unit", "level", "status", "attempts", "last_error", "sent_at")
    column_details_list = ("id", "warning_id", "case_id", "channel", "role", "org_unit", "level", "status",
                           "attempts", "next_attempt_at", "last_error", "created_at", "sent_at")  # fmt: skip
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "warning_id": _l("预警"),
        "case_id": _l("个案"),
        "channel": _l("渠道"),
        "role": _l("接收角色"),
        "org_unit": _l("接收单位"),
        "level": _l("等级"),
        "status": _l("状态"),
        "attempts": _l("尝试次数"),
        "next_attempt_at": _l("下次尝试"),
        "last_error": _l("最近错误"),
        "created_at": _l("创建时间"),
        "sent_at": _l("发送时间"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "role": fmt_role}
    column_choices: ClassVar[dict[str, list[tuple[str, str]]]] = {"status": choices(NOTIFICATION_STATUS_LABELS)}
    column_filters = ("status", "channel", "level")
    column_sortable_list = ("id", "channel", "level", "status", "attempts", "sent_at")
    column_default_sort = ("id", True)


class InboxMessageView(SecureModelView):
    """收件箱: messages to the user's org units."""

    column_list = ("id", "subject", "role", "org_unit", "level", "created_at", "read_at")
    column_details_list = ("id", "subject", "body", "link", "role", "org_unit", "level", "created_at", "read_at")
    column_labels: ClassVar[dict[str, Any]] = {
        "id": _l("编号"),
        "subject": _l("主题"),
        "body": _l("内容"),
        "link": _l("链接"),
        "role": _l("接收角色"),
        "org_unit": _l("接收单位"),
        "level": _l("等级"),
        "created_at": _l("收到时间"),
        "read_at": _l("阅读时间"),
    }
    column_formatters: ClassVar[dict[str, Any]] = {"level": fmt_level, "role": fmt_role, "link": fmt_link}
    column_filters = ("level",)
    column_sortable_list = ("id", "level", "created_at")
    column_default_sort = ("created_at", True)
