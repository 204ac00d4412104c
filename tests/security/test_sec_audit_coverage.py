"""Every sensitive read writes its audit row first (security.md I1, I4; figures "sensitive reads tried"
and "sensitive reads without an audit row").

The sensitive routes are :data:`sec_access.SENSITIVE_ENDPOINTS` (student, response, warning and
case pages, the case workflow and case desk, case records, reports, exports, the research
export, the audit log, the home page's list of names); the route sweep fails when a page that
shows results or case records is missing from that list. Each is requested by every user the
allow-list lets open it, with each record they may open; the request must add at least one
audit row naming the user, the request path, and for one record's page the record itself.
With the audit log unwritable, each must answer 503 and show nothing (fail closed).
"""

from __future__ import annotations

import pytest
import security_summary
from sec_access import EXPECT, SENSITIVE_ENDPOINTS
from sec_sweep import Req, record_id, route_requests, send
from sec_world import World, audit_rows_after, csrf_token, last_audit_id, login, session_token

from xinshu.admin.exporting import ExportMixin
from xinshu.models import (
    Case,
    CaseEvent,
    GuardianConsent,
    Interview,
    ParentContact,
    PlanTask,
    Referral,
    Response,
    RiskWarning,
    Score,
)

#: The audit ``object_type`` of the record a route names, by the record kind of its parameter.
AUDIT_TYPE = {
    "student": "student",
    "response": "response",
    "warning": "warning",
    "case": "case",
    "referral": "referral",
    "contact": "parent_contact",
    "consent": "guardian_consent",
}
#: Audited by their POST (the GET page is an empty form), read in :func:`_report_done_and_research_export`.
POST_READS = ("research_export.index",)
READERS = ("psy_a", "principal_a", "med_a", "ct_a1", "psy_b", "dist1", "boss")


def sensitive_requests(world: World) -> list[tuple[str, Req]]:
    """(user, request) for every sensitive GET route, user and record the allow-list allows."""
    out = []
    for req in route_requests(world.app, world):
        if req.endpoint not in SENSITIVE_ENDPOINTS or req.method != "GET" or req.variant != "plain":
            continue
        if req.endpoint in POST_READS:
            continue
        out += [(user, req) for user in READERS if req.access.allows(user, req.key)]
    return out


@pytest.fixture(scope="module")
def clients(world: World):
    return {user: login(world.app, user) for user in READERS}


def test_the_sensitive_list_names_existing_routes(world: World):
    endpoints = {rule.endpoint for rule in world.app.url_map.iter_rules()}
    assert sorted(SENSITIVE_ENDPOINTS - endpoints) == []


#: Models holding a student's results or case records.
RESULT_MODELS = (Response, Score, RiskWarning, Case, PlanTask, CaseEvent, Interview, Referral, ParentContact,
                 GuardianConsent)  # fmt: skip


def test_i1_views_of_results_and_case_models_are_listed(world: World):
    """By construction, besides the sweep's look at the pages: every list, details and export route of a
    model view over a results or case model, and every GET route taking a case id, is a sensitive read."""
    views = {view.endpoint: view for view in world.app.extensions["admin"][0]._views}
    wanted = set()
    for rule in world.app.url_map.iter_rules():
        view, _, suffix = rule.endpoint.partition(".")
        model = getattr(views.get(view), "model", None)
        if model in RESULT_MODELS and suffix in ("index_view", "details_view"):
            wanted.add(rule.endpoint)
        if model in RESULT_MODELS and suffix == "export" and isinstance(views[view], ExportMixin):
            wanted.add(rule.endpoint)  # the other views' export route only redirects (no export)
        if "case_id" in rule.arguments and "GET" in rule.methods:
            wanted.add(rule.endpoint)
    assert len(wanted) >= 15
    assert sorted(wanted - SENSITIVE_ENDPOINTS) == []


def missing_audit(world: World, user: str, req: Req, path: str, rows) -> str | None:
    """Why the rows written by one request do not audit it (None: they do)."""
    mine = [r for r in rows if r.actor == user and r.action in ("read", "export") and r.outcome == "ok"]
    if not mine:
        return "no audit row naming the user"
    if not any(r.endpoint == path for r in mine):
        return f"no audit row for the path {path}"
    if req.kind in AUDIT_TYPE:
        wanted = (AUDIT_TYPE[req.kind], str(record_id(world, req.kind, req.key)))
        if not any((r.object_type, r.object_id) == wanted for r in mine):
            return f"no audit row naming {wanted}"
    return None


def test_i1_every_sensitive_read_is_audited(world: World, clients):
    requests = sensitive_requests(world)
    missing, tried = [], 0
    for user, req in requests:
        if req.endpoint == "reports.done":
            continue  # read below, after a report (without one it only redirects to the form)
        before = last_audit_id(world.app)
        answer = send(clients[user], req, None)
        assert answer.status in req.access.status, (user, req.url, answer.status)
        tried += 1
        reason = missing_audit(world, user, req, req.url.split("?")[0], audit_rows_after(world.app, before))
        if reason:
            missing.append(f"{user} {req.url}: {reason}")
    tried_extra, missing_extra = _report_done_and_research_export(world, clients)
    security_summary.count("sensitive_reads_tried", tried + tried_extra)
    security_summary.count("unaudited_reads", len(missing) + len(missing_extra))
    covered = {req.endpoint for _user, req in requests} | {"reports.done", "research_export.index"}
    assert covered == set(SENSITIVE_ENDPOINTS)
    assert missing + missing_extra == []


def _report_done_and_research_export(world: World, clients) -> tuple[int, list[str]]:
    """The confirmation page after a quick report, and the research export (a POST)."""
    missing = []
    teacher = clients["ct_a1"]
    form = {"csrf_token": session_token(teacher), "student": world.student_id("a1"), "categories": "bullying"}
    assert teacher.post("/report/", data=form).status_code == 302
    before = last_audit_id(world.app)
    assert teacher.get("/report/done").status_code == 200
    if not any(r.actor == "ct_a1" and r.endpoint == "/report/done" for r in audit_rows_after(world.app, before)):
        missing.append("ct_a1 /report/done: no audit row")
    for user in ("dist1", "boss"):
        client = clients[user]
        page = client.get("/admin/research_export/").get_data(as_text=True)
        data = {"csrf_token": csrf_token(page), "campaign": world.ids["campaign:city"], "fmt": "csv"}
        before = last_audit_id(world.app)
        assert client.post("/admin/research_export/", data=data).status_code == 200
        rows = audit_rows_after(world.app, before)
        wanted = ("export", "campaign", str(world.ids["campaign:city"]))
        if not any(r.actor == user and (r.action, r.object_type, r.object_id) == wanted for r in rows):
            missing.append(f"{user} research export: no audit row")
    return 3, missing


def test_i4_every_sensitive_read_fails_closed(world: World, clients, monkeypatch, caplog):
    """With the audit log unwritable every sensitive GET answers 503 and shows no name."""
    services = world.services
    requests = [(u, r) for u, r in sensitive_requests(world) if r.endpoint not in ("reports.done", "audit.index")]

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    wrong = []
    monkeypatch.setattr(services.db, "sessionmaker", broken)
    for user, req in requests:
        answer = send(clients[user], req, None)
        shown = [name for name in world.names.values() if name in answer.body]
        if answer.status != 503 or shown:
            wrong.append(f"{user} {req.url} -> {answer.status} {shown}")
    monkeypatch.undo()
    assert wrong == []
    assert "ALARM: audit log write failed" in caplog.text
    assert EXPECT["audit.index"]["GET"].users  # the audit log page refuses too (below)
    monkeypatch.setattr(services.db, "sessionmaker", broken)
    assert clients["boss"].get("/admin/audit/").status_code == 503
