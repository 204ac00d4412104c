"""Route × role sweep (security.md A1, A3, A4, A5, A6, B8, I1, I5; figures "routes x roles tried",
"unauthorized 2xx responses", "cross-school record requests tried/leaked").

Every route of ``app.url_map``, each method (GET, POST), each record parameter filled with
records inside and outside the user's scope (:mod:`sec_sweep`), is requested by an anonymous
visitor and by each user of the seeded world (:mod:`sec_world`). POSTs carry a valid CSRF
token, so the view's own access check is what answers. The expected access is the hand-written
allow-list of :mod:`sec_access`; a 2xx answer it does not allow is counted as unauthorized.
Every body is scanned for the names of students the user may not see individually, for ID
numbers and for the secret key; error pages and the log records of the whole sweep also for
mobile numbers and seeded names.

The sweep runs once (module fixture); the tests below read its findings.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import pytest
import security_summary
from sec_access import EXPECT, PUBLIC, RECORDS, SENSITIVE_ENDPOINTS, Access
from sec_logs import LogCapture, scan
from sec_sweep import Req, route_requests, send
from sec_world import (
    ID_NUMBER,
    RESULT_MARKERS,
    SCORE_TEXT,
    SECRET_KEY,
    STUDENT_VIS,
    TARGETS,
    USERS,
    World,
    account_rows,
    csrf_token,
    login,
    rows_of_students,
    session_token,
)

ANONYMOUS = "anonymous"
ERROR_STATUSES = (403, 404, 405, 500, 503)
ROW_LINK = re.compile(r"/details/\?id=\d")


@dataclass
class Outcome:
    """What one request got, reduced to the facts the tests check (no bodies are kept)."""

    user: str
    req: Req
    status: int
    location: str
    allowed: bool
    foreign_names: list[str] = field(default_factory=list)
    id_numbers: list[str] = field(default_factory=list)
    secret: bool = False
    error_page_hits: list[str] = field(default_factory=list)
    row_links: bool = False
    markers: list[str] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.user} {self.req.method} {self.req.url} -> {self.status}"


@dataclass
class Sweep:
    outcomes: list[Outcome]
    writes_out_of_scope: dict[str, list[str]]
    log_texts: list[str]
    unclassified: list[tuple[str, str]]


def foreign_names(world: World, user: str) -> list[str]:
    """Names of the students ``user`` may not see individually (by hand, sec_world.STUDENT_VIS)."""
    return [name for key, name in world.names.items() if key not in STUDENT_VIS[user]]


#: The route whose allow-list says who may see a record of each kind.
DETAILS_OF_KIND = {
    "student": "student.details_view",
    "response": "response.details_view",
    "warning": "warning.details_view",
    "case": "case.details_view",
    "referral": "referral.details_view",
    "contact": "parentcontact.details_view",
    "consent": "consent.details_view",
    "notification": "notification.details_view",
    "inbox": "inbox.details_view",
    "unit": "orgunit.details_view",
    "partner": "partner.details_view",
    "resource": "resource.details_view",
    "campaign": "campaigns.notice_view",
    "request": "datarequests.detail_view",
    "user": "user.edit_view",
    "version": "yaml.version",
}


def record_visible(req: Req, user: str) -> bool:
    """True when the request names no record, or one the user may see."""
    if req.kind is None:
        return True
    return EXPECT[DETAILS_OF_KIND[req.kind]]["GET"].allows(user, req.key)


def judge(world: World, user: str, req: Req, status: int, body: str, location: str) -> Outcome:
    access: Access = req.access
    allowed = req.endpoint in PUBLIC if user == ANONYMOUS else access.allows(user, req.key)
    outcome = Outcome(user, req, status, location, allowed)
    outcome.foreign_names = [name for name in foreign_names(world, user) if name in body]
    outcome.id_numbers = ID_NUMBER.findall(body)
    outcome.secret = SECRET_KEY in body
    if status in ERROR_STATUSES:
        outcome.error_page_hits = scan(body, world.names.values())
    outcome.row_links = bool(ROW_LINK.search(body)) if req.endpoint.endswith(".index_view") else False
    outcome.markers = [marker for marker in RESULT_MARKERS if marker in body]
    return outcome


def run_pass(world: World, user: str, requests: list[Req]) -> list[Outcome]:
    """One user's (or the anonymous visitor's) requests."""
    if user == ANONYMOUS:
        client = world.app.test_client()
        token = anonymous_token(client)
    else:
        client = login(world.app, user)
        token = session_token(client)
    outcomes = []
    for req in requests:
        if req.endpoint == "auth.logout" and user != ANONYMOUS:
            continue  # would end the pass's session; logging out is tested on its own
        answer = send(client, req, token)
        location = answer.headers.get("Location", "")
        outcomes.append(judge(world, user, req, answer.status, answer.body, location))
        if req.endpoint == "auth.logout":
            token = anonymous_token(client)  # logging out clears the session and its CSRF secret
    return outcomes


def anonymous_token(client) -> str:
    """The CSRF token of an anonymous session (from the login form)."""
    return csrf_token(client.get("/login").get_data(as_text=True))


def protected_accounts(user: str) -> list[str]:
    """Accounts ``user`` may not change (by hand): all but the targets an administrator manages."""
    manageable = EXPECT["user.edit_view"]["POST"].table.get(user, set())
    return [name for name in [*USERS, *TARGETS] if name not in manageable]


@pytest.fixture(scope="module")
def sweep(world: World) -> Sweep:
    """Run the sweep once: every route × every user, with the logs captured."""
    app = world.app
    requests = route_requests(app, world)
    unclassified = sorted({(r.endpoint, r.method) for r in requests if r.method not in EXPECT.get(r.endpoint, {})})
    requests = [r for r in requests if r.method in EXPECT.get(r.endpoint, {})]
    outcomes: list[Outcome] = []
    writes: dict[str, list[str]] = {}
    with LogCapture() as capture:
        for user in (ANONYMOUS, *USERS):
            outside = [world.student_id(k) for k in world.names if k not in STUDENT_VIS[user]]
            students_before = rows_of_students(app, outside)
            accounts_before = account_rows(app, protected_accounts(user))
            outcomes += run_pass(world, user, requests)
            changed = [t for t, rows in rows_of_students(app, outside).items() if rows != students_before.get(t)]
            after = account_rows(app, protected_accounts(user))
            changed += [f"account {name}" for name, row in after.items() if row != accounts_before[name]]
            if changed:
                writes[user] = changed
    security_summary.count("routes_roles_tried", len(outcomes))
    unauthorized = [o for o in outcomes if 200 <= o.status < 300 and not o.allowed]
    security_summary.count("unauthorized_2xx", len(unauthorized))
    attempts = [o for o in outcomes if not record_visible(o.req, o.user) or o.req.variant != "plain"]
    security_summary.count("idor_attempts", len([o for o in attempts if o.user != ANONYMOUS]))
    leaks = [o for o in outcomes if o.foreign_names]
    security_summary.count("idor_leaks", len(leaks) + sum(len(v) for v in writes.values()))
    return Sweep(outcomes, writes, capture.texts(), unclassified)


# --- the expectation table covers every route -------------------------------------------------


def test_every_route_has_an_expected_access(world: World, sweep: Sweep):
    """A new route must be classified in sec_access.EXPECT before the sweep can judge it."""
    assert sweep.unclassified == []
    routes = {
        (rule.endpoint, m) for rule in world.app.url_map.iter_rules() for m in ("GET", "POST") if m in rule.methods
    }
    assert routes == {(endpoint, m) for endpoint, methods in EXPECT.items() for m in methods}
    tried = Counter(o.req.endpoint for o in sweep.outcomes if o.user == "boss")
    assert set(tried) == set(EXPECT) - {"auth.logout"}
    assert len(sweep.outcomes) > 3000


# --- A1: anonymous --------------------------------------------------------------------------------


def test_a1_anonymous_gets_the_login_page_on_every_route(sweep: Sweep):
    wrong = [
        o.where()
        for o in sweep.outcomes
        if o.user == ANONYMOUS
        and o.req.endpoint not in PUBLIC
        and not (o.status == 302 and "/login" in o.location)
        and o.status not in (401, 403)
    ]
    assert wrong == []
    public_2xx = sorted({o.req.endpoint for o in sweep.outcomes if o.user == ANONYMOUS and 200 <= o.status < 300})
    assert public_2xx == ["admin.static", "auth.login"]


# --- A1, A3, A5: nobody gets a 2xx the allow-list does not give ----------------------------


def test_no_unauthorized_2xx_for_any_role(sweep: Sweep):
    unauthorized = [o.where() for o in sweep.outcomes if 200 <= o.status < 300 and not o.allowed]
    assert unauthorized == []


def test_allowed_pages_open_for_their_users(sweep: Sweep):
    """The other side of the allow-list: a GET it allows answers as expected (not 403/404)."""
    wrong = [
        f"{o.where()} (expected {o.req.access.status})"
        for o in sweep.outcomes
        if o.user != ANONYMOUS and o.req.method == "GET" and o.allowed and o.status not in o.req.access.status
    ]
    assert wrong == []


def test_no_server_errors(sweep: Sweep):
    assert [o.where() for o in sweep.outcomes if o.status >= 500] == []


# --- A3, A5: out-of-scope records never show, never change ------------------------------------


def test_a3_a5_no_student_outside_the_scope_appears_anywhere(sweep: Sweep):
    leaks = [f"{o.where()}: {o.foreign_names}" for o in sweep.outcomes if o.foreign_names]
    assert leaks == []


def test_a3_out_of_scope_records_are_never_changed(sweep: Sweep):
    assert sweep.writes_out_of_scope == {}


def test_a3_out_of_scope_ids_are_refused_on_every_record_route(sweep: Sweep):
    tried = [o for o in sweep.outcomes if o.user != ANONYMOUS and o.req.kind and not record_visible(o.req, o.user)]
    assert len(tried) > 500
    assert [o.where() for o in tried if 200 <= o.status < 300] == []


def test_a5_district_admin_scope(sweep: Sweep):
    """dist1 opens district 1's escalated students and cases, never district 2's, never a
    non-escalated student; the bureau opens the city-escalated students of both districts."""
    opened = {
        (o.user, o.req.key)
        for o in sweep.outcomes
        if o.req.endpoint == "student.details_view" and o.status == 200 and o.user in ("dist1", "boss")
    }
    assert opened == {("dist1", "a3"), ("boss", "a3"), ("boss", "c1")}  # of the swept a1, a3, b1, c1
    cases = {(o.user, o.req.key) for o in sweep.outcomes if o.req.endpoint == "caseflow.case_view" and o.status == 200}
    assert {key for user, key in cases if user == "dist1"} == {"a3"}
    assert {key for user, key in cases if user == "psy_a"} == {"a1", "a3"}


# --- A6: notes and results only for the roles that hold them -------------------------------------

#: Users who read case notes, interview notes and other case texts without a break-glass reason:
#: only psychology teachers (roles.md); nobody recorded a break-glass reason in the sweep.
NOTE_READERS = {"psy_a", "psy_b"}
#: Users who never see scores or the values a rule read: class teachers and users without a role.
NO_RESULTS = {"ct_a1", "nobody", ANONYMOUS}
NOTE_MARKERS = tuple(m for m in RESULT_MARKERS if m not in (SCORE_TEXT, "scale:total"))


def test_a6_case_notes_and_scores_only_for_the_roles_that_hold_them(sweep: Sweep):
    notes = [
        f"{o.where()}: {o.markers}"
        for o in sweep.outcomes
        if o.user not in NOTE_READERS and any(m in NOTE_MARKERS for m in o.markers)
    ]
    scores = [
        f"{o.where()}: {o.markers}"
        for o in sweep.outcomes
        if o.user in NO_RESULTS and any(m in (SCORE_TEXT, "scale:total") for m in o.markers)
    ]
    assert notes == []
    assert scores == []
    seen = {o.user for o in sweep.outcomes if any(m in NOTE_MARKERS for m in o.markers)}
    assert seen == NOTE_READERS  # the markers do show to those who may read them


# --- A4: no assignment, nothing ---------------------------------------------------------------


def test_a4_user_without_assignment_sees_zero_records(sweep: Sweep):
    mine = [o for o in sweep.outcomes if o.user == "nobody"]
    assert [o.where() for o in mine if o.row_links] == []  # every list is empty
    assert [o.where() for o in mine if o.req.kind and 200 <= o.status < 300] == []
    assert [o.where() for o in mine if o.markers] == []
    allowed_2xx = sorted({o.req.endpoint for o in mine if 200 <= o.status < 300})
    assert all(EXPECT[e]["GET"].users for e in allowed_2xx)


# --- B8: nothing about questionnaires without a login --------------------------------------


def test_b8_no_route_serves_questionnaire_data_without_login(world: World, sweep: Sweep):
    """xinshu has no student-facing online answering (answers are imported by staff): no route
    takes a questionnaire token, and without a login only the login page and static files answer."""
    for rule in world.app.url_map.iter_rules():
        words = f"{rule.rule} {rule.endpoint}".lower()
        assert not any(w in words for w in ("token", "questionnaire", "survey", "answer", "submit")), rule.rule
    anonymous_2xx = {o.req.endpoint for o in sweep.outcomes if o.user == ANONYMOUS and 200 <= o.status < 300}
    assert anonymous_2xx <= {"auth.login", "static", "admin.static"}
    login_page = world.app.test_client().get("/login").get_data(as_text=True)
    assert "第一题" not in login_page and "tiny" not in login_page


# --- I1 (coverage side): pages that show results are in the sensitive list --------------------


def test_i1_every_page_showing_results_or_case_records_is_listed_as_sensitive(sweep: Sweep):
    showing = {o.req.endpoint for o in sweep.outcomes if o.markers and 200 <= o.status < 300}
    assert showing, "the markers should show somewhere"
    assert sorted(showing - SENSITIVE_ENDPOINTS) == []


# --- I5: ID numbers, secrets and names never in pages, error pages or logs ------------------


def test_i5_no_id_number_or_secret_in_any_page(sweep: Sweep):
    assert [o.where() for o in sweep.outcomes if o.id_numbers or o.secret] == []


def test_i5_error_pages_hold_no_identifiers(sweep: Sweep):
    errors = [o for o in sweep.outcomes if o.status in ERROR_STATUSES]
    assert len(errors) > 500
    assert [f"{o.where()}: {o.error_page_hits}" for o in errors if o.error_page_hits] == []


def test_i5_logs_hold_no_identifiers_names_or_secrets(world: World, sweep: Sweep):
    texts = sweep.log_texts
    hits = [(text[:200], found) for text in texts if (found := scan(text, world.names.values()))]
    security_summary.count("log_records_scanned", len(texts))
    security_summary.count("log_identifier_hits", len(hits))
    assert texts, "the sweep logs logins and refusals"
    assert hits == []


def test_sweep_covers_every_record_kind(sweep: Sweep):
    kinds = {o.req.kind for o in sweep.outcomes if o.req.kind}
    assert kinds == set(RECORDS)
