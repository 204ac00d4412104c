"""Stored XSS: hostile text in every field a page shows is rendered escaped (security.md F3, E7; figures
"pages checked for stored XSS" and "stored XSS payloads rendered unescaped").

The world of this module stores ``<img src=x onerror=alert(1)>`` (and an attribute-breaking
``"><svg onload=alert(2)>``) in student names, school and org-unit names, case notes, interview
notes and free-text interview answers, parent-contact texts, referral outcomes, consent
evidence, partner names, resource titles, campaign names, data-request details, inbox subjects,
staff display names, a break-glass reason (shown in the audit log), the alert rule's
explanation and the instrument's title and item label (declarations). Every page of every GET
route (records each user may open) is fetched by five users; no HTML answer may contain the
payload unescaped, and the escaped payload must show on the pages that display those fields.
Links built from stored or requested URLs never carry ``javascript:``.
"""

from __future__ import annotations

import re

import pytest
import security_summary
from sec_sweep import route_requests, send
from sec_world import STUDENTS, World, build_world, escaped, login, session_token

from xinshu.models import InboxMessage, Resource

XSS = "<img src=x onerror=alert(1)>"
XSS2 = '"><svg onload=alert(2)>'
RAW = ("<img src=x onerror", "<svg onload")
#: A link to script other than the pages' own ``javascript:void(0)`` (Flask-Admin's menus) and
#: ``javascript:window.print()`` (the consent notice's print link).
JS_LINK = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:(?!void\(0\)|window\.print\(\))""", re.I)
USERS = ("psy_a", "principal_a", "ct_a1", "boss", "dist1")
TEXTS = {
    name: f"{XSS}{label}"
    for name, label in {
        "case_note": "个案备注",
        "interview_note": "访谈记录",
        "free_text": "自由作答",
        "contact": "沟通内容",
        "outcome": "转介结果",
        "evidence": "同意凭证",
        "partner": "医院",
        "resource": "手册",
        "campaign": "筛查活动",
        "request": "更正请求",
        "inbox": "预警消息",
        "display_name": "王老师",
    }.items()
}
#: Pages on which the escaped payload must show (the field is displayed there to someone).
MUST_SHOW = {
    "student.index_view",
    "student.details_view",
    "orgunit.index_view",
    "case.details_view",
    "caseflow.case_view",
    "casedesk.case_view",
    "warning.details_view",
    "declarations.index",
    "partner.index_view",
    "resource.index_view",
    "campaigns.index",
    "datarequests.detail_view",
    "inbox.index_view",
    "user.index",
    "admin.index",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    names = {key: f"{XSS}{spec.name}" for key, spec in STUDENTS.items()}
    units = {"sa": f"{XSS2}甲校", "sb": f"{XSS}乙校", "sc": f"{XSS}丙校", "d1": f"{XSS}一区"}
    declarations = {"explain": f"{XSS}规则说明", "item": f"{XSS}第一题", "title": f"{XSS2}量表"}
    built = build_world(
        tmp_path_factory.mktemp("xss"), names=names, unit_names=units, texts=TEXTS, declarations=declarations
    )
    with built.services.db.transaction() as session:
        session.get(Resource, built.ids["resource:r1"]).url = "javascript:alert(3)"
        session.get(InboxMessage, built.ids["inbox:a1"]).link = "javascript:alert(4)"
    teacher = login(built.app, "ct_a1")  # a break-glass reason, shown in the audit log
    data = {"csrf_token": session_token(teacher), "reason": f"{XSS}家长来电", "next": "/admin/"}
    assert teacher.post(f"/admin/breakglass/{built.student_id('a1')}/", data=data).status_code == 302
    yield built
    built.services.db.dispose()


def test_f3_e7_hostile_text_is_escaped_on_every_page(world: World):
    requests = [r for r in route_requests(world.app, world) if r.method == "GET" and r.variant == "plain"]
    checked, unescaped, js_links = 0, [], []
    shown: set[str] = set()
    for user in USERS:
        client = login(world.app, user)
        for req in requests:
            if not req.access.allows(user, req.key) and req.kind is not None:
                continue  # pages of records the user may not open are refused (the route sweep checks them)
            answer = send(client, req, None)
            if not answer.headers.get("Content-Type", "").startswith("text/html"):
                continue
            checked += 1
            if any(raw in answer.body for raw in RAW):
                unescaped.append(f"{user} {req.url}")
            if JS_LINK.search(answer.body):
                js_links.append(f"{user} {req.url}")
            if escaped(XSS) in answer.body or escaped(XSS2) in answer.body:
                shown.add(req.endpoint)
    security_summary.count("xss_pages_checked", checked)
    security_summary.count("xss_unescaped", len(unescaped) + len(js_links))
    assert checked > 300
    assert unescaped == []
    assert js_links == []
    assert sorted(MUST_SHOW - shown) == []


def test_f3_break_glass_reason_is_escaped_in_the_audit_log(world: World):
    body = login(world.app, "boss").get("/admin/audit/?action=break_glass").get_data(as_text=True)
    assert escaped(XSS) in body
    assert not any(raw in body for raw in RAW)


def test_f3_reflected_return_url_never_becomes_a_javascript_link(world: World):
    """Flask-Admin's ``url=`` return address (#1503, CVE-2018-16516) on the record pages."""
    client = login(world.app, "psy_a")
    a1 = world.student_id("a1")
    for target in ("javascript:alert(1)", " javascript:alert(1)", "JaVaScRiPt:alert(1)", "//evil.example/"):
        for page in ("details", "edit"):
            body = client.get(f"/admin/student/{page}/", query_string={"id": a1, "url": target}).get_data(as_text=True)
            assert not JS_LINK.search(body), (page, target)
            assert 'href="//evil.example/' not in body, (page, target)
