"""Minimum-necessary disclosure in the back office (security.md A2–A10, B1, F1, I1, I4; docs/security.md (roles table)).

One application over a real SQLite file per module, CSRF on, users logging in
through the form. The org tree: city → districts D1 (schools A, B) and D2
(school C). Student A1 (school A, class 1) has a level-3 warning that stayed at
the school, A2 (school A, class 2) one too; B1's warning was escalated to the
district, C1's to the city. Every expectation below is worked out by hand from
roles.md, not read back from the code under test.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import security_summary
from flask import Flask
from flask_admin import BaseView
from flask_login import login_user
from sqlalchemy import func, select
from test_web import PASSWORD, add_school, add_student_with_history, app_config, csrf_token, login

from xinshu.admin.base import SecureModelView
from xinshu.app import create_app
from xinshu.audit import make_event
from xinshu.auth import create_user, hash_password
from xinshu.models import (
    AuditEvent,
    Case,
    CaseEvent,
    InboxMessage,
    Interview,
    Notification,
    OrgUnit,
    PlanTask,
    Response,
    RoleAssignment,
    Student,
    User,
    utcnow,
)
from xinshu.models import RiskWarning as WarningModel
from xinshu.orgs import add_org_unit
from xinshu.permissions import access_for

NAMES = {"a1": "甲一同学", "a2": "甲二同学", "b1": "乙一同学", "c1": "丙一同学"}
IDS = {"a1": "110101200801011234", "a2": "110101200802021236", "b1": "110101200803031238", "c1": "11010120080404123X"}
CLASS_TEACHER_TASK = "班主任家访"
PSY_TASK = "访谈学生"  # the task add_student_with_history gives every case
CASE_NOTE = "访谈笔记：家庭冲突"
INTERVIEW_NOTE = "NOTE-family-conflict"
BREAK_GLASS_REASON = "家长来电询问，需核实情况"
SCORES = "total=2/high"  # the score add_student_with_history stores (2 items answered 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The app and the ids of what it holds (see the module docstring)."""
    app = create_app(app_config(tmp_path_factory.mktemp("disclosure")))
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "示范市", "city", None)
        d1 = add_org_unit(session, "d1", "一区", "district", city)
        d2 = add_org_unit(session, "d2", "二区", "district", city)
        school_a, class_a1 = add_school(session, d1, "a")
        class_a2 = add_org_unit(session, "a-g7-2", "七年级2班", "class", class_a1.parent)
        school_b, class_b1 = add_school(session, d1, "b")
        school_c, class_c1 = add_school(session, d2, "cc")
        units = {"a1": (school_a, class_a1), "a2": (school_a, class_a2), "b1": (school_b, class_b1),
                 "c1": (school_c, class_c1)}  # fmt: skip
        students = {
            key: add_student_with_history(session, *units[key], NAMES[key], IDS[key], f"00{n}")
            for n, key in enumerate(NAMES, start=1)
        }
        ids: dict[str, int] = {}
        for key, student in students.items():
            ids[key] = student.id
            ids[f"response_{key}"] = session.scalar(select(Response.id).where(Response.student_id == student.id))
            warning = session.scalar(select(WarningModel).where(WarningModel.student_id == student.id))
            ids[f"warning_{key}"] = warning.id
            case = session.scalar(select(Case).where(Case.student_id == student.id))
            ids[f"case_{key}"] = case.id
            warning.escalated_to = {"b1": "district", "c1": "city"}.get(key, "school")
        case_a1 = session.get(Case, ids["case_a1"])
        case_a1.tasks.append(PlanTask(template_task_id="home_visit", title=CLASS_TEACHER_TASK,
                                      owner_role="class_teacher", step="intervening", category="family",
                                      due_at=utcnow()))  # fmt: skip
        case_a1.events.append(CaseEvent(from_state="warned", to_state="warned", kind="note", actor="psy_a",
                                        reason=CASE_NOTE))  # fmt: skip
        session.add(Interview(case_id=case_a1.id, form_id="none", form_version="1", answers={"n": INTERVIEW_NOTE},
                              level_before=3, level_after=3, reason="维持", interviewer="psy_a"))  # fmt: skip
        users = [("psy_a", "psychology_teacher", school_a), ("psy_b", "psychology_teacher", school_b),
                 ("principal_a", "principal", school_a), ("teacher_a1", "class_teacher", class_a1),
                 ("dist1", "district_admin", d1), ("dist2", "district_admin", d2), ("boss", "bureau_admin", city),
                 ("mixed", "class_teacher", class_a1)]  # fmt: skip
        for username, role, unit in users:
            create_user(session, username, PASSWORD, role, unit)
        mixed = session.scalar(select(User).where(User.username == "mixed"))
        mixed.roles.append(RoleAssignment(role="psychology_teacher", org_unit=school_b))
        session.add(User(username="nobody", password_hash=hash_password(PASSWORD)))
        ids |= {"d1": d1.id, "d2": d2.id, "city": city.id, "school_a": school_a.id, "school_b": school_b.id,
                "class_a1": class_a1.id, "class_a2": class_a2.id, "class_b1": class_b1.id}  # fmt: skip
    yield app, ids
    services.db.dispose()


# --- helpers ----------------------------------------------------------------------


def client_for(app: Flask, username: str):
    client = app.test_client()
    assert login(client, username).status_code == 302, username
    return client


def html(response) -> str:
    return response.get_data(as_text=True)


def admin_views(app: Flask) -> list[BaseView]:
    return app.extensions["admin"][0]._views


def view_of(app: Flask, endpoint: str) -> SecureModelView:
    return next(v for v in admin_views(app) if v.endpoint == endpoint)


def rows_as(app: Flask, username: str, endpoint: str, filters=None, search=None) -> list[int]:
    """Ids of the rows the view lists for ``username`` (every page), checked against its count."""
    view = view_of(app, endpoint)
    with app.test_request_context("/admin/"):
        session = app.extensions["xinshu"].db.session
        login_user(session.scalar(select(User).where(User.username == username)))
        count, rows = view.get_list(0, None, False, search, filters, page_size=0)
        ids = sorted(row.id for row in rows)
    assert count == len(ids), endpoint
    return ids


def audit_count(app: Flask, action: str, object_type: str, object_id: object = None) -> int:
    with app.extensions["xinshu"].db.sessionmaker() as session:
        stmt = (
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.object_type == object_type)
        )
        if object_id is not None:
            stmt = stmt.where(AuditEvent.object_id == str(object_id))
        return session.scalar(stmt)


def filter_arg(app: Flask, endpoint: str, column: str, kind: str) -> str:
    """The ``flt0_<n>`` URL argument of the view's filter on ``column`` of class ``kind``."""
    view = view_of(app, endpoint)
    for key, (_idx, flt) in view._filter_args.items():
        if type(flt).__name__ == kind and getattr(flt.column, "name", None) == column:
            return f"flt0_{key}"
    raise AssertionError(f"no {kind} filter on {column} in {endpoint}")


def break_glass(client, student_id: int, reason: str = BREAK_GLASS_REASON, next_url: str = "/admin/"):
    token = csrf_token(html(client.get("/admin/breakglass/")))  # a page without student data (no audit)
    return client.post(f"/admin/breakglass/{student_id}/", data={"csrf_token": token, "reason": reason,
                                                                 "next": next_url})  # fmt: skip


# --- A2: every view checks access ----------------------------------------------------


def test_every_admin_view_and_the_index_override_is_accessible(world):
    app, _ids = world
    admin = app.extensions["admin"][0]
    views = [admin.index_view, *admin_views(app)]
    security_summary.count("admin_views_checked", len(views))
    open_views = [type(v).__name__ for v in views if type(v).is_accessible is BaseView.is_accessible]
    security_summary.count("admin_views_open", len(open_views))
    assert open_views == []
    anonymous = app.test_client()
    assert anonymous.get("/admin/").status_code == 302
    assert anonymous.get("/admin/breakglass/").status_code == 302


# --- A3: cross-school IDOR --------------------------------------------------------------


def test_a3_psychology_teacher_of_school_a_cannot_reach_school_b(world):
    app, ids = world
    services = app.extensions["xinshu"]
    client = client_for(app, "psy_a")
    token = csrf_token(html(client.get("/admin/")))
    b = {"student": ids["b1"], "response": ids["response_b1"], "warning": ids["warning_b1"], "case": ids["case_b1"]}
    attempts: list[tuple[str, int, str]] = []

    def attempt(what: str, response) -> tuple[int, str]:
        """Record the answer (streamed bodies are read at once) and return (status, body)."""
        body = response.get_data().decode("utf-8-sig", "replace")
        attempts.append((what, response.status_code, body))
        return response.status_code, body

    for endpoint, pk in b.items():  # details and edit: "record does not exist", back to the list
        for page in ("details", "edit"):
            response = client.get(f"/admin/{endpoint}/{page}/?id={pk}", follow_redirects=True)
            attempt(f"{endpoint} {page}", response)
            assert response.request.path == f"/admin/{endpoint}/", (endpoint, page)
    attempt("edit post", client.post(f"/admin/student/edit/?id={b['student']}", data={"csrf_token": token,
            "name": "改名", "gender": "M", "class_id": ids["class_b1"]}))  # fmt: skip
    attempt("delete", client.post("/admin/student/delete/", data={"csrf_token": token, "id": b["student"]}))
    attempt("action", client.post("/admin/warning/action/", data={"csrf_token": token, "action": "acknowledge",
            "rowid": [b["warning"]]}))  # fmt: skip
    for url in (
        "/admin/student/ajax/lookup/?name=school&query=b",
        "/admin/warning/judge/?id={}".format(b["warning"]),
        "/admin/caseflow/case/{}/".format(b["case"]),
        "/admin/casedesk/case/{}/".format(b["case"]),
    ):
        assert attempt(url, client.get(url))[0] == 404, url
    update = client.post("/admin/student/ajax/update/", data={"csrf_token": token, "list_form_pk": b["student"],
                         "name": "x"})  # fmt: skip
    assert attempt("ajax update", update)[0] == 404
    assert attempt("break-glass", break_glass(client, b["student"]))[0] == 404
    school_filter = filter_arg(app, "warning", "name", "FilterEqual")  # the school-name filter (student.school.name)
    attempt("filter", client.get(f"/admin/warning/?{school_filter}=b学校"))
    status, body = attempt("export filtered", client.get(f"/admin/warning/export/csv/?{school_filter}=b学校"))
    assert status == 200 and body.count("\r\n") == 1  # the header only
    status, body = attempt("export", client.get("/admin/student/export/csv/"))
    assert status == 200 and NAMES["a1"] in body  # the export works, for school A
    attempt("search", client.get("/admin/student/?search=乙一"))  # the page echoes the term, not "乙一同学"
    assert rows_as(app, "psy_a", "warning", filters=[(int(school_filter.split("_")[1]), "", "b学校")]) == []
    security_summary.count("idor_attempts", len(attempts))
    leaks = [what for what, status, body in attempts if status == 200 and (NAMES["b1"] in body or IDS["b1"] in body)]
    security_summary.count("idor_leaks", len(leaks))
    assert leaks == []
    with services.db.sessionmaker() as session:
        student = session.get(Student, b["student"])
        assert (student.name, student.gender, student.class_id) == (NAMES["b1"], "F", ids["class_b1"])
        assert session.get(WarningModel, b["warning"]).acknowledged_at is None
    assert audit_count(app, "break_glass", "student", b["student"]) == 0


# --- A4: no assignment, nothing --------------------------------------------------------


def test_warning_and_case_lists_name_the_students_the_user_may_identify(world):
    """A school's psychology teacher holds ``identity``: the warning and case lists show each student's
    name with the id; students of other schools never appear."""
    app, ids = world
    psy = client_for(app, "psy_a")
    for view in ("warning", "case"):
        body = html(psy.get(f"/admin/{view}/"))
        assert f'{NAMES["a1"]} <small class="text-muted">#{ids["a1"]}</small>' in body, view
        assert NAMES["b1"] not in body, view


def test_a4_user_without_assignment_sees_zero_rows_everywhere(world):
    app, ids = world
    for view in admin_views(app):
        if isinstance(view, SecureModelView) and not view.unscoped:
            assert rows_as(app, "nobody", view.endpoint) == [], view.endpoint
    client = client_for(app, "nobody")
    home = html(client.get("/admin/"))
    assert "尚未分配角色" in home and not any(name in home for name in NAMES.values())
    for endpoint in ("student", "response", "warning", "case"):
        assert client.get(f"/admin/{endpoint}/export/csv/").status_code == 403
        response = client.get(f"/admin/{endpoint}/details/?id={ids[{'student': 'a1'}.get(endpoint, endpoint + '_a1')]}")
        assert response.status_code == 302
    assert client.get(f"/admin/caseflow/case/{ids['case_a1']}/").status_code == 404


# --- A5: district and bureau ------------------------------------------------------------


def test_a5_district_admin_sees_only_escalated_students_of_their_district(world):
    app, ids = world
    assert rows_as(app, "dist1", "student") == [ids["b1"]]  # A1, A2 stayed at school; C1 is in D2
    assert rows_as(app, "dist1", "case") == [ids["case_b1"]]
    assert rows_as(app, "dist1", "warning") == [ids["warning_b1"]]
    assert rows_as(app, "dist1", "response") == [ids["response_b1"]]
    assert rows_as(app, "dist2", "student") == [ids["c1"]]  # escalated to the city: the district follows it too
    assert rows_as(app, "boss", "student") == [ids["c1"]]  # B1 reached only the district
    dist1 = client_for(app, "dist1")
    home = html(dist1.get("/admin/"))
    # Aggregates cover the whole district: A1, A2, B1 enrolled, each with one open level-3 warning, one escalated.
    assert re.search(r'id="count-students">3<', home) and re.search(r'id="count-level-3">3<', home)
    assert re.search(r'id="count-escalated">1<', home) and re.search(r'id="count-open-cases">3<', home)
    assert NAMES["b1"] in home and NAMES["a1"] not in home and NAMES["a2"] not in home

    services = app.extensions["xinshu"]
    with services.db.transaction() as session:  # a school added after the account was created
        d1 = session.get(OrgUnit, ids["d1"])
        school_n, class_n = add_school(session, d1, "n")
        late = add_student_with_history(session, school_n, class_n, "新校同学", "110101200805051230", "009")
        quiet = add_student_with_history(session, school_n, class_n, "新校二同学", "110101200806061232", "010")
        session.query(WarningModel).filter_by(student_id=late.id).update({"escalated_to": "district"})
        late_id, quiet_id = late.id, quiet.id
    assert rows_as(app, "dist1", "student") == sorted([ids["b1"], late_id])
    assert quiet_id not in rows_as(app, "dist1", "student")
    assert re.search(r'id="count-students">5<', html(dist1.get("/admin/")))  # A1, A2, B1 and the two new ones
    assert rows_as(app, "dist2", "student") == [ids["c1"]]  # nothing from the other district


# --- A6: the class teacher; break-glass --------------------------------------------------


def test_a6_class_teacher_sees_level_and_actions_then_breaks_glass(world):
    app, ids = world
    client = client_for(app, "teacher_a1")
    assert rows_as(app, "teacher_a1", "student") == [ids["a1"]]
    assert rows_as(app, "teacher_a1", "response") == []  # scores are not for class teachers
    page = html(client.get(f"/admin/student/details/?id={ids['a1']}"))
    assert NAMES["a1"] in page and "3 严重" in page and CLASS_TEACHER_TASK in page
    assert PSY_TASK not in page and SCORES not in page and 'id="break-glass-form"' in page
    warning = html(client.get(f"/admin/warning/details/?id={ids['warning_a1']}"))
    assert "总分达到2分" not in warning and "scale:total" not in warning and "（无权查看）" in warning
    assert client.get(f"/admin/response/details/?id={ids['response_a1']}").status_code == 302
    case = html(client.get(f"/admin/case/details/?id={ids['case_a1']}"))
    assert CLASS_TEACHER_TASK in case and PSY_TASK not in case and CASE_NOTE not in case
    flow = html(client.get(f"/admin/caseflow/case/{ids['case_a1']}/"))
    assert CLASS_TEACHER_TASK in flow and INTERVIEW_NOTE not in flow and CASE_NOTE not in flow
    assert client.get(f"/admin/student/details/?id={ids['a2']}").status_code == 302  # another class

    short = break_glass(client, ids["a1"], reason="看看")
    assert short.status_code == 302 and audit_count(app, "break_glass", "student", ids["a1"]) == 0
    no_token = client.post(f"/admin/breakglass/{ids['a1']}/", data={"reason": BREAK_GLASS_REASON})
    assert no_token.status_code == 400 and audit_count(app, "break_glass", "student", ids["a1"]) == 0
    assert break_glass(client, ids["a1"], next_url="//evil.example/").headers["Location"] == (
        f"/admin/student/details/?id={ids['a1']}"
    )
    with app.extensions["xinshu"].db.sessionmaker() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.action == "break_glass")).one()
        assert (row.object_type, row.object_id, row.actor) == ("student", str(ids["a1"]), "teacher_a1")
        assert row.detail["reason"] == BREAK_GLASS_REASON
    page = html(client.get(f"/admin/student/details/?id={ids['a1']}"))
    assert SCORES in page and 'id="break-glass-form"' not in page
    answers = html(client.get(f"/admin/response/details/?id={ids['response_a1']}"))
    assert 'id="answers"' in answers and "tiny_1" in answers
    assert CASE_NOTE in html(client.get(f"/admin/case/details/?id={ids['case_a1']}"))
    assert INTERVIEW_NOTE in html(client.get(f"/admin/caseflow/case/{ids['case_a1']}/"))
    assert "家长来电" in html(client.get("/admin/breakglass/"))
    # The reason opened one student, not the class: A2 stays out of reach, exports stay closed.
    assert client.get("/admin/student/export/csv/").status_code == 403


def test_break_glass_lasts_sixty_minutes(world):
    app, ids = world
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        user = session.scalar(select(User).where(User.username == "principal_a"))
        old = make_event("break_glass", "student", ids["a2"], detail={"reason": BREAK_GLASS_REASON}, actor=user)
        old.at = utcnow() - dt.timedelta(minutes=61)
        session.add(old)
    with services.db.sessionmaker() as session:
        user = session.scalar(select(User).where(User.username == "principal_a"))
        access = access_for(user, session.get(Student, ids["a2"]), session)
        assert "answers" not in access.capabilities and access.break_glass == {"answers", "notes"}


def test_principal_sees_scores_but_answers_only_after_break_glass(world):
    app, ids = world
    client = client_for(app, "principal_a")
    page = html(client.get(f"/admin/response/details/?id={ids['response_a2']}"))
    assert SCORES in page and 'id="answers"' not in page and 'id="break-glass-form"' in page
    assert break_glass(client, ids["a2"]).status_code == 302
    assert 'id="answers"' in html(client.get(f"/admin/response/details/?id={ids['response_a2']}"))
    psy = client_for(app, "psy_a")  # the psychology teacher needs no reason, and is offered none
    page = html(psy.get(f"/admin/response/details/?id={ids['response_a1']}"))
    assert 'id="answers"' in page and 'id="break-glass-form"' not in page


def test_capabilities_are_per_record_for_a_user_with_two_roles(world):
    app, ids = world
    client = client_for(app, "mixed")  # class teacher of A1, psychology teacher of school B
    assert rows_as(app, "mixed", "response") == [ids["response_b1"]]
    assert SCORES not in html(client.get(f"/admin/student/details/?id={ids['a1']}"))
    assert SCORES in html(client.get(f"/admin/student/details/?id={ids['b1']}"))
    assert "预警 &lt;i&gt;3&lt;/i&gt;" in html(client.get(f"/admin/case/details/?id={ids['case_b1']}"))
    # The whole list mixes rows the user may and may not export: refused, not a partial file.
    assert client.get("/admin/student/export/csv/").status_code == 403
    school_filter = filter_arg(app, "case", "name", "FilterEqual")
    export = client.get(f"/admin/case/export/csv/?{school_filter}=b学校")
    assert export.status_code == 200 and NAMES["b1"] in export.get_data().decode("utf-8-sig")


# --- A8, A9, A10: forms and identifier columns -------------------------------------------


def _edit(client, student_id: int, **data):
    page = client.get(f"/admin/student/edit/?id={student_id}")
    assert page.status_code == 200
    return client.post(f"/admin/student/edit/?id={student_id}", data={"csrf_token": csrf_token(html(page)), **data})


def test_a8_extra_post_fields_cannot_change_a_student(world):
    app, ids = world
    services = app.extensions["xinshu"]
    client = client_for(app, "principal_a")
    extra = {"school_id": ids["school_b"], "id_number": "999999999999999999", "student_number": "X", "active": "0",
             "status": "erased", "grade_level": "1", "school_student_no": "hack", "id": ids["b1"]}  # fmt: skip
    response = _edit(client, ids["a2"], name="甲二同学", gender="M", class_id=ids["class_a1"], **extra)
    assert response.status_code == 302
    with services.db.sessionmaker() as session:
        student = session.get(Student, ids["a2"])
        assert (student.name, student.gender, student.class_id) == ("甲二同学", "M", ids["class_a1"])  # allowed
        assert (student.school_id, student.id_number) == (ids["school_a"], IDS["a2"])
        assert student.student_number == "G" + IDS["a2"]
        assert (student.active, student.status, student.grade_level, student.school_student_no) == (
            True, "enrolled", 7, "002",
        )  # fmt: skip
        assert session.get(Student, ids["b1"]).name == NAMES["b1"]
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "update",
                                AuditEvent.object_id == str(ids["a2"]))).all()[-1]  # fmt: skip
        assert event.detail == {"changed": ["gender", "class_id"],
                                "class_id": {"before": ids["class_a2"], "after": ids["class_a1"]}}  # fmt: skip
    # Another school's class is not a choice; a class teacher may not edit at all.
    _edit(client, ids["a2"], name="甲二同学", gender="M", class_id=ids["class_b1"])
    with services.db.sessionmaker() as session:
        assert session.get(Student, ids["a2"]).class_id == ids["class_a1"]
    assert client_for(app, "teacher_a1").get(f"/admin/student/edit/?id={ids['a1']}").status_code == 403


def test_a9_columns_left_out_of_the_form_keep_their_values(world):
    app, ids = world
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        student = session.get(Student, ids["a1"])
        student.birth_date, student.entry_year = dt.date(2012, 3, 4), 2024
    client = client_for(app, "psy_a")
    # The class left out of the POST keeps its value (the form takes it from the record), as does every column
    # that is not on the form at all.
    assert _edit(client, ids["a1"], name="甲一同学", gender="F").status_code == 302
    with services.db.sessionmaker() as session:
        student = session.get(Student, ids["a1"])
        assert (student.birth_date, student.entry_year, student.class_id) == (dt.date(2012, 3, 4), 2024,
                                                                              ids["class_a1"])  # fmt: skip
        assert (student.id_number, student.school_student_no, student.status) == (IDS["a1"], "001", "enrolled")


SECRET_COLUMNS = {"id_number", "student_number", "password_hash", "raw_cells", "birth_date"}


def test_a10_identifiers_are_never_columns_filters_or_search_fields(world):
    app, _ids = world
    for view in admin_views(app):
        if not isinstance(view, SecureModelView):
            continue
        names = {str(c) for c, _label in [*view._list_columns, *view._details_columns]}
        names |= {str(getattr(f.column, "name", "")) for f in view._filters or []}
        names |= {str(getattr(field, "key", field)) for field, _path in view._search_fields or []}
        names |= set(view._sortable_columns or {})
        assert not names & SECRET_COLUMNS, (view.endpoint, names & SECRET_COLUMNS)
    client = client_for(app, "psy_a")
    by_id = html(client.get("/admin/student/?search=110101"))  # an ID-number prefix finds nobody
    assert NAMES["a1"] not in by_id
    oracle = html(client.get("/admin/student/?flt0_id_number_contains=1101"))  # no such filter: ignored
    assert IDS["a1"] not in oracle


# --- F1: sort and paging ---------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "sort=1,extractvalue(0x0a,concat(0x0a,(SELECT @@version)))--",
        "sort=999",
        "sort=-3&desc=1",
        "desc=abc&sort=x",
        "page=-5",
        "page=99999999999999999999",
    ],
)
def test_f1_garbage_sort_and_page_are_ignored(world, query):
    app, _ids = world
    client = client_for(app, "psy_a")
    for endpoint in ("orgunit", "student", "response", "warning", "case", "notification", "inbox"):
        response = client.get(f"/admin/{endpoint}/?{query}")
        assert response.status_code == 200, (endpoint, query)
        body = html(response)
        for leak in ("OperationalError", "sqlalchemy", "Traceback", "SELECT "):
            assert leak not in body, (endpoint, query, leak)


# --- B1: CSRF on admin posts ------------------------------------------------------------


def test_b1_admin_posts_without_a_csrf_token_are_refused(world):
    app, ids = world
    services = app.extensions["xinshu"]
    psy = client_for(app, "psy_a")
    dist1 = client_for(app, "dist1")
    posts = [
        (psy, f"/admin/student/edit/?id={ids['a1']}", {"name": "无令牌", "gender": "M", "class_id": ids["class_a1"]}),
        (psy, "/admin/warning/action/", {"action": "acknowledge", "rowid": [ids["warning_a2"]]}),
        (psy, f"/admin/breakglass/{ids['a1']}/", {"reason": BREAK_GLASS_REASON}),
        (dist1, "/admin/orgunit/new/", {"code": "nocsrf", "name": "x", "kind": "school", "parent": ids["d1"]}),
        (psy, "/admin/student/delete/", {"id": ids["a1"]}),
    ]
    accepted = [url for client, url, data in posts if client.post(url, data=data).status_code != 400]
    security_summary.count("csrf_posts_tried", len(posts))
    security_summary.count("csrf_less_accepted", len(accepted))
    assert accepted == []
    with services.db.sessionmaker() as session:
        assert session.get(Student, ids["a1"]).name == NAMES["a1"]
        assert session.get(WarningModel, ids["warning_a2"]).acknowledged_at is None
        assert session.scalar(select(OrgUnit.id).where(OrgUnit.code == "nocsrf")) is None


def test_b1_flask_admin_delete_and_action_forms_carry_and_check_the_token(world):
    """Independently of CSRFProtect: Flask-Admin's own delete and bulk-action forms validate the token."""
    app, ids = world
    view = view_of(app, "warning")
    posts = {
        view.action_form: {"action": "acknowledge", "rowid": str(ids["warning_a1"]), "csrf_token": "forged"},
        view.delete_form: {"id": str(ids["warning_a1"])},
    }
    for make_form, data in posts.items():
        with app.test_request_context("/admin/warning/action/", method="POST", data=data):
            form = make_form()
            assert "csrf_token" in form._fields
            assert not form.validate() and "csrf_token" in form.errors
    page = html(client_for(app, "psy_a").get("/admin/warning/"))
    assert re.search(r'id="action_form".*?name="csrf_token" type="hidden" value="[^"]+"', page, re.S)


def test_acknowledge_action_takes_on_the_warnings_in_scope(world):
    app, ids = world
    services = app.extensions["xinshu"]
    client = client_for(app, "psy_a")
    token = csrf_token(html(client.get("/admin/warning/")))
    rows = [ids["warning_a2"], ids["warning_b1"], "not-a-number"]
    response = client.post("/admin/warning/action/", data={"csrf_token": token, "action": "acknowledge", "rowid": rows})
    assert response.status_code == 302
    with services.db.sessionmaker() as session:
        assert session.get(WarningModel, ids["warning_a2"]).acknowledged_by == "psy_a"
        assert session.get(WarningModel, ids["warning_b1"]).acknowledged_at is None  # out of scope
    assert audit_count(app, "update", "warning", ids["warning_a2"]) == 1
    teacher = client_for(app, "teacher_a1")  # a class teacher has no acknowledge action
    token = csrf_token(html(teacher.get("/admin/warning/")))
    assert teacher.post("/admin/warning/action/", data={"csrf_token": token, "action": "acknowledge",
                        "rowid": [ids["warning_a1"]]}).status_code == 302  # fmt: skip
    with services.db.sessionmaker() as session:
        assert session.get(WarningModel, ids["warning_a1"]).acknowledged_at is None


# --- org units ---------------------------------------------------------------------------


def test_org_units_are_added_and_renamed_within_the_admins_scope(world):
    app, ids = world
    services = app.extensions["xinshu"]
    client = client_for(app, "dist1")
    page = html(client.get("/admin/orgunit/new/"))
    assert "二区" not in page  # the other district is not offered as a parent
    token = csrf_token(page)
    data = {"csrf_token": token, "code": "d1-new", "name": "一区新学校", "kind": "school", "parent": ids["d1"]}
    assert client.post("/admin/orgunit/new/", data=data).status_code == 302
    client.post("/admin/orgunit/new/", data={**data, "code": "d2-new", "parent": ids["d2"]})
    client.post("/admin/orgunit/new/", data={**data, "code": "bad-kind", "kind": "district"})  # under a district
    with services.db.sessionmaker() as session:
        new = session.scalar(select(OrgUnit).where(OrgUnit.code == "d1-new"))
        d1_path = session.get(OrgUnit, ids["d1"]).path
        assert (new.kind, new.parent_id, new.path) == ("school", ids["d1"], f"{d1_path}{new.id}/")
        assert session.scalar(select(OrgUnit.id).where(OrgUnit.code.in_(("d2-new", "bad-kind")))) is None
        school_a_path = session.get(OrgUnit, ids["school_a"]).path
    moved = {"csrf_token": token, "code": "a", "name": "甲学校", "parent": ids["d2"], "kind": "city",
             "path": "/999/"}  # fmt: skip
    assert client.post(f"/admin/orgunit/edit/?id={ids['school_a']}", data=moved).status_code == 302
    with services.db.sessionmaker() as session:
        school_a = session.get(OrgUnit, ids["school_a"])
        assert (school_a.name, school_a.kind, school_a.parent_id, school_a.path) == (
            "甲学校", "school", ids["d1"], school_a_path,
        )  # fmt: skip
    assert client.get(f"/admin/orgunit/edit/?id={ids['d2']}", follow_redirects=True).request.path == "/admin/orgunit/"
    principal = client_for(app, "principal_a")
    assert principal.get("/admin/orgunit/new/").status_code == 302  # can_create is False
    assert principal.get(f"/admin/orgunit/edit/?id={ids['school_a']}").status_code == 403


# --- I1: every sensitive read is audited ------------------------------------------------


def sensitive_reads(ids: dict[str, int]) -> list[tuple[str, str, str, object]]:
    """(user, url, audited object type, object id or None for lists)."""
    return [
        ("psy_a", f"/admin/student/details/?id={ids['a1']}", "student", ids["a1"]),
        ("psy_a", f"/admin/student/edit/?id={ids['a1']}", "student", ids["a1"]),
        ("psy_a", f"/admin/response/details/?id={ids['response_a1']}", "response", ids["response_a1"]),
        ("psy_a", f"/admin/warning/details/?id={ids['warning_a1']}", "warning", ids["warning_a1"]),
        ("psy_a", f"/admin/warning/judge/?id={ids['warning_a1']}", "warning", ids["warning_a1"]),
        ("psy_a", f"/admin/case/details/?id={ids['case_a1']}", "case", ids["case_a1"]),
        ("psy_a", f"/admin/caseflow/case/{ids['case_a1']}/", "case", ids["case_a1"]),
        ("psy_a", f"/admin/casedesk/case/{ids['case_a1']}/", "case", ids["case_a1"]),
        ("psy_a", "/admin/response/", "response", ""),
        ("psy_a", "/admin/warning/", "warning", ""),
        ("psy_a", "/admin/case/", "case", ""),
        ("psy_a", "/admin/caseflow/", "case", ""),
        ("psy_a", "/admin/casedesk/", "case", ""),
        ("psy_a", "/admin/referral/", "referral", ""),
        ("psy_a", "/admin/parentcontact/", "parent_contact", ""),
        ("psy_a", "/admin/consent/", "guardian_consent", ""),
        ("psy_a", "/admin/", "warning", ""),
        ("teacher_a1", "/report/", "student", ""),
        ("psy_a", "/admin/student/export/csv/", "student", ""),
        ("psy_a", "/admin/warning/export/xlsx/", "warning", ""),
    ]


def test_i1_every_sensitive_read_writes_an_audit_row(world):
    app, ids = world
    clients = {name: client_for(app, name) for name in ("psy_a", "teacher_a1")}
    missing = []
    for username, url, object_type, object_id in sensitive_reads(ids):
        action = "export" if "/export/" in url else "read"
        before = audit_count(app, action, object_type, object_id)
        response = clients[username].get(url)
        assert response.status_code == 200, url
        if audit_count(app, action, object_type, object_id) != before + 1:
            missing.append(url)
    security_summary.count("sensitive_reads_tried", len(sensitive_reads(ids)))
    security_summary.count("unaudited_reads", len(missing))
    assert missing == []
    with app.extensions["xinshu"].db.sessionmaker() as session:
        row = session.scalars(select(AuditEvent).where(AuditEvent.action == "read",
                              AuditEvent.object_type == "student").order_by(AuditEvent.id.desc())).first()  # fmt: skip
        assert (row.actor, row.endpoint) == ("teacher_a1", "/report/")


# --- I4: fail closed ---------------------------------------------------------------------


def test_i4_a_read_whose_audit_row_cannot_be_written_is_refused(world, monkeypatch, caplog):
    app, ids = world
    services = app.extensions["xinshu"]
    clients = {name: client_for(app, name) for name in ("psy_a", "teacher_a1")}

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services.db, "sessionmaker", broken)
    for username, url, _type, _id in sensitive_reads(ids):
        response = clients[username].get(url)
        body = response.get_data().decode("utf-8", "replace")
        assert response.status_code == 503, url
        assert NAMES["a1"] not in body and SCORES not in body and CASE_NOTE not in body, url
    glass = break_glass(clients["teacher_a1"], ids["a1"], reason="再次查看家访记录")
    assert glass.status_code == 503
    assert "ALARM: audit log write failed" in caplog.text
    monkeypatch.undo()
    assert clients["psy_a"].get(f"/admin/student/details/?id={ids['a1']}").status_code == 200


def test_home_page_counts_the_scope_and_names_only_visible_students(world):
    app, ids = world
    teacher = html(client_for(app, "teacher_a1").get("/admin/"))
    # Class A1 only (A2 may have moved in the A8 test: count the class's students in the database).
    with app.extensions["xinshu"].db.sessionmaker() as session:
        in_class = session.scalar(select(func.count()).select_from(Student).where(Student.class_id == ids["class_a1"]))
    assert re.search(rf'id="count-students">{in_class}<', teacher)
    assert NAMES["a1"] in teacher and NAMES["b1"] not in teacher
    principal = html(client_for(app, "principal_a").get("/admin/"))
    assert re.search(r'id="count-students">2<', principal) and re.search(r'id="count-screened">2<', principal)


# --- item-level inputs of warnings; notified administrators ---------------------------------

ITEM_INPUTS = {"phq9:item:phq9_9": 3.0, "phq9:flag:critical:phq9_9": True, "phq9:scale:total": 21}
ITEMS_HIDDEN = "（逐题作答需查阅权限）"


@pytest.fixture(scope="module")
def district3(world):
    """A district D3 of its own (the counts of D1, D2 stay as the tests above expect it): school S3 with
    student S3a (warning escalated to the district, fired by an item) and S3b (level 3, stayed at school)."""
    app, _ids = world
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = session.scalar(select(OrgUnit).where(OrgUnit.kind == "city"))
        d3 = add_org_unit(session, "d3", "三区", "district", city)
        school, klass = add_school(session, d3, "s3")
        first = add_student_with_history(session, school, klass, "丁一同学", "110101200807071234", "011")
        second = add_student_with_history(session, school, klass, "丁二同学", "110101200808081236", "012")
        warning = session.scalar(select(WarningModel).where(WarningModel.student_id == first.id))
        warning.escalated_to = "district"
        warning.inputs = [{"rule_id": "phq9.item9", "level": 3, "inputs": ITEM_INPUTS}]
        quiet = session.scalar(select(WarningModel).where(WarningModel.student_id == second.id))
        for username, role, unit in (("dist3", "district_admin", d3), ("psy3", "psychology_teacher", school),
                                     ("teacher3", "class_teacher", klass)):  # fmt: skip
            create_user(session, username, PASSWORD, role, unit)
        ids = {"d3": d3.id, "s3a": first.id, "s3b": second.id, "warning_s3a": warning.id, "warning_s3b": quiet.id}
        ids["case_s3b"] = session.scalar(select(Case.id).where(Case.student_id == second.id))
    return app, ids


def test_item_inputs_of_a_warning_are_shown_only_with_the_answers_capability(district3):
    app, ids = district3
    dist3 = client_for(app, "dist3")  # results, but no answers: the total yes, the item and its flag no
    for url in ("/admin/warning/", f"/admin/warning/details/?id={ids['warning_s3a']}"):
        page = html(dist3.get(url))
        assert "phq9:scale:total = 21" in page and ITEMS_HIDDEN in page, url
        assert "phq9_9" not in page.replace("phq9.item9", ""), url  # the rule id itself stays
    psy = html(client_for(app, "psy3").get(f"/admin/warning/details/?id={ids['warning_s3a']}"))
    assert "phq9:item:phq9_9 = 3.0" in psy and "phq9:flag:critical:phq9_9 = 是" in psy and ITEMS_HIDDEN not in psy
    teacher = html(client_for(app, "teacher3").get(f"/admin/warning/details/?id={ids['warning_s3a']}"))
    assert "phq9:scale:total" not in teacher and "phq9_9 =" not in teacher and "（无权查看）" in teacher
    assert break_glass(dist3, ids["s3a"]).status_code == 302  # answers for 60 minutes: the items appear
    page = html(dist3.get(f"/admin/warning/details/?id={ids['warning_s3a']}"))
    assert "phq9:item:phq9_9 = 3.0" in page and ITEMS_HIDDEN not in page


def test_a_notified_district_admin_can_open_the_case_the_notice_links_to(district3):
    app, ids = district3
    case_url = f"/admin/case/details/?id={ids['case_s3b']}"
    assert ids["s3b"] not in rows_as(app, "dist3", "student")  # neither escalated nor notified yet
    assert dist3_get(app, case_url).status_code == 302
    with app.extensions["xinshu"].db.transaction() as session:  # what levels.yaml level 3 queues for the district
        link = f"http://127.0.0.1:5000{case_url}"
        session.add(
            Notification(idempotency_key=f"warning-{ids['warning_s3b']}-L3:inbox:district_admin@{ids['d3']}",
                         warning_id=ids["warning_s3b"], case_id=ids["case_s3b"], channel="inbox",
                         role="district_admin", org_unit_id=ids["d3"], level=3,
                         payload={"subject": "严重预警", "body": "x", "link": link})
        )  # fmt: skip
        session.add(InboxMessage(idempotency_key="notice-s3b", role="district_admin", org_unit_id=ids["d3"],
                                 subject="严重预警", body="x", link=link, level=3))  # fmt: skip
        session.add(InboxMessage(idempotency_key="notice-evil", role="district_admin", org_unit_id=ids["d3"],
                                 subject="外链", body="x", link="https://evil.example/admin/", level=3))  # fmt: skip
    assert ids["s3b"] in rows_as(app, "dist3", "student")
    assert ids["s3b"] not in rows_as(app, "boss", "student")  # the city was not notified
    assert dist3_get(app, case_url).status_code == 200
    with app.extensions["xinshu"].db.sessionmaker() as session:
        messages = dict(session.execute(select(InboxMessage.idempotency_key, InboxMessage.id)).all())
    page = html(dist3_get(app, f"/admin/inbox/details/?id={messages['notice-s3b']}"))
    assert f"<a href='{case_url.replace('&', '&amp;')}'>" in page  # the configured site, as an on-site path
    evil = html(dist3_get(app, f"/admin/inbox/details/?id={messages['notice-evil']}"))
    assert "https://evil.example/admin/" in evil and "href='https://evil.example" not in evil


def dist3_get(app: Flask, url: str):
    return client_for(app, "dist3").get(url)
