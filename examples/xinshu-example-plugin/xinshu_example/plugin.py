"""The ``example`` xinshu plugin: a scoring method, an SMS channel and a scale.

Registered in ``setup.cfg`` under the ``xinshu`` entry-point group::

    [options.entry_points]
    xinshu =
        example = xinshu_example.plugin

so every xinshu application in the same environment loads it. It implements
three hooks (see xinshu's ``docs/plugins.md``):

* ``register_scorers``: :class:`WeightedSumScorer`, method
  ``example_weighted_sum`` (sum of item values times per-item weights);
* ``register_channels``: :class:`ExampleSmsChannel`, channel ``example_sms``,
  which posts each notification as JSON to an HTTP SMS gateway
  (``EXAMPLE_SMS_URL``);
* ``register_declaration_dirs``: :data:`DECLARATIONS`, holding the fictional
  four-item scale ``instruments/example_wellbeing.yaml``. No ``rules/``: the
  one ``rules/levels.yaml`` and the alert rules belong to the deployment.

Installing the package is the opt-in; ``XINSHU_BLOCK_PLUGINS=example``
switches it off, and xinshu's own test suite loads only xinshu's plugins
(``XINSHU_LOAD_PLUGINS=xinshu``).

Names are global across every installed plugin (two plugins registering the
same scorer or channel name stop xinshu from starting), so both carry the
plugin's ``example_`` prefix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import numpy as np

from xinshu import hookimpl
from xinshu.channels import Channel, ChannelContext, Delivery
from xinshu.instruments import Scale
from xinshu.models import OrgUnit
from xinshu.scoring import ScaleInput, Scorer

#: Declaration root shipped inside the package (``package_data`` in setup.cfg).
DECLARATIONS = Path(__file__).resolve().parent / "declarations"


# --------------------------------------------------------------------------- scorer


class WeightedSumScorer(Scorer):
    """Sum of the (reverse-keyed) item values, each multiplied by its weight.

    ``options.weights`` maps item ids to positive numbers; an item of the scale
    that is not named weighs 1. (The options schema sees only the options, not
    the scale's item list, so a weight naming an item outside the scale cannot
    be refused at load time; it is ignored.)

    Missing answers, as the scale's ``missing`` rule allows: ``prorate: none``
    sums the answered items' weighted values; ``prorate: mean_times_n``
    scales that sum by (total weight / weight of the answered items), i.e. the
    weighted mean times the total weight, unrounded.
    """

    name = "example_weighted_sum"
    description = "sum of item values times per-item weights (options.weights; unnamed items weigh 1)"
    options_schema: ClassVar[dict] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["weights"],
        "additionalProperties": False,
        "properties": {
            "weights": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
            },
        },
    }

    def score(self, data: ScaleInput, scale: Scale) -> np.ndarray:
        weights = scale.options["weights"]
        w = np.array([float(weights.get(item, 1.0)) for item in scale.items])
        values = data.values  # (n, k), reverse-keyed, NaN = missing
        answered = ~np.isnan(values)
        total = np.where(answered, values, 0.0) @ w  # one matrix product for every response
        if scale.missing.prorate == "mean_times_n":
            # Rows with nothing answered divide by zero; the engine discards them (min_answered >= 1).
            prorated = total / (answered @ w) * w.sum()
            total = np.where(data.answered < data.n_items, prorated, total)
        return total


# --------------------------------------------------------------------------- channel


def setting(config: Mapping[str, Any], name: str, default: str = "") -> str:
    """``config[name]`` if set, else the environment variable ``name``, else ``default``."""
    value = config.get(name)
    if value in (None, ""):
        value = os.environ.get(name, default)
    return str(value)


def sms_text(payload: Mapping[str, Any]) -> str:
    """The SMS text: the notification's subject and nothing else.

    xinshu's payload carries no name, ID number or answer (only the case or
    warning number, the level and the school); the subject is the shortest
    part of it, and the recipient opens the back office for the rest.
    """
    return str(payload["subject"])


class ExampleSmsChannel(Channel):
    """SMS through an HTTP gateway: one JSON ``POST`` per notification.

    Settings (application config, else the environment variable of the same
    name):

    * ``EXAMPLE_SMS_URL``: the gateway's endpoint (``http`` or ``https``). The
      channel is configured only when it is set;
    * ``EXAMPLE_SMS_TOKEN``: optional, sent as ``Authorization: Bearer ...``;
    * ``EXAMPLE_SMS_TIMEOUT``: seconds, default 10.

    The body is ``{"to": "<role>@<org unit code>", "text": <subject>, "key":
    <idempotency key>}``; the key is also sent as the ``Idempotency-Key``
    header. The plugin keeps no phone numbers: the gateway resolves the
    recipient group ``to`` (e.g. ``psychology_teacher@c01-d01-s01``) to the
    numbers of the people holding that role at that school. Delivery is at
    least once, so the gateway must de-duplicate on ``key``; it answers 2xx
    (accepted) or 409 (it already had the key: a duplicate, still delivered).
    Any other status, or no answer, is a failed attempt that xinshu retries.
    """

    name = "example_sms"
    description = "SMS through an HTTP gateway (EXAMPLE_SMS_URL); xinshu-example-plugin"

    @classmethod
    def configured(cls, config: Mapping[str, Any]) -> bool:
        return bool(setting(config, "EXAMPLE_SMS_URL"))

    def send(self, notification: Any, context: ChannelContext) -> Delivery:
        url = setting(context.config, "EXAMPLE_SMS_URL")
        if urlsplit(url).scheme not in ("http", "https"):
            return Delivery(False, "EXAMPLE_SMS_URL must be an http:// or https:// URL")
        org_unit = context.session.get(OrgUnit, notification.org_unit_id)
        unit = org_unit.code if org_unit is not None else str(notification.org_unit_id)
        key = notification.idempotency_key
        body = {"to": f"{notification.role}@{unit}", "text": sms_text(notification.payload), "key": key}
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
        token = setting(context.config, "EXAMPLE_SMS_TOKEN")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = Request(url, data=data, headers=headers)  # noqa: S310 - scheme checked above
        timeout = float(setting(context.config, "EXAMPLE_SMS_TIMEOUT", "10"))
        try:
            with urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
                status = response.status
        except HTTPError as exc:
            exc.close()
            if exc.code == 409:
                return Delivery(True, "gateway already had this key", duplicate=True)
            return Delivery(False, f"gateway answered HTTP {exc.code}")
        except (URLError, TimeoutError) as exc:
            return Delivery(False, f"gateway unreachable: {getattr(exc, 'reason', exc)}")
        return Delivery(True, f"gateway accepted (HTTP {status})")


# --------------------------------------------------------------------------- hooks


@hookimpl
def register_scorers() -> list[type[Scorer]]:
    return [WeightedSumScorer]


@hookimpl
def register_channels() -> list[type[Channel]]:
    return [ExampleSmsChannel]


@hookimpl
def register_declaration_dirs() -> list[str]:
    return [str(DECLARATIONS)]
