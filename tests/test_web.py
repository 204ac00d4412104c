"""The web application and the back office: login, CSRF, scoping, no ID numbers, escaping.

One application over a real SQLite file is built per module (hashing
passwords and loading declarations is the slow part); each test gets its own
client. The declarations are a small set written here, so these tests do not
depend on the project's instrument files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask_admin import Admin, BaseView
from flask_login import login_user

from xinshu.admin.views import ExportMixin, SecureModelView, XinshuSecureForm
from xinshu.app import check_production, create_app
from xinshu.auth import create_user, hash_password, safe_next
from xinshu.errors import StartupError
from xinshu.models import (
    Case,
    CaseEvent,
    GuardianConsent,
    InboxMessage,
    Notification,
    ParentContact,
    Partner,
    PlanTask,
    Referral,
    Resource,
    Response,
    Score,
    Student,
    User,
    utcnow,
)
from xinshu.models import RiskWarning as WarningModel
from xinshu.orgs import add_org_unit

PASSWORD = "Correct horse battery 7"
ID_A = "11010120080101123X"
ID_B = "110101200802021234"
NAME_A = "<script>alert(1)</script>张三"
NAME_B = "李四"
ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')

LEVELS = """\
kind: levels
version: "t1"
case_threshold: 2
levels:
  - {level: 1, key: general, name: {zh: 一般}, colour: "#2f80ed", response_hours: 72,
     notify: [{role: class_teacher, at: school, channels: [inbox]}]}
  - {level: 2, key: serious, name: {zh: 较重}, colour: "#f2c94c", response_hours: 48,
     notify: [{role: psychology_teacher, at: school, channels: [inbox]}]}
  - {level: 3, key: severe, name: {zh: 严重}, colour: "#f2994a", response_hours: 24,
     notify: [{role: principal, at: school, channels: [inbox]}]}
  - {level: 4, key: very_severe, name: {zh: 非常严重}, colour: "#eb5757", response_hours: 2,
     notify: [{role: principal, at: school, channels: [inbox]}]}
"""
TEMPLATE = """\
kind: intervention
id: plan-t
version: "t1"
title: {zh: 测试方案}
levels: [2, 3, 4]
tasks:
  - {id: interview, title: {zh: 访谈学生}, owner_role: psychology_teacher, due_hours: 24, step: interviewing}
"""
INSTRUMENT = """\
kind: instrument
id: tiny
version: "t1"
title: {zh: 测试量表}
source: test
licence: {status: public_domain, statement: test}
response_options:
  - {value: 0, label: {zh: 否}}
  - {value: 1, label: {zh: 是}}
items: [{id: tiny_1}, {id: tiny_2}]
scales:
  - id: total
    title: {zh: 总分}
    method: sum
    items: [tiny_1, tiny_2]
    missing: {min_answered: 2, prorate: none}
    bands:
      source: test
      ranges:
        - {id: low, min: 0, max: 1, label: {zh: 低}}
        - {id: high, min: 2, max: 2, label: {zh: 高}}
"""
RULES = """\
kind: alert_rules
id: tiny
version: "t1"
instrument: tiny
rules:
  - {id: tiny.high, level: 3, when: {scale: total, gte: 2}, explain: {zh: 总分达到2分}}
"""


def write_declarations(root: Path) -> Path:
    """A minimal valid declaration set: one instrument, its rules, levels, one template."""
    for folder in ("instruments", "rules/alerts", "rules/interventions"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "instruments" / "tiny.yaml").write_text(INSTRUMENT, encoding="utf-8")
    (root / "rules" / "alerts" / "tiny.yaml").write_text(RULES, encoding="utf-8")
    (root / "rules" / "levels.yaml").write_text(LEVELS, encoding="utf-8")
    (root / "rules" / "interventions" / "plan.yaml").write_text(TEMPLATE, encoding="utf-8")
    return root


def app_config(tmp: Path, **extra) -> dict:
    """Test configuration: a SQLite file under ``tmp``, CSRF on, test declarations."""
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp / 't.db'}",
        "SECRET_KEY": "test",
        "DECLARATION_ROOT": str(write_declarations(tmp / "decl")),
        "WTF_CSRF_ENABLED": True,
    }
    config.update(extra)
    return config


def add_school(session, city_or_district, code: str):
    """A school with one grade and one class; returns (school, class)."""
    school = add_org_unit(session, code, f"{code}学校", "school", city_or_district)
    grade = add_org_unit(session, f"{code}-g7", "七年级", "grade", school)
    klass = add_org_unit(session, f"{code}-g7-1", "七年级1班", "class", grade)
    return school, klass


def add_student_with_history(session, school, klass, name: str, id_number: str, no: str) -> Student:
    """A student with a response and score, a warning, a case with task and event, and messages."""
    student = Student(
        school_id=school.id,
        class_id=klass.id,
        name=name,
        gender="F",
        id_number=id_number,
        student_number=f"G{id_number}",
        school_student_no=no,
        grade_level=7,
    )
    session.add(student)
    session.flush()
    response = Response(
        student_id=student.id,
        instrument_id="tiny",
        instrument_version="t1",
        answers={"tiny_1": 1, "tiny_2": 1},
        raw_cells={"身份证号": id_number},
        source="test",
        dedupe_key=f"key-{no}",
    )
    response.scores.append(
        Score(
            scale="total",
            raw_score=2,
            band="high",
            answered=2,
            valid=True,
            flags=[],
            instrument_version="t1",
            instrument_digest="0" * 64,
        )
    )
    session.add(response)
    session.flush()
    inputs = [{"rule_id": "tiny.high", "level": 3, "inputs": {"scale:total": 2, "<b>x</b>": True}}]
    warning = WarningModel(
        student_id=student.id,
        response_id=response.id,
        level=3,
        rule_id="tiny.high",
        ruleset_id="tiny",
        ruleset_version="t1",
        ruleset_digest="0" * 64,
        inputs=inputs,
    )
    session.add(warning)
    session.flush()
    case = Case(student_id=student.id, school_id=school.id, warning_id=warning.id, level=3, template_id="plan-t")
    case.template_version = "t1"
    case.tasks.append(
        PlanTask(
            template_task_id="interview",
            title="访谈学生",
            owner_role="psychology_teacher",
            step="interviewing",
            category="school",
            due_at=utcnow(),
        )
    )
    case.events.append(CaseEvent(from_state=None, to_state="warned", actor="system", reason="预警 <i>3</i>"))
    session.add(case)
    session.flush()
    key = f"n-{no}"
    session.add(
        Notification(
            idempotency_key=key,
            warning_id=warning.id,
            case_id=case.id,
            channel="inbox",
            role="principal",
            org_unit_id=school.id,
            level=3,
            payload={"subject": "预警", "body": "x", "link": f"/admin/case/details/?id={case.id}"},
        )
    )
    session.add(
        InboxMessage(
            idempotency_key=key,
            role="principal",
            org_unit_id=school.id,
            subject=f"预警 #{warning.id}",
            body="请处理",
            link=f"/admin/case/details/?id={case.id}",
            level=3,
        )
    )
    session.flush()
    return student


def add_casework(session, district, students) -> None:
    """A partner and a resource; a referral, a parent contact and a consent per student (plugins.partners)."""
    partner = Partner(district_id=district.id, kind="police", name="派出所")
    session.add_all([partner, Resource(code="r1", kind="course", title="课程", audience="students")])
    session.flush()
    for student in students:
        case_id = session.query(Case.id).filter(Case.student_id == student.id).scalar()
        session.add(Referral(case_id=case_id, kind="police", partner_id=partner.id, sent_by="x"))
        session.add(ParentContact(case_id=case_id, by="x", channel="phone", content="c"))
        session.add(GuardianConsent(student_id=student.id, purpose="referral", decision="granted", recorded_by="x"))
    session.flush()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The app and the ids of what it holds: two schools, a student in each (B's warning escalated
    to the city), a principal and a psychology teacher of school A, the bureau admin, a user without roles."""
    tmp = tmp_path_factory.mktemp("web")
    app = create_app(app_config(tmp))
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        district = add_org_unit(session, "d", "区", "district", city)
        school_a, class_a = add_school(session, district, "a")
        school_b, class_b = add_school(session, district, "b")
        student_a = add_student_with_history(session, school_a, class_a, NAME_A, ID_A, "001")
        student_b = add_student_with_history(session, school_b, class_b, NAME_B, ID_B, "002")
        # B's warning went unanswered up to the city: the bureau admin sees student B individually.
        session.query(WarningModel).filter_by(student_id=student_b.id).update({"escalated_to": "city"})
        add_casework(session, district, (student_a, student_b))
        create_user(session, "alice", PASSWORD, "principal", school_a)
        create_user(session, "psy", PASSWORD, "psychology_teacher", school_a)
        create_user(session, "boss", PASSWORD, "bureau_admin", city)
        session.add(User(username="nobody", password_hash=hash_password(PASSWORD)))
        ids = {"student_a": student_a.id, "student_b": student_b.id, "city": city.id}
    yield app, ids
    services.db.dispose()


@pytest.fixture
def app(world) -> Flask:
    return world[0]


def admin_of(app: Flask) -> Admin:
    return app.extensions["admin"][0]


def csrf_token(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "no csrf_token in page"
    return match.group(1) or match.group(2)


def login(client, username: str, password: str = PASSWORD, next_url: str | None = None):
    """Log in through the form, with the CSRF token from the page."""
    url = "/login" + (f"?next={next_url}" if next_url else "")
    page = client.get(url)
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    return client.post(url, data={"csrf_token": token, "username": username, "password": password})


def model_views(app: Flask) -> list[SecureModelView]:
    return [v for v in admin_of(app)._views if isinstance(v, SecureModelView)]


def view_urls(app: Flask) -> list[str]:
    return [v.url.rstrip("/") + "/" for v in admin_of(app)._views]


def test_root_redirects_to_admin(app):
    response = app.test_client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/admin/")


def test_anonymous_is_sent_to_login_everywhere(app, world):
    client = app.test_client()
    urls = [*view_urls(app), f"/admin/student/details/?id={world[1]['student_a']}"]
    assert "/admin/" in urls
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        assert "/login?next=" in response.headers["Location"], url


def test_every_admin_view_overrides_access_checks(app):
    views = admin_of(app)._views
    assert len(views) >= 11
    for view in views:
        assert type(view).is_accessible is not BaseView.is_accessible, type(view)
        assert type(view).inaccessible_callback is not BaseView.inaccessible_callback, type(view)
    for view in model_views(app):
        assert issubclass(view.form_base_class, XinshuSecureForm)
        # Exports only through xinshu's own endpoint (rights, scope, cap, escaping, audit).
        assert isinstance(view, ExportMixin) or type(view).can_export is False, type(view)


def test_login_with_csrf_then_logout(app):
    client = app.test_client()
    response = login(client, "alice")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    home = client.get("/admin/")
    assert home.status_code == 200
    assert "alice" in home.get_data(as_text=True)
    token = csrf_token(home.get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_wrong_password_does_not_log_in(app):
    client = app.test_client()
    response = login(client, "alice", "wrong")
    assert response.status_code == 200
    assert "用户名或密码错误" in response.get_data(as_text=True)
    assert login(client, "no-such-user").status_code == 200
    assert client.get("/admin/").status_code == 302


def test_post_without_csrf_token_is_rejected(app):
    client = app.test_client()
    client.get("/login")
    assert client.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 400
    assert client.get("/admin/").status_code == 302
    login(client, "alice")
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200


def test_login_page_labels(app):
    html = app.test_client().get("/login").get_data(as_text=True)
    for label in ("用户名", "密码", "登录"):
        assert label in html


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/admin/"),
        ("/admin/student/?page=2", "/admin/student/?page=2"),
        ("//evil.example/x", "/admin/"),
        ("https://evil.example/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("javascript:alert(1)", "/admin/"),
        ("admin/", "/admin/"),
    ],
)
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_login_ignores_offsite_next(app):
    response = login(app.test_client(), "alice", next_url="//evil.example/")
    assert response.headers["Location"] == "/admin/"
    response = login(app.test_client(), "alice", next_url="/admin/student/")
    assert response.headers["Location"] == "/admin/student/"


def test_user_sees_own_school_only(app, world):
    ids = world[1]
    client = app.test_client()
    login(client, "alice")
    listing = client.get("/admin/student/").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;张三" in listing
    assert NAME_B not in listing
    assert client.get(f"/admin/student/details/?id={ids['student_a']}").status_code == 200
    # Flask-Admin answers a record it cannot get (get_one -> None) with a redirect and a flash,
    # the same for an out-of-scope id as for one that does not exist.
    other = client.get(f"/admin/student/details/?id={ids['student_b']}", follow_redirects=True)
    assert NAME_B not in other.get_data(as_text=True)
    assert other.request.path == "/admin/student/"
    missing = client.get("/admin/student/details/?id=999999", follow_redirects=True)
    assert missing.request.path == "/admin/student/"
    org_units = client.get("/admin/orgunit/").get_data(as_text=True)
    assert "b学校" not in org_units
    city = client.get(f"/admin/orgunit/details/?id={ids['city']}", follow_redirects=True)  # above alice's school
    assert city.request.path == "/admin/orgunit/"


def test_get_one_and_counts_are_scoped(app, world):
    ids = world[1]
    views = {v.model: v for v in model_views(app) if v.endpoint in BUILT_IN_AND_CASEWORK}
    with app.test_request_context("/admin/"):
        login_user(_user("alice", app))
        student_view = views[Student]
        assert student_view.get_one(str(ids["student_a"])) is not None
        assert student_view.get_one(str(ids["student_b"])) is None
        assert student_view.get_one("not-a-number") is None
        for view in views.values():
            count, rows = view.get_list(0, None, False, None, None)
            assert count == len(rows) >= 1, view.model
        assert student_view.get_list(0, None, False, None, None)[0] == 1


#: Model views of admin/views.py and plugins/partners.py (other plugins test their own views).
BUILT_IN_AND_CASEWORK = ("orgunit", "student", "response", "warning", "case", "notification", "inbox", "partner",
                         "resource", "referral", "parentcontact", "consent")  # fmt: skip


def _user(username: str, app: Flask) -> User:
    session = app.extensions["xinshu"].db.session
    return session.query(User).filter_by(username=username).one()


def test_user_without_role_sees_nothing(app):
    views = model_views(app)
    with app.test_request_context("/admin/"):
        login_user(_user("nobody", app))
        for view in views:
            if view.unscoped:  # the user list: closed to anyone but the bureau admin
                assert not view.is_accessible()
                continue
            count, rows = view.get_list(0, None, False, None, None)
            assert (count, list(rows)) == (0, []), view.model
    client = app.test_client()
    login(client, "nobody")
    assert "尚未分配角色" in client.get("/admin/").get_data(as_text=True)
    listing = client.get("/admin/student/").get_data(as_text=True)
    assert NAME_B not in listing
    assert "张三" not in listing


def test_no_page_shows_an_id_number(app):
    client = app.test_client()
    login(client, "boss")
    pages = [*view_urls(app)]
    for view in model_views(app):
        _count, rows = _rows_as(app, "boss", view)
        pages += [f"{view.url}/details/?id={pk}" for pk in rows]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert ID_A not in html and ID_B not in html, url
        assert not ID_NUMBER.search(html), url
        assert "<script>alert(1)</script>" not in html, url


def _rows_as(app: Flask, username: str, view: SecureModelView) -> tuple[int, list[int]]:
    with app.test_request_context("/admin/"):
        login_user(_user(username, app))
        count, rows = view.get_list(0, None, False, None, None)
        return count, [row.id for row in rows]


def test_warning_and_case_pages_explain_and_escape(app, world):
    client = app.test_client()
    login(client, "alice")
    warnings_page = client.get("/admin/warning/").get_data(as_text=True)
    assert "#eb5757" not in warnings_page and "#f2994a" in warnings_page  # level 3 colour
    assert "总分达到2分" in warnings_page
    assert "scale:total = 2" in warnings_page
    assert "&lt;b&gt;x&lt;/b&gt; = 是" in warnings_page
    case_id = _rows_as(app, "alice", _view(app, Case))[1][0]
    details = client.get(f"/admin/case/details/?id={case_id}").get_data(as_text=True)
    assert "访谈学生" in details
    # Case notes are for the psychology teacher; the principal sees that an entry exists (roles.md).
    assert "预警 &lt;i&gt;3&lt;/i&gt;" not in details and "（无权查看）" in details
    psy = app.test_client()
    login(psy, "psy")
    assert "预警 &lt;i&gt;3&lt;/i&gt;" in psy.get(f"/admin/case/details/?id={case_id}").get_data(as_text=True)
    responses = client.get("/admin/response/").get_data(as_text=True)
    assert "total=2/high" in responses


def _view(app: Flask, model: type) -> SecureModelView:
    return next(v for v in model_views(app) if v.model is model)


def test_plugins_and_declarations_pages(app):
    client = app.test_client()
    login(client, "alice")
    plugins = client.get("/admin/plugins/").get_data(as_text=True)
    assert "register_channels" in plugins
    declarations = client.get("/admin/declarations/").get_data(as_text=True)
    for text in ("tiny", "t1", "#eb5757", "非常严重", "tiny.high", "plan-t"):
        assert text in declarations


def test_language_switch(app):
    from flask_babel import get_locale

    with app.test_request_context("/login?lang=en"):
        app.preprocess_request()
        assert str(get_locale()) == "en"
    with app.test_request_context("/login"):
        app.preprocess_request()
        assert str(get_locale()) == "zh_Hans_CN"


def test_admin_forms_use_the_same_csrf_token_as_csrfprotect(tmp_path):
    """A delete (an admin POST) works with the page's token and is refused without it."""
    app = create_app(app_config(tmp_path))
    services = app.extensions["xinshu"]

    class DeletableInbox(SecureModelView):
        can_delete = True

    admin_of(app).add_view(DeletableInbox(InboxMessage, services.db, name="t", endpoint="tinbox"))
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "市", "city", None)
        create_user(session, "boss", PASSWORD, "bureau_admin", city)
        for key in ("k1", "k2"):
            session.add(
                InboxMessage(
                    idempotency_key=key, role="principal", org_unit_id=city.id, subject="s", body="b", link="/", level=1
                )
            )
    client = app.test_client()
    login(client, "boss")
    page = client.get("/admin/tinbox/").get_data(as_text=True)
    token = csrf_token(page)
    assert client.post("/admin/tinbox/delete/", data={"id": "1", "url": "/admin/tinbox/"}).status_code == 400
    response = client.post("/admin/tinbox/delete/", data={"id": "1", "url": "/admin/tinbox/", "csrf_token": token})
    assert response.status_code == 302
    assert services.db.session.query(InboxMessage).count() == 1
    services.db.dispose()


def test_production_refuses_weak_settings(tmp_path):
    with pytest.raises(StartupError):
        create_app(app_config(tmp_path, ENV_PRODUCTION=True, SECRET_KEY=None))
    with pytest.raises(StartupError):
        check_production({"ENV_PRODUCTION": True, "SECRET_KEY": "dev"}, debug=False)
    with pytest.raises(StartupError):
        check_production({"ENV_PRODUCTION": True, "SECRET_KEY": "x" * 40, "DEBUG": True}, debug=False)
    check_production({"ENV_PRODUCTION": True, "SECRET_KEY": "x" * 40, "SESSION_COOKIE_SECURE": True}, debug=False)
    check_production({"SECRET_KEY": None}, debug=True)


def test_session_and_cookie_settings(app):
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == 1800
    assert app.config["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024
