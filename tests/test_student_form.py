"""The back office's student edit form and details page (new-user findings, issue 6).

The edit form holds a name to the roster import's rules (``xinshu.roster_fields.parse_name``)
and shows the reason on the field; the details page shows a response's submission time in
Beijing time. One application over a real SQLite file (the ``world`` of test_disclosure).
"""

from __future__ import annotations

import datetime as dt
import re

import test_disclosure
from sqlalchemy import select
from test_disclosure import NAMES, _edit, client_for, html

from xinshu.models import Response, Student

world = test_disclosure.world  # the module's app and ids (a fixture)


def _field_errors(page: str) -> list[str]:
    """The messages Flask-Admin's bootstrap4 form draws under a field (``invalid-feedback``)."""
    return [m.strip() for m in re.findall(r'class="invalid-feedback">\s*<ul[^>]*>\s*<li>([^<]*)</li>', page)]


def test_edit_form_refuses_names_the_roster_import_refuses(world):
    app, ids = world
    client = client_for(app, "psy_a")
    # (posted name, the message parse_name gives for it — the msgids in core/roster_fields.py)
    cases = [
        ("学" * 100, "姓名超过50个字符"),
        ("=cmd|calc", "单元格是公式，请填写值"),
        ("张\u202e三", "姓名含有控制字符或不可见字符"),
        ("", "姓名不能为空"),
        ("   ", "姓名不能为空"),
    ]
    for name, message in cases:
        response = _edit(client, ids["a1"], name=name, gender="F", class_id=ids["class_a1"])
        assert response.status_code == 200, name  # the form again, not a redirect
        assert _field_errors(html(response)) == [message], name
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.get(Student, ids["a1"]).name == NAMES["a1"]
    # 50 characters is the limit, and the name is trimmed as on import
    response = _edit(client, ids["a1"], name=" " + "学" * 50 + " ", gender="F", class_id=ids["class_a1"])
    assert response.status_code == 302
    with app.extensions["xinshu"].db.sessionmaker() as session:
        assert session.get(Student, ids["a1"]).name == "学" * 50
    assert 'maxlength="50"' in html(client.get(f"/admin/student/edit/?id={ids['a1']}"))


def test_details_show_the_submission_in_beijing_time(world):
    app, ids = world
    with app.extensions["xinshu"].db.transaction() as session:
        response = session.scalar(select(Response).where(Response.id == ids["response_a1"]))
        response.submitted_at = dt.datetime(2025, 3, 1, 20, 30)  # UTC; 8 hours later in Beijing: 3月2日 04:30
    page = html(client_for(app, "psy_a").get(f"/admin/student/details/?id={ids['a1']}"))
    results = page[page.index('id="results"') :]
    assert "2025-03-02 04:30" in results and "2025-03-01" not in results
