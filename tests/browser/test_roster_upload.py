"""Roster upload in a real browser: a file with a bad ID number is refused row by row.

The roster is a real ``.xlsx`` of fictional students (Faker ``zh_CN`` names, ID
numbers with check characters from python-stdnum's ``cn.ric``), written here;
sheet row 5 (the fourth student, the header being row 1) carries a wrong check
character. The page (``plugins/roster_admin.py``): ``select[name=school]``,
``input[type=file]``, ``button[name=preview]``; errors in ``table#row-errors``
(工作表, 行, 列, 错误); a correct file gives ``#preview-summary`` and a confirm button.
"""

from __future__ import annotations

import pytest

from .conftest import PLAYWRIGHT_MISSING
from .seed import ID_COLUMN, PSY, SCHOOLS, fictional_people, write_roster

pytestmark = pytest.mark.browser
# Without the package (an old environment) the module is skipped; in CI conftest.py fails first.
expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect

BAD_ROW = 5  # sheet row: header on row 1, students on rows 2-7


def preview(page, url: str, school: str, path) -> None:
    """Choose the school and the file and press 预览."""
    page.goto(f"{url}/admin/roster/")
    page.select_option("select[name=school]", school)
    page.set_input_files("input[type=file]", str(path))
    with page.expect_navigation():
        page.click("button[name=preview]")


def test_roster_with_a_wrong_check_digit_is_refused_row_by_row(page, login, live_server, shot, tmp_path):
    people = fictional_people(6, seed=7, class_name="2班")  # not the seeded students
    roster = write_roster(tmp_path / "名册-有误.xlsx", people, wrong_check_rows=[BAD_ROW])
    login(page, PSY)
    school_code, school_name = SCHOOLS[0]
    page.goto(f"{live_server.url}/admin/roster/")
    expect(page.locator("select[name=school] option")).to_have_text([f"{school_name}（{school_code}）"])
    shot("form")

    preview(page, live_server.url, school_code, roster)
    errors = page.locator("table#row-errors tbody tr")
    expect(errors).to_have_count(1)  # only row 5 is wrong
    cells = errors.first.locator("td")
    expect(cells.nth(1)).to_have_text(str(BAD_ROW))
    expect(cells.nth(2)).to_have_text(ID_COLUMN)
    expect(cells.nth(3)).to_contain_text("校验")  # the check character, not the format
    expect(page.locator("button[name=confirm]")).to_have_count(0)
    shot("row-errors")


def test_correct_roster_previews_the_new_students(page, login, live_server, shot, tmp_path):
    people = fictional_people(6, seed=8, class_name="3班")  # not the seeded students
    roster = write_roster(tmp_path / "名册.xlsx", people)
    login(page, PSY)
    preview(page, live_server.url, SCHOOLS[0][0], roster)
    expect(page.locator("table#row-errors")).to_have_count(0)
    expect(page.locator("#preview-summary #count-new")).to_have_text("6")
    expect(page.locator("#preview-summary #count-classes")).to_have_text("1")  # 七年级3班 is new
    expect(page.locator("#rows-new tbody tr")).to_have_count(6)
    expect(page.locator("button[name=confirm]")).to_be_visible()
    shot("preview")
