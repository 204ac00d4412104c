"""Test plugin for the fault tests: kills its own process at a chosen point.

``XINSHU_TEST_KILL_AFTER_SEND=<channel>``: the first time a notification of
that channel is delivered successfully, the dispatcher process SIGKILLs itself
from the ``notification_attempted`` hook, i.e. after the channel has sent the
message and the row was updated in memory, before the transaction that marks
it ``sent`` commits. Without the variable the plugin does nothing.
"""

from __future__ import annotations

import os
import signal

from xinshu import hookimpl


@hookimpl
def notification_attempted(notification, delivery):
    channel = os.environ.get("XINSHU_TEST_KILL_AFTER_SEND")
    if channel and notification.channel == channel and delivery.ok:
        os.kill(os.getpid(), signal.SIGKILL)
