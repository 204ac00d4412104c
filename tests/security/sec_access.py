"""The expected access of every route for every user of the seeded world (an allow-list, by hand).

Each route (endpoint and method) of ``app.url_map`` has an :class:`Access`: the users who
may get a 2xx answer, and for routes about one record, for which records. Anything not
listed is denied: it must not answer 2xx. The tables follow ``docs/security.md (roles table)``:

* every logged-in user opens the home page, the list pages (their rows are scoped: a
  user without an assignment gets empty lists), the plugin and declaration pages and
  their own break-glass list;
* one record's page only for the users who may see that record (:mod:`sec_world`
  tables ``STUDENT_VIS`` ...);
* exports: school leaders and psychology teachers (full), district and bureau
  administrators (de-identified); never class teachers or users without a role;
* management pages: accounts, audit log, campaigns, transfers, research export for
  district and bureau administrators; YAML editor and rule back-test for the bureau;
  rosters for school leaders, psychology teachers and administrators; data requests
  for school leaders, psychology teachers and administrators (receiving: school staff);
* case work: the psychology teacher of the school drives cases, the principal
  approves, referrals and consents by psychology teacher or principal, parent
  contacts also by the class teacher of the student's class; quick reports by
  school roles and class teachers.

:data:`PUBLIC` lists the routes anyone may open without logging in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sec_world import A_STAFF, LEVEL_VIS, RESULT_VIS, SCHOOL_MSG_VIS, STUDENT_VIS, USERS

EVERYONE = frozenset(USERS)  # every logged-in user, the one without an assignment included
ROLE_HOLDERS = frozenset(u for u, held in USERS.items() if held is not None)
NOBODY: frozenset[str] = frozenset()
MANAGERS = frozenset({"boss", "dist1"})
BUREAU = frozenset({"boss"})
EXPORTERS = frozenset({"boss", "dist1", *A_STAFF, "psy_b"})
ROSTER = frozenset({"boss", "dist1", *A_STAFF, "psy_b"})
REQUESTS = frozenset({"boss", "dist1", *A_STAFF, "psy_b"})
RECEIVERS = frozenset({*A_STAFF, "psy_b"})
REPORTERS = frozenset({*A_STAFF, "ct_a1", "psy_b"})

#: Public routes: anyone, logged in or not (endpoint -> note).
PUBLIC = {
    "auth.login": "the login form",
    "static": "the application's static files",
    "admin.static": "Flask-Admin's static files (CSS, JS)",
    "index": "redirects to /admin/",
    "auth.logout": "POST only, CSRF-checked; redirects to the login page",
}

# --- records of each kind used to fill URL parameters ------------------------------------------

#: Record keys per kind: the sweep fills each route's id parameter with each of them in turn.
RECORDS: dict[str, tuple[str, ...]] = {
    "student": ("a1", "a3", "b1", "c1"),
    "response": ("a1", "a3", "b1", "c1"),
    "warning": ("a1", "a3", "b1", "c1"),
    "case": ("a1", "a3", "b1", "c1"),
    "referral": ("a1", "b1", "c1"),
    "contact": ("a1", "b1", "c1"),
    "consent": ("a1", "b1", "c1"),
    "notification": ("a1", "b1", "c1"),
    "inbox": ("a1", "b1", "c1"),
    "unit": ("sa-7-1", "sb", "sc", "d1"),
    "partner": ("p1", "p2"),
    "resource": ("r1",),
    "campaign": ("city", "sc"),
    "request": ("a1", "c1"),
    "user": ("target_d1", "target_d2", "target_norole"),
    "version": ("v1",),
}
#: The model view (Flask-Admin endpoint) of each kind that has one.
VIEW_KIND = {
    "student": "student",
    "response": "response",
    "warning": "warning",
    "case": "case",
    "referral": "referral",
    "parentcontact": "contact",
    "consent": "consent",
    "notification": "notification",
    "inbox": "inbox",
    "orgunit": "unit",
    "partner": "partner",
    "resource": "resource",
}
SCHOOL_OF = {"a1": "sa", "a3": "sa", "b1": "sb", "c1": "sc"}

# --- visibility of records other than students (by hand) --------------------------------------

UNIT_VIS: dict[str, set[str]] = {
    "boss": {"sa-7-1", "sb", "sc", "d1"},
    "dist1": {"sa-7-1", "sb", "d1"},
    **{u: {"sa-7-1"} for u in A_STAFF},
    "ct_a1": {"sa-7-1"},
    "psy_b": {"sb"},
    "nobody": set(),
}
#: Partners: every role holder sees their own district's directory; the bureau every district's.
PARTNER_VIS: dict[str, set[str]] = {u: ({"p1", "p2"} if u == "boss" else {"p1"}) for u in ROLE_HOLDERS} | {
    "nobody": set()
}
RESOURCE_VIS: dict[str, set[str]] = {u: {"r1"} for u in ROLE_HOLDERS} | {"nobody": set()}
#: Campaigns: the city's campaign is seen by every role holder; school C's only by the bureau.
CAMPAIGN_VIS: dict[str, set[str]] = {u: {"city"} for u in ROLE_HOLDERS} | {"boss": {"city", "sc"}, "nobody": set()}
#: Data requests: of the students under a unit where the user handles requests.
REQUEST_VIS: dict[str, set[str]] = {
    "boss": {"a1", "c1"},
    "dist1": {"a1"},
    **{u: {"a1"} for u in A_STAFF},
}
#: Accounts each administrator manages (the targets; never their own).
USER_VIS: dict[str, set[str]] = {"boss": {"target_d1", "target_d2", "target_norole"}, "dist1": {"target_d1"}}
MESSAGE_VIS: dict[str, set[str]] = {
    user: {key for key, school in SCHOOL_OF.items() if school in schools} for user, schools in SCHOOL_MSG_VIS.items()
}


def _keys(table: Mapping[str, set[str]], keys: set[str]) -> dict[str, set[str]]:
    return {user: table.get(user, set()) & keys for user in USERS}


CASES = {"a1", "a3", "b1", "c1"}
STUDENT_TABLE = _keys(STUDENT_VIS, {"a1", "a3", "b1", "c1"})
RESULT_TABLE = _keys(RESULT_VIS, {"a1", "a3", "b1", "c1"})
LEVEL_TABLE = _keys(LEVEL_VIS, CASES)
CASE_RECORD_TABLE = _keys(LEVEL_VIS, {"a1", "b1", "c1"})
CONSENT_TABLE = _keys(STUDENT_VIS, {"a1", "b1", "c1"})

#: Who edits which student (name, gender, class): school leaders and psychology teachers of the school.
STUDENT_EDIT = {**{u: {"a1", "a3"} for u in A_STAFF}, "psy_b": {"b1"}}
#: Who confirms or adjusts a warning's level: psychology teacher and principal over the student.
JUDGE = {"principal_a": {"a1", "a3"}, "psy_a": {"a1", "a3"}, "psy_b": {"b1"}}
#: Who drives a case (transitions, interview, plan): the psychology teacher of the school.
DRIVE = {"psy_a": {"a1", "a3"}, "psy_b": {"b1"}}
APPROVE = {"principal_a": {"a1", "a3"}}
#: Referrals and consents on the case desk: psychology teacher or principal.
ACT = {"principal_a": {"a1", "a3"}, "psy_a": {"a1", "a3"}, "psy_b": {"b1"}}
#: Parent contacts: also the class teacher of the student's class (a1 is in class sa-7-1, a3 is not).
CONTACT = {**ACT, "ct_a1": {"a1"}}
#: Org units administrators rename: those of their administrative scope.
UNIT_EDIT = {"boss": UNIT_VIS["boss"], "dist1": UNIT_VIS["dist1"]}
PARTNER_EDIT = {"boss": {"p1", "p2"}, "dist1": {"p1"}}
CAMPAIGN_EDIT = {"boss": {"city", "sc"}}
#: Guardian consents of a campaign are recorded by school staff and class teachers.
CAMPAIGN_CONSENT = {u: {"city"} for u in (*A_STAFF, "ct_a1", "psy_b")}
#: Approving or rejecting a request: principal, district or bureau administrator over the student.
REQUEST_DECIDE = {"boss": {"a1", "c1"}, "dist1": {"a1"}, "principal_a": {"a1"}}


@dataclass(frozen=True)
class Access:
    """Who may get a 2xx answer from one route (method), and the status they get.

    :ivar users: users allowed regardless of record (routes without a record).
    :ivar kind: the record kind of the route's id parameter (see :data:`RECORDS`).
    :ivar table: user -> keys of the records of ``kind`` the user may use this route for.
    :ivar status: the statuses an allowed GET answers (POSTs with an empty form are not checked).
    """

    users: frozenset[str] = NOBODY
    kind: str | None = None
    table: Mapping[str, set[str]] = field(default_factory=dict)
    status: tuple[int, ...] = (200,)

    def allows(self, user: str, key: str | None) -> bool:
        if self.kind is None:
            return user in self.users
        return key is not None and key in self.table.get(user, set())


def everyone(status: tuple[int, ...] = (200,)) -> Access:
    return Access(users=EVERYONE, status=status)


def only(users: frozenset[str], status: tuple[int, ...] = (200,)) -> Access:
    return Access(users=users, status=status)


def records(kind: str, table: Mapping[str, set[str]], status: tuple[int, ...] = (200,)) -> Access:
    return Access(kind=kind, table=table, status=status)


DENIED = Access()


def model_view(
    endpoint: str,
    *,
    details: Mapping[str, set[str]],
    edit: Mapping[str, set[str]] | None = None,
    create: frozenset[str] = NOBODY,
    export: frozenset[str] = NOBODY,
) -> dict[str, dict[str, Access]]:
    """The routes Flask-Admin registers for one model view, with their expected access.

    Delete, bulk actions and ajax routes never answer 2xx (nothing is deletable; actions
    redirect; no view has ajax fields or an editable list).
    """
    kind = VIEW_KIND[endpoint]
    edit_access = records(kind, edit) if edit else DENIED
    return {
        f"{endpoint}.index_view": {"GET": everyone()},
        f"{endpoint}.details_view": {"GET": records(kind, details)},
        f"{endpoint}.edit_view": {"GET": edit_access, "POST": edit_access},
        f"{endpoint}.create_view": {"GET": only(create), "POST": only(create)},
        f"{endpoint}.delete_view": {"POST": DENIED},
        f"{endpoint}.action_view": {"POST": DENIED},
        f"{endpoint}.ajax_lookup": {"GET": DENIED},
        f"{endpoint}.ajax_update": {"POST": DENIED},
        f"{endpoint}.export": {"GET": only(export)},
    }


EXPECT: dict[str, dict[str, Access]] = {
    **model_view("student", details=STUDENT_TABLE, edit=STUDENT_EDIT, export=EXPORTERS),
    **model_view("response", details=RESULT_TABLE, export=EXPORTERS),
    **model_view("warning", details=LEVEL_TABLE, export=EXPORTERS),
    **model_view("case", details=LEVEL_TABLE, export=EXPORTERS),
    **model_view("referral", details=CASE_RECORD_TABLE),
    **model_view("parentcontact", details=CASE_RECORD_TABLE),
    **model_view("consent", details=CONSENT_TABLE),
    **model_view("notification", details=MESSAGE_VIS),
    **model_view("inbox", details=MESSAGE_VIS),
    **model_view("orgunit", details=UNIT_VIS, edit=UNIT_EDIT, create=MANAGERS),
    **model_view("partner", details=PARTNER_VIS, edit=PARTNER_EDIT, create=MANAGERS),
    **model_view("resource", details=RESOURCE_VIS, edit={"boss": {"r1"}}, create=BUREAU),
    "warning.judge_view": {"GET": records("warning", JUDGE), "POST": records("warning", JUDGE)},
    # the back office
    "admin.index": {"GET": everyone()},
    "plugins.index": {"GET": everyone()},
    "declarations.index": {"GET": everyone()},
    "breakglass.index": {"GET": everyone()},
    "breakglass.grant": {"POST": records("student", STUDENT_TABLE)},
    "audit.index": {"GET": only(MANAGERS)},
    "rules.index": {"GET": only(BUREAU), "POST": only(BUREAU)},
    # accounts
    "user.index": {"GET": only(MANAGERS)},
    "user.create_view": {"GET": only(MANAGERS), "POST": only(MANAGERS)},
    "user.edit_view": {"GET": records("user", USER_VIS), "POST": records("user", USER_VIS)},
    "user.grant_view": {"POST": records("user", USER_VIS)},
    "user.revoke_view": {"POST": records("user", USER_VIS)},
    "user.password_view": {"POST": records("user", USER_VIS)},
    "user.unlock_view": {"POST": records("user", USER_VIS)},
    # case work
    "caseflow.index": {"GET": everyone()},
    "caseflow.case_view": {"GET": records("case", LEVEL_TABLE)},
    "caseflow.advance_view": {"POST": records("case", DRIVE)},
    "caseflow.approve_view": {"POST": records("case", APPROVE)},
    "caseflow.exit_view": {"POST": records("case", DRIVE)},
    "caseflow.interview_view": {"GET": records("case", DRIVE), "POST": records("case", DRIVE)},
    "caseflow.task_done_view": {"POST": records("case", DRIVE)},
    "caseflow.task_edit_view": {"GET": records("case", DRIVE), "POST": records("case", DRIVE)},
    "caseflow.task_add_view": {"POST": records("case", DRIVE)},
    "casedesk.index": {"GET": everyone()},
    "casedesk.case_view": {"GET": records("case", LEVEL_TABLE)},
    "casedesk.refer_view": {"POST": records("case", ACT)},
    "casedesk.step_view": {"POST": records("case", ACT)},
    "casedesk.consent_view": {"POST": records("case", ACT)},
    "casedesk.contact_view": {"POST": records("case", CONTACT)},
    # privacy
    "campaigns.index": {"GET": everyone()},
    "campaigns.create_view": {"GET": only(MANAGERS), "POST": only(MANAGERS)},
    "campaigns.edit_view": {"GET": records("campaign", CAMPAIGN_EDIT), "POST": records("campaign", CAMPAIGN_EDIT)},
    "campaigns.notice_view": {"GET": records("campaign", CAMPAIGN_VIS)},
    "campaigns.consents_view": {
        "GET": records("campaign", CAMPAIGN_VIS),
        "POST": records("campaign", CAMPAIGN_CONSENT),
    },
    "datarequests.index": {"GET": only(REQUESTS)},
    "datarequests.create_view": {"GET": only(RECEIVERS), "POST": only(RECEIVERS)},
    "datarequests.detail_view": {"GET": records("request", REQUEST_VIS)},
    "datarequests.event_view": {"POST": records("request", REQUEST_DECIDE)},
    "research_export.index": {"GET": only(MANAGERS), "POST": only(MANAGERS)},
    # rosters
    "roster.index": {"GET": only(ROSTER), "POST": only(ROSTER)},
    "roster.confirm_view": {"POST": only(ROSTER)},
    "roster.rollover_view": {"GET": only(ROSTER), "POST": only(ROSTER)},
    "roster.transfer_view": {"GET": only(MANAGERS), "POST": only(MANAGERS)},
    # declarations
    "yaml.index": {"GET": only(BUREAU)},
    "yaml.new": {"GET": only(BUREAU)},
    "yaml.edit": {"GET": only(BUREAU), "POST": only(BUREAU)},
    "yaml.version": {"GET": records("version", {"boss": {"v1"}})},
    "yaml.version_diff": {"GET": records("version", {"boss": {"v1"}})},
    "yaml.restore": {"POST": records("version", {"boss": {"v1"}})},
    # quick reports (the confirmation page redirects to the form when nothing was reported)
    "reports.teacher_report": {"GET": only(REPORTERS), "POST": only(REPORTERS)},
    "reports.parent_report": {"GET": only(REPORTERS), "POST": only(REPORTERS)},
    "reports.done": {"GET": only(REPORTERS, status=(302,))},
    # public and redirects (a logged-in user is sent on from the login page)
    "auth.login": {"GET": only(NOBODY), "POST": only(NOBODY)},
    "auth.logout": {"POST": only(NOBODY)},
    "index": {"GET": only(NOBODY)},
    "static": {"GET": everyone(status=(200, 404))},
    "admin.static": {"GET": everyone(status=(200, 404))},
}

#: Sensitive reads: the pages, files and lists that show a student's results or case records.
#: Each must write an audit row before it answers (test_sec_audit_coverage.py); a page
#: found by the route sweep to show results or case records must be listed here.
SENSITIVE_ENDPOINTS = frozenset(
    {
        "admin.index",
        "student.details_view",
        "student.edit_view",
        "student.export",
        "response.index_view",
        "response.details_view",
        "response.export",
        "warning.index_view",
        "warning.details_view",
        "warning.judge_view",
        "warning.export",
        "case.index_view",
        "case.details_view",
        "case.export",
        "caseflow.index",
        "caseflow.case_view",
        "caseflow.interview_view",
        "caseflow.task_edit_view",
        "casedesk.index",
        "casedesk.case_view",
        "referral.index_view",
        "referral.details_view",
        "parentcontact.index_view",
        "parentcontact.details_view",
        "consent.index_view",
        "consent.details_view",
        "reports.teacher_report",
        "reports.parent_report",
        "reports.done",
        "research_export.index",
        "audit.index",
    }
)

#: Record kinds of the URL arguments of custom views (the argument name decides the kind).
ARG_KIND = {
    "student_id": "student",
    "case_id": "case",
    "campaign_id": "campaign",
    "request_id": "request",
    "user_id": "user",
    "version_id": "version",
}
