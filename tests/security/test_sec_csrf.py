"""CSRF on every state-changing POST (security.md B1; figures "state-changing POSTs tried without a
CSRF token" and "CSRF-less POSTs accepted").

Every POST route of ``app.url_map`` (create, edit, delete, bulk actions, ajax, every custom form
of every plugin, login and logout) is posted by a logged-in user whom the allow-list of
:mod:`sec_access` lets use it, on a record they may use it for, with a realistic form, three
times: without a token, with a forged token and with the valid token of *another* session.
Each must answer 400 and leave every table exactly as it was (every row of every table is
compared, not only the counts). CSRF protection stays on (``WTF_CSRF_ENABLED`` is the
default ``True``; a test client sends no token unless given one). A few control POSTs with the
right token show that the same forms do change state, so the 400s are the token's doing.
"""

from __future__ import annotations

import io

import pytest
import security_summary
from sec_access import EXPECT
from sec_sweep import Req, route_requests
from sec_world import PASSWORD, World, body_text, login, session_token
from sqlalchemy import select

from xinshu.models import AuditEvent, Base, OrgUnit, ParentContact, RiskWarning, Student

#: Users tried in this order for a route: the first one the allow-list lets use it posts it.
POSTERS = ("psy_a", "principal_a", "ct_a1", "boss", "dist1", "med_a", "psy_b")
CSRF_MESSAGES = ("CSRF", "页面已过期或提交无效")


def full_state(world: World) -> dict[str, list[tuple]]:
    """Every row of every table."""
    with world.services.db.sessionmaker() as session:
        return {
            table.name: [tuple(row) for row in session.execute(table.select().order_by(*table.primary_key.columns))]
            for table in Base.metadata.sorted_tables
        }


def poster(req: Req) -> str | None:
    """The user who may post this route (for its record); None when the allow-list gives it to nobody."""
    access = req.access
    return next((user for user in POSTERS if access.allows(user, req.key)), None)


def post_routes(world: World) -> list[tuple[str, Req]]:
    """One (user, request) per POST route: an allowed user and record where there is one, else
    the psychology teacher of school A on a record of school A (delete, actions, ajax)."""
    chosen: dict[str, tuple[str, Req]] = {}
    for req in route_requests(world.app, world):
        if req.method != "POST" or req.variant != "plain":
            continue
        user = poster(req)
        current = chosen.get(req.endpoint)
        if user is not None and (current is None or current[0] == ""):
            chosen[req.endpoint] = (user, req)
        elif current is None:
            chosen[req.endpoint] = ("", req)
    out = []
    for endpoint, (user, req) in sorted(chosen.items()):
        if user == "":
            user = "anonymous" if endpoint == "auth.login" else "psy_a"
        out.append((user, req))
    return out


def realistic_form(world: World, req: Req) -> dict:
    """A form that the route would accept with a token (fields as its page sends them)."""
    ids = world.ids
    key = req.key or "a1"
    forms = {
        "student.edit_view": {"name": "无令牌改名", "gender": "M", "class_id": ids["unit:sa-7-1"]},
        "orgunit.create_view": {"code": "csrf-new", "name": "新学校", "kind": "school", "parent": ids["unit:d1"]},
        "orgunit.edit_view": {"code": "renamed", "name": "改名"},
        "partner.create_view": {"district": ids["unit:d1"], "kind": "hospital", "name": "新医院", "active": "y"},
        "partner.edit_view": {"district": ids["unit:d1"], "kind": "hospital", "name": "改名医院", "active": "y"},
        "resource.create_view": {"code": "r-new", "kind": "guide", "title": "新手册", "audience": "teachers"},
        "resource.edit_view": {"code": "r1", "kind": "guide", "title": "改名手册", "audience": "teachers"},
        "warning.judge_view": {"level": "3", "kind": "confirm", "reason": "面谈后维持等级"},
        "breakglass.grant": {"reason": "家长来电，需核实情况", "next": "/admin/"},
        "rules.index": {"filename": "tiny.yaml", "text": "kind: alert_rules\n", "run": "1"},
        "user.create_view": {"username": "csrf_user", "password": PASSWORD, "confirm": PASSWORD,
                             "role": "psychology_teacher", "org_unit": ids["unit:sa"], "active": "y"},
        "user.edit_view": {"display_name": "改名", "active": ""},
        "user.grant_view": {"grant-role": "class_teacher", "grant-org_unit": ids["unit:sa-7-1"]},
        "user.revoke_view": {"submit": "1"},
        "user.password_view": {"pw-password": "Another-Pass-2025!", "pw-confirm": "Another-Pass-2025!"},
        "user.unlock_view": {"submit": "1"},
        "caseflow.advance_view": {"event": "interview", "reason": "开始访谈"},
        "caseflow.approve_view": {"reason": "同意方案"},
        "caseflow.exit_view": {"criterion": "stable", "note": "情绪稳定"},
        "caseflow.interview_view": {"level": "3", "kind": "confirm", "reason": "维持"},
        "caseflow.task_done_view": {"note": "已完成"},
        "caseflow.task_edit_view": {"title": "改名任务", "due_at": "2030-01-01T08:00", "reason": "调整"},
        "caseflow.task_add_view": {"title": "新任务", "owner_role": "class_teacher", "due_at": "2030-01-01T08:00",
                                   "reason": "补充"},
        "casedesk.refer_view": {"refer-kind": "hospital", "refer-partner": ids["partner:p1"], "refer-reason": "转介"},
        "casedesk.step_view": {f"step{ids.get(f'referral:{key}')}-status": "outcome",
                               f"step{ids.get(f'referral:{key}')}-text": "返校计划"},
        "casedesk.consent_view": {"consent-purpose": "referral", "consent-decision": "granted",
                                  "consent-relation": "mother", "consent-evidence": "签字存档"},
        "casedesk.contact_view": {"contact-channel": "phone", "contact-content": "电话沟通"},
        "campaigns.create_view": {"code": "csrf-camp", "name": "新活动", "org_unit": ids["unit:d1"],
                                  "instruments": "tiny", "opens": "2030-01-01", "closes": "2030-02-01",
                                  "legal_basis": "consent", "purpose": "筛查", "retention_days": "1095"},
        "campaigns.edit_view": {"code": "camp-city", "name": "改名", "org_unit": ids["unit:city"],
                                "instruments": "tiny", "opens": "2030-01-01", "closes": "2030-02-01",
                                "legal_basis": "consent", "purpose": "筛查", "retention_days": "1095"},
        "campaigns.consents_view": {"student": str(world.student_id("a1")), "decision": "granted",
                                    "relation": "mother", "evidence": "回执"},
        "datarequests.create_view": {"student": str(world.student_id("a1")), "kind": "deletion",
                                     "relation": "mother", "channel": "visit", "details": "删除"},
        "datarequests.event_view": {"reason": "不符合条件"},
        "research_export.index": {"campaign": ids["campaign:city"], "fmt": "csv"},
        "roster.index": {"school": "sa", "file": (io.BytesIO("姓名,性别\n张三,男\n".encode()), "roster.csv")},
        "roster.confirm_view": {"token": "x", "file": (io.BytesIO(b"x"), "roster.csv")},
        "roster.rollover_view": {"school": "sa", "school_year": "2031-2032"},
        "roster.transfer_view": {"student": str(world.student_id("a1")), "to_class": "sb-7-1", "reason": "搬家"},
        "yaml.edit": {"content": "kind: alert_rules\n", "reason": "x", "save": "1"},
        "reports.teacher_report": {"student": str(world.student_id("a1")), "categories": "bullying", "note": "x"},
        "reports.parent_report": {"student": str(world.student_id("a1")), "categories": "bullying", "contact": "电话"},
        "auth.login": {"username": "psy_a", "password": PASSWORD},
    }  # fmt: skip
    return {**req.form, **forms.get(req.endpoint, {})}


def _fresh(value):
    """A file field's (stream, name) copied, so each POST reads the file from its start."""
    return (io.BytesIO(value[0].getvalue()), value[1]) if isinstance(value, tuple) else value


def attempts(other_token: str) -> list[tuple[str, dict]]:
    """The three CSRF-less variants of a form: no token, a forged one, another session's."""
    return [
        ("missing", {}),
        ("forged", {"csrf_token": "IjAwMDAi.forged.token"}),
        ("other", {"csrf_token": other_token}),
    ]


@pytest.fixture(scope="module")
def clients(world: World) -> dict[str, object]:
    users = {"psy_a", "principal_a", "ct_a1", "boss", "dist1", "med_a", "psy_b"}
    return {user: login(world.app, user) for user in users} | {"anonymous": world.app.test_client()}


def test_b1_every_post_route_refuses_a_missing_forged_or_foreign_token(world: World, clients):
    routes = post_routes(world)
    assert {endpoint for endpoint, methods in EXPECT.items() if "POST" in methods} == {r.endpoint for _u, r in routes}
    other = login(world.app, "med_a")
    other_token = session_token(other)  # valid, but for another session
    tried, accepted = 0, []
    for user, req in routes:
        client = clients[user]
        form = realistic_form(world, req)
        before = full_state(world)
        for variant, token in attempts(other_token):
            data = {k: _fresh(v) for k, v in {**form, **token}.items()}
            response = client.post(req.url, data=data, content_type="multipart/form-data")
            body = body_text(response)
            tried += 1
            if response.status_code != 400 or not any(m in body for m in CSRF_MESSAGES):
                accepted.append(f"{user} {req.url} ({variant}) -> {response.status_code}")
        changed = [name for name, rows in full_state(world).items() if rows != before[name]]
        if changed:
            accepted.append(f"{user} {req.url}: changed {changed}")
    security_summary.count("csrf_posts_tried", tried)
    security_summary.count("csrf_less_accepted", len(accepted))
    assert tried == 3 * len(routes) and len(routes) >= 70
    assert accepted == []


#: Who may take on (acknowledge) which warning: the roles of ``ACK_ROLES`` that see it (by hand).
#: The bulk action always redirects, so the allow-list calls it never-2xx; its effect is checked here.
ACKNOWLEDGE = {
    "boss": {"a3", "c1"},
    "dist1": {"a3"},
    "principal_a": {"a1", "a3"},
    "med_a": {"a1", "a3"},
    "psy_a": {"a1", "a3"},
    "psy_b": {"b1"},
}


def test_a3_users_without_the_right_change_nothing_even_with_a_token_and_a_valid_form(world: World, clients):
    """The other side of B1: with a valid token and the form as its page sends it, every user the
    allow-list refuses gets no 2xx and changes nothing (the access check does not hide behind the
    form's validation)."""
    users = [*POSTERS, "nobody"]
    everyone = {**clients, "nobody": login(world.app, "nobody")}
    tokens = {user: session_token(everyone[user]) for user in users}
    wrong = []
    for _poster, req in post_routes(world):
        if req.endpoint == "auth.logout":
            continue
        denied = [u for u in users if not req.access.allows(u, req.key)]
        if req.endpoint.endswith(".action_view"):
            denied = [u for u in denied if req.key not in ACKNOWLEDGE.get(u, set())]
        before = full_state(world)
        for user in denied:
            data = {k: _fresh(v) for k, v in realistic_form(world, req).items()}
            response = everyone[user].post(req.url, data={**data, "csrf_token": tokens[user]})
            if 200 <= response.status_code < 300:
                wrong.append(f"{user} {req.url} -> {response.status_code}")
        changed = [name for name, rows in full_state(world).items() if rows != before[name] and name != "audit_event"]
        if changed:
            wrong.append(f"{req.url}: {changed} changed by one of {denied}")
    assert wrong == []


def test_b1_logout_without_a_token_keeps_the_session(world: World):
    client = login(world.app, "psy_b")
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200  # still logged in
    assert client.post("/logout", data={"csrf_token": session_token(client)}).status_code == 302
    assert client.get("/admin/").status_code == 302  # now logged out


def _control(world: World, name: str) -> tuple[str, str, dict, object]:
    """(user, url, form, check) of one control POST; ``check(session)`` is true once it took effect."""
    ids = world.ids
    a1 = world.student_id("a1")
    controls = {
        "student_edit": ("psy_a", f"/admin/student/edit/?id={a1}",
                         {"name": "有令牌改名", "gender": "F", "class_id": ids["unit:sa-7-1"]},
                         lambda s: s.get(Student, a1).name == "有令牌改名"),
        "acknowledge": ("psy_a", "/admin/warning/action/", {"action": "acknowledge", "rowid": ids["warning:a1"]},
                        lambda s: s.get(RiskWarning, ids["warning:a1"]).acknowledged_by == "psy_a"),
        "parent_contact": ("psy_a", f"/admin/casedesk/case/{ids['case:a1']}/contact",
                           {"contact-channel": "phone", "contact-content": "有令牌的沟通记录"},
                           lambda s: s.scalar(select(ParentContact.id).where(ParentContact.content.contains("令牌")))),
        "org_unit": ("dist1", "/admin/orgunit/new/",
                     {"code": "csrf-ok", "name": "新学校", "kind": "school", "parent": ids["unit:d1"]},
                     lambda s: s.scalar(select(OrgUnit.id).where(OrgUnit.code == "csrf-ok"))),
        "break_glass": ("ct_a1", f"/admin/breakglass/{a1}/", {"reason": "家长来电，需核实情况", "next": "/admin/"},
                        lambda s: s.scalar(select(AuditEvent.id).where(AuditEvent.action == "break_glass",
                                                                       AuditEvent.actor == "ct_a1"))),
    }  # fmt: skip
    return controls[name]


@pytest.mark.parametrize("name", ["student_edit", "acknowledge", "parent_contact", "org_unit", "break_glass"])
def test_b1_the_same_forms_with_the_token_do_change_state(world: World, clients, name: str):
    """Controls: with the session's token these forms are accepted (so the 400s above were the token's)."""
    user, url, form, took_effect = _control(world, name)
    client = clients[user]
    response = client.post(url, data={"csrf_token": session_token(client), **form})
    assert response.status_code == 302, (name, response.status_code)
    with world.services.db.sessionmaker() as session:
        assert took_effect(session), name
