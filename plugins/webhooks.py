"""WeCom and DingTalk group-robot webhook channels."""

from __future__ import annotations
