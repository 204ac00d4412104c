"""Requests for every route of ``app.url_map``: each method, each record parameter filled in turn
with records of every kind in and out of the requesting user's scope (see :mod:`sec_access`).

:func:`route_requests` builds the list once per application; :func:`send` sends one request
and returns status, body, headers. Used by the route × role sweep, the CSRF sweep and the
audit-coverage and XSS tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from sec_access import ARG_KIND, EXPECT, RECORDS, VIEW_KIND, Access
from sec_world import STUDENTS, World, body_text

#: Flask-Admin routes that name their record with ``?id=`` (or a form field), by endpoint suffix.
ID_ROUTES = ("details_view", "edit_view", "delete_view", "action_view", "ajax_update", "judge_view")
#: World id prefix of each record kind.
ID_PREFIX = {
    "student": "student",
    "response": "response",
    "warning": "warning",
    "case": "case",
    "referral": "referral",
    "contact": "contact",
    "consent": "consent",
    "notification": "notification",
    "inbox": "inbox",
    "unit": "unit",
    "partner": "partner",
    "resource": "resource",
    "campaign": "campaign",
    "request": "request",
    "user": "user",
    "version": "version",
}
STATIC_FILES = {"admin.static": "admin/js/helpers.js", "static": "robots.txt"}


@dataclass(frozen=True)
class Req:
    """One request of the sweep.

    :ivar kind: record kind of the id parameter (None: the route has none).
    :ivar key: the record's key (``a1``, ``sb``, ``target_d1`` ...).
    :ivar variant: ``plain``, ``search`` or ``filter`` (list pages asked for another school's rows).
    """

    endpoint: str
    method: str
    url: str
    form: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    key: str | None = None
    variant: str = "plain"

    @property
    def access(self) -> Access:
        return EXPECT[self.endpoint][self.method]


def record_id(world: World, kind: str, key: str) -> int:
    return world.ids[f"{ID_PREFIX[kind]}:{key}"]


def _extra_args(world: World, rule_args: set[str], kind: str, key: str) -> dict[str, Any] | None:
    """Values of the route's other arguments for this record (None: no such combination)."""
    values: dict[str, Any] = {}
    if "referral_id" in rule_args:
        values["referral_id"] = world.ids.get(f"referral:{key}")
    if "task_id" in rule_args:
        values["task_id"] = world.ids.get(f"task:{key}")
    if "event" in rule_args:
        values["event"] = "reject"  # needs a reason: an empty form changes nothing
    if "assignment_id" in rule_args:
        # the second assignment of target_d1 (class teacher), target_d2's only one; target_norole has none
        values["assignment_id"] = world.ids.get(
            {"target_d2": "assignment:target_d2:0"}.get(key, "assignment:target_d1:1")
        )
    if any(value is None for value in values.values()):
        return None
    return values


def route_requests(app: Flask, world: World) -> list[Req]:
    """Every route and method (GET, POST) with each record of its kind, plus list variants."""
    out: list[Req] = []
    adapter = app.url_map.bind("localhost")
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        for method in ("GET", "POST"):
            if method not in rule.methods:
                continue
            out += list(_requests_of(app, world, adapter, rule, method))
    return out


def _requests_of(app: Flask, world: World, adapter, rule, method: str) -> Iterator[Req]:
    endpoint = rule.endpoint
    args = set(rule.arguments)
    view, _, suffix = endpoint.partition(".")
    kind_arg = next((arg for arg in args if arg in ARG_KIND), None)
    if endpoint in STATIC_FILES:
        yield Req(endpoint, method, adapter.build(endpoint, {"filename": STATIC_FILES[endpoint]}))
        return
    if "export_type" in args:
        for export_type in ("csv", "xlsx"):
            yield Req(endpoint, method, adapter.build(endpoint, {"export_type": export_type}))
        return
    if kind_arg is not None:
        kind = ARG_KIND[kind_arg]
        for key in RECORDS[kind]:
            values = _extra_args(world, args, kind, key)
            if values is None:
                continue
            values[kind_arg] = record_id(world, kind, key)
            yield Req(endpoint, method, adapter.build(endpoint, values), kind=kind, key=key)
        return
    if view in VIEW_KIND and suffix in ID_ROUTES:
        kind = VIEW_KIND[view]
        for key in RECORDS[kind]:
            pk = record_id(world, kind, key)
            base = adapter.build(endpoint, {})
            if suffix in ("details_view", "edit_view", "judge_view"):
                yield Req(endpoint, method, f"{base}?id={pk}", kind=kind, key=key)
            elif suffix == "delete_view":
                yield Req(endpoint, method, base, {"id": pk}, kind=kind, key=key)
            elif suffix == "action_view":
                yield Req(endpoint, method, base, {"action": "acknowledge", "rowid": pk}, kind=kind, key=key)
            else:  # ajax_update
                yield Req(endpoint, method, base, {"list_form_pk": pk, "name": "x"}, kind=kind, key=key)
        return
    base = adapter.build(endpoint, {})
    if suffix == "ajax_lookup":
        yield Req(endpoint, method, f"{base}?{urlencode({'name': 'student', 'query': '乙'})}")
        return
    if endpoint == "yaml.edit":
        base = f"{base}?path=rules/alerts/tiny.yaml"
    if endpoint == "yaml.new":
        base = f"{base}?folder=rules/alerts"
    yield Req(endpoint, method, base)
    if method == "GET" and suffix == "index_view" and view in VIEW_KIND:
        yield from _list_variants(app, endpoint, view, base)


def _list_variants(app: Flask, endpoint: str, view_endpoint: str, base: str) -> Iterator[Req]:
    """The list asked for school C's rows: by search (school number of C1) and by school-name filter."""
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == view_endpoint)
    if getattr(view, "column_searchable_list", None):
        yield Req(endpoint, "GET", f"{base}?{urlencode({'search': STUDENTS['c1'].number})}", variant="search")
    for arg, (_index, flt) in (getattr(view, "_filter_args", None) or {}).items():
        column = getattr(flt, "column", None)
        table = getattr(column, "table", None)
        if type(flt).__name__ == "FilterEqual" and getattr(table, "name", "") == "org_unit":
            for name in ("丙校", "二区"):
                yield Req(endpoint, "GET", f"{base}?{urlencode({f'flt0_{arg}': name})}", variant="filter")


@dataclass
class Answer:
    status: int
    body: str
    headers: Any


def send(client, req: Req, token: str | None) -> Answer:
    """Send ``req`` (POSTs with ``token`` as csrf_token unless None); the body is read to the end."""
    if req.method == "GET":
        response = client.get(req.url)
    else:
        form = dict(req.form)
        if token is not None:
            form["csrf_token"] = token
        response = client.post(req.url, data=form)
    answer = Answer(response.status_code, body_text(response), response.headers)
    response.close()
    return answer


__all__ = ["ID_ROUTES", "Answer", "Req", "record_id", "route_requests", "send"]
