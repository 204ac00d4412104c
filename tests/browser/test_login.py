"""Logging in and out in a real browser, and Chinese text drawn with real CJK glyphs."""

from __future__ import annotations

import re

import pytest

from .conftest import PLAYWRIGHT_MISSING
from .seed import PSY

pytestmark = pytest.mark.browser
# Without the package (an old environment) the module is skipped; in CI conftest.py fails first.
expect = pytest.importorskip("playwright.sync_api", reason=PLAYWRIGHT_MISSING).expect


def rendering_fonts(page, selector: str) -> dict[str, int]:
    """The fonts chromium really used to draw the text of ``selector``: family -> glyph count (DevTools CSS domain)."""
    cdp = page.context.new_cdp_session(page)
    try:
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument")["root"]["nodeId"]
        node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    finally:
        cdp.detach()
    return {font["familyName"]: font["glyphCount"] for font in fonts}


def noto_cjk_glyphs(fonts: dict[str, int]) -> int:
    """How many glyphs a Noto CJK face (any region) drew."""
    return sum(count for family, count in fonts.items() if family.startswith(("Noto Sans CJK", "Noto Serif CJK")))


def test_wrong_password_shows_the_generic_error(page, login, live_server, shot):
    login(page, PSY, "Xinshu-2026!wrong")
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.locator(".alert-danger")).to_have_text("用户名或密码错误")
    shot("wrong-password")
    login(page, "no-such-user")  # an unknown user gets the very same answer
    expect(page.locator(".alert-danger")).to_have_text("用户名或密码错误")
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/login\?next="))  # still not logged in


def test_login_lands_on_the_chinese_home_then_logout(page, login, live_server, shot):
    login(page, PSY)
    expect(page).to_have_url(f"{live_server.url}/admin/")
    expect(page.get_by_role("heading", name="我的角色")).to_be_visible()
    expect(page.locator("body")).to_contain_text("心理教师 — 青川区第一中学")
    shot("home")

    assert page.evaluate("""document.fonts.check('16px "Noto Sans CJK SC"')""") is True
    # document.fonts.check is also true for a font the machine lacks (there is no web font to
    # wait for), so ask chromium which fonts drew the heading: all of 我的角色 (4 characters)
    # from the Simplified Chinese face (the page is lang="zh-CN" with a CJK SC font stack),
    # none from another region's face (JP glyph forms differ).
    fonts = rendering_fonts(page, "h5")
    assert fonts.get("Noto Sans CJK SC") == 4, fonts
    assert noto_cjk_glyphs(fonts) == 4, fonts

    with page.expect_navigation():
        page.get_by_role("button", name="退出登录").click()
    expect(page).to_have_url(f"{live_server.url}/login")
    expect(page.get_by_role("heading", name="心数 xinshu 管理后台")).to_be_visible()
    shot("logged-out")
    # The login page is lang="zh-CN" with the CJK SC font stack first: the heading 心数 xinshu 管理后台
    # is drawn entirely in Noto Sans CJK SC: 6 Chinese characters + 6 Latin letters + 2 spaces = 14 glyphs.
    fonts = rendering_fonts(page, "h1")
    assert fonts == {"Noto Sans CJK SC": 14}, fonts
    page.goto(f"{live_server.url}/admin/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
