"""A sample third-party xinshu plugin, used by the tests (and a template for authors).

It is loaded by dotted name (``XINSHU_PLUGINS=xinshu_sample_plugin``) and
implements every hook in :mod:`xinshu.hookspecs`:

* ``register_scorers``: the ``count_at_least`` scoring method (how many
  answered items are at or above ``options.threshold``);
* ``register_channels``: the ``memo`` channel, which keeps delivered
  notifications in the module-level list :data:`memos`;
* ``register_declaration_dirs``: ``tests/sample_declarations/`` (instrument
  ``sample4`` and its alert rules; no ``rules/levels.yaml``, since exactly one
  is allowed across all declaration roots);
* ``register_admin_views``: a back-office page at endpoint :data:`ADMIN_ENDPOINT`;
* ``warning_raised`` / ``notification_attempted``: record each call in
  :data:`raised_warnings` / :data:`attempts`.

The lists are module state shared by every application built in one test
run; tests call :func:`reset` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.instruments import Scale
from xinshu.scoring import ScaleInput, Scorer

DECLARATIONS = Path(__file__).resolve().parent / "sample_declarations"
ADMIN_ENDPOINT = "sample_plugin"


@dataclass(frozen=True)
class Memo:
    """One notification the ``memo`` channel delivered."""

    key: str
    role: str
    level: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class WarningSeen:
    """What ``warning_raised`` was told (plain values, not the ORM row)."""

    warning_id: int
    student_id: int
    level: int
    rule_id: str
    in_session: bool


@dataclass(frozen=True)
class AttemptSeen:
    """What ``notification_attempted`` was told."""

    key: str
    channel: str
    ok: bool
    duplicate: bool
    detail: str


memos: list[Memo] = []
raised_warnings: list[WarningSeen] = []
attempts: list[AttemptSeen] = []
admin_calls: list[str] = []


def reset() -> None:
    """Forget everything recorded so far."""
    for recorded in (memos, raised_warnings, attempts, admin_calls):
        recorded.clear()


class CountAtLeastScorer(Scorer):
    """Number of answered items whose (reverse-keyed) value is ``>= threshold``."""

    name = "count_at_least"
    description = "number of answered items at or above options.threshold"
    options_schema: ClassVar[dict] = {
        "type": "object",
        "required": ["threshold"],
        "additionalProperties": False,
        "properties": {"threshold": {"type": "integer"}},
    }

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:
        return (data.values >= scale.options["threshold"]).sum(axis=1).astype(float)


class MemoChannel(Channel):
    """Keeps each notification in :data:`memos`; idempotent on the key."""

    name = "memo"
    description = "in-memory memo list (tests)"

    def send(self, notification: Any, context: ChannelContext) -> Delivery:
        key = notification.idempotency_key
        if any(memo.key == key for memo in memos):
            return Delivery(True, "already noted", duplicate=True)
        memos.append(Memo(key, notification.role, notification.level, dict(notification.payload)))
        return Delivery(True, "noted")


@hookimpl
def register_scorers() -> list[type[Scorer]]:
    return [CountAtLeastScorer]


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [MemoChannel]


@hookimpl
def register_declaration_dirs() -> list[str]:
    return [str(DECLARATIONS)]


@hookimpl
def register_admin_views(admin: Any, db: Any, app: Any) -> None:
    # Imported here: the back office is optional for everything else this plugin does.
    from flask_admin import expose

    from xinshu.admin.views import SecureView

    class SamplePluginView(SecureView):
        @expose("/")
        def index(self) -> str:
            return "xinshu sample plugin"

    admin.add_view(SamplePluginView(name="插件示例", endpoint=ADMIN_ENDPOINT))
    admin_calls.append(app.name)


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command("sample-hello")
    @click.argument("name")
    def sample_hello(name: str) -> None:
        """Greet NAME (the sample plugin's command)."""
        click.echo(f"hello {name} from the sample plugin")


@hookimpl
def warning_raised(warning: Any, session: Any) -> None:
    raised_warnings.append(
        WarningSeen(warning.id, warning.student_id, warning.level, warning.rule_id, in_session=warning in session)
    )


@hookimpl
def notification_attempted(notification: Any, delivery: Delivery) -> None:
    attempts.append(
        AttemptSeen(
            notification.idempotency_key, notification.channel, delivery.ok, delivery.duplicate, delivery.detail
        )
    )
