"""Paging of the hand-written back-office lists (用户管理, 审计日志): the page size and the
page number asked for (``?page=``), clamped so that no query runs with a negative or huge
offset (security.md F1).
"""

from __future__ import annotations

from flask import request

PAGE_SIZE = 50


def page_number() -> int:
    """The ``?page=`` argument as 1 to 100 000 (1 when missing or not a number)."""
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1
