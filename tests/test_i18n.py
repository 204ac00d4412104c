"""Languages: the catalogues are complete and compiled, and the web app switches between
Simplified Chinese (default) and English.

The messages are extracted from the sources with Babel's own API and the
project's ``babel.cfg`` (the same mapping ``pybabel extract`` uses, see
docs/translations.md), so a string wrapped for translation but missing from a
catalogue fails here. The web tests use one application over a real SQLite
file (tests/test_web.py's configuration and login helper).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from sqlalchemy import select
from test_web import PASSWORD, add_school, app_config, csrf_token, login

from xinshu.app import create_app
from xinshu.auth import create_user
from xinshu.models import OrgUnit, Student
from xinshu.orgs import add_org_unit

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "core" / "translations"
LOCALES = ("zh_Hans_CN", "en")
#: The keywords of the documented ``pybabel extract`` command, on top of Babel's defaults (``_``, ``N_``, ...).
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "lazy_pgettext": ((1, "c"), 2)}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]|\{(\w+)\}")
HTML_LANG = re.compile(r'<html lang="([^"]+)"')


# --- catalogues -------------------------------------------------------------------


def source_messages() -> dict[tuple[str, str | None], str]:
    """(msgid, context) → first source location of every message the sources mark for translation."""
    with (ROOT / "babel.cfg").open(encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[tuple[str, str | None], str] = {}
    for filename, lineno, message, _comments, context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        assert isinstance(message, str), f"{filename}:{lineno}: plural forms are not used"
        found.setdefault((message, context), f"{filename}:{lineno}")
    return found


def catalogue(locale: str):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=locale)


def placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


@pytest.fixture(scope="module")
def extracted() -> dict[tuple[str, str | None], str]:
    messages = source_messages()
    # A floor, not the exact count: the sources hold about a thousand messages, and an
    # extraction that finds almost nothing (wrong mapping, wrong keywords) must not pass.
    assert len(messages) > 800
    return messages


@pytest.mark.parametrize("locale", LOCALES)
def test_catalogue_has_every_source_message_and_nothing_stale(extracted, locale):
    cat = catalogue(locale)
    in_catalogue = {(m.id, m.context) for m in cat if m.id}
    missing = sorted(f"{where}: {msgid!r}" for (msgid, ctx), where in extracted.items() if (msgid, ctx) not in cat)
    assert not missing, f"{len(missing)} messages missing from {locale} (run pybabel update):\n" + "\n".join(missing)
    stale = sorted(in_catalogue - set(extracted))
    assert not stale, f"{locale} has messages no source uses (run pybabel update --ignore-obsolete): {stale}"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_translation_is_filled_not_fuzzy_and_keeps_the_placeholders(locale):
    cat = catalogue(locale)
    assert not cat.fuzzy
    problems = []
    for message in cat:
        if not message.id:
            continue
        if not message.string:
            problems.append(f"empty: {message.id!r}")
        elif message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        elif placeholders(message.string) != placeholders(message.id):
            problems.append(f"placeholders differ: {message.id!r} → {message.string!r}")
    assert not problems, "\n".join(problems)


def test_english_catalogue_is_english_and_chinese_catalogue_is_the_source_text():
    cjk = re.compile(r"[\u4e00-\u9fff]")
    english = catalogue("en")
    # Only column names of roster files and examples of grade/class spellings stay in Chinese.
    allowed = ("身份证号", "学籍号", "校内学号", "男/女", "七年级", "初一", "高二", "1班", "(3)班")
    chinese_left = [
        m.id for m in english if m.id and cjk.search(re.sub("|".join(map(re.escape, allowed)), "", m.string))
    ]
    assert not chinese_left, chinese_left
    source = catalogue("zh_Hans_CN")
    assert all(m.string == m.id for m in source if m.id)
    # Spot checks written by hand: the field's standard English terms.
    assert english["原始分"].string == "Raw score"
    assert english["T分"].string == "T score"
    assert english["百分位"].string == "Percentile"
    assert english["分量表"].string == "Subscale"
    assert english["心理教师"].string == "Psychology teacher"
    assert english["德育主任"].string == "Moral-education director"
    assert english.get("学生", context="menu").string == "Students"


@pytest.mark.parametrize("locale", LOCALES)
def test_committed_mo_files_match_the_po_files(locale):
    folder = TRANSLATIONS / locale / "LC_MESSAGES"
    po = catalogue(locale)
    with (folder / "messages.mo").open("rb") as fh:
        mo = read_mo(fh)
    expected = {(m.id, m.context): m.string for m in po if m.id and m.string and not m.fuzzy}
    compiled = {(m.id, m.context): m.string for m in mo if m.id}
    assert compiled == expected, "run: pybabel compile -d core/translations"


# --- the web application ------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """An application with a city and its bureau administrator ``boss``."""
    application = create_app(app_config(tmp_path_factory.mktemp("i18n")))
    services = application.extensions["xinshu"]
    with services.db.transaction() as session:
        city = add_org_unit(session, "c", "示范市", "city", None)
        create_user(session, "boss", PASSWORD, "bureau_admin", city)
    yield application
    services.db.dispose()


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.get_data(as_text=True)


def test_login_page_is_chinese_by_default_and_english_on_request_remembered(app):
    client = app.test_client()
    html = page(client, "/login")
    assert HTML_LANG.search(html).group(1) == "zh-CN"
    assert 'value="登录"' in html  # the submit button
    assert "Log in" not in html
    assert 'href="/login?lang=en"' in html  # the language switch

    html = page(client, "/login?lang=en")
    assert HTML_LANG.search(html).group(1) == "en"
    assert 'value="Log in"' in html
    assert "Username" in html and "Password" in html
    assert "登录" not in html

    html = page(client, "/login")  # no ?lang: the choice is kept in the session
    assert 'value="Log in"' in html
    assert 'href="/login?lang=zh"' in html

    html = page(client, "/login?lang=zh")
    assert 'value="登录"' in html


def test_language_switch_keeps_the_other_query_arguments(app):
    html = page(app.test_client(), "/login?next=/admin/student/")
    assert 'href="/login?next=%2Fadmin%2Fstudent%2F&amp;lang=en"' in html


def test_back_office_menus_and_flask_admin_strings_follow_the_language(app):
    client = app.test_client()
    login(client, "boss")
    home = page(client, "/admin/")
    assert HTML_LANG.search(home).group(1) == "zh-CN"
    assert re.search(r'href="/admin/student/">\s*学生\s*</a>', home)
    assert '"Noto Sans CJK SC"' in home  # the CJK font stack
    students = page(client, "/admin/student/")
    assert ">列表</a>" in students  # Flask-Admin's own Chinese catalogue
    assert ">导出</a>" in students

    home = page(client, "/admin/?lang=en")
    assert HTML_LANG.search(home).group(1) == "en"
    assert re.search(r'href="/admin/student/">\s*Students\s*</a>', home)
    assert re.search(r'href="/admin/warning/">\s*Warnings\s*</a>', home)
    assert "Log out" in home and "退出登录" not in home
    assert "Welcome to Xinshu" in home
    students = page(client, "/admin/student/")
    assert ">List</a>" in students  # Flask-Admin's own English strings
    assert ">Export</a>" in students
    assert "School student no." in students  # our column label
    assert ">列表</a>" not in students


def test_flash_after_a_refused_login_is_in_the_chosen_language(app):
    client = app.test_client()
    html = page(client, "/login?lang=en")
    response = client.post(
        "/login", data={"csrf_token": csrf_token(html), "username": "boss", "password": "wrong password 1A"}
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Wrong username or password" in text
    assert "用户名或密码错误" not in text

    chinese = app.test_client()
    html = page(chinese, "/login")
    text = chinese.post(
        "/login", data={"csrf_token": csrf_token(html), "username": "boss", "password": "wrong password 1A"}
    ).get_data(as_text=True)
    assert "用户名或密码错误" in text


def test_flask_login_message_is_translated(app):
    client = app.test_client()
    page(client, "/login?lang=en")
    response = client.get("/report/")  # login_required: Flask-Login flashes its message
    assert response.status_code == 302
    assert "Please log in first." in page(client, response.headers["Location"])


def test_report_page_and_validation_messages_in_english(app):
    services = app.extensions["xinshu"]
    with services.db.transaction() as session:
        city = session.scalars(select(OrgUnit).where(OrgUnit.code == "c")).one()
        school, klass = add_school(session, city, "s")
        session.add(Student(school_id=school.id, class_id=klass.id, name="王五", gender="M", grade_level=7))
        create_user(session, "teacher", PASSWORD, "psychology_teacher", school)
    client = app.test_client()
    page(client, "/login?lang=en")
    login(client, "teacher")
    html = page(client, "/report/")
    assert HTML_LANG.search(html).group(1) == "en"
    assert "Submit report" in html and "Log out" in html
    response = client.post("/report/", data={"csrf_token": csrf_token(html), "student": ""})
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Please choose a student" in text
    assert "Please choose at least one concern" in text
    assert "请选择学生" not in text
