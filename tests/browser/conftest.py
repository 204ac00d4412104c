"""Real-browser fixtures: a live server, Debian's chromium through Playwright, screenshots.

* ``live_server`` (one per test module): the real application from
  :func:`xinshu.app.create_app` over a real SQLite file, ``TESTING`` off and
  real CSRF, served by Werkzeug's threaded server on 127.0.0.1 (a free port) in
  a background thread, with the world of :mod:`.seed`. Exceptions raised while
  serving are collected and fail the test that caused them.
* ``browser`` (one per session): ``/usr/bin/chromium``, headless, launched by
  Playwright (``playwright install`` is never used). Without that binary the
  tests are skipped, unless the environment variable ``CI`` is set: then they
  fail, because CI must run them.
* ``page`` / ``open_page``: a fresh browser context per page (own cookies,
  ``zh-CN``); every page is photographed when the test ends, pass or fail, as
  ``test-artifacts/screenshots/<test name>-final[-N].png`` under the checkout.
* ``shot(step)``: a screenshot ``<test name>-<step>.png`` at a step of a test.
* ``login(page, username)``: log in through the form, as a person would.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import got_request_exception
from werkzeug.serving import make_server

from xinshu.app import create_app

from .seed import PASSWORD, copy_declarations, seed

PLAYWRIGHT_MISSING = "the Python package playwright is not installed (pip install -c constraints.txt -e '.[dev]')"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the dev extra installs it; CI must have it
    if _in_ci():
        raise
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
#: Milliseconds Playwright waits for an element or a navigation before failing.
ACTION_TIMEOUT_MS = 10_000
NAVIGATION_TIMEOUT_MS = 20_000
VIEWPORT = {"width": 1280, "height": 900}


@dataclass
class LiveServer:
    """The running application: its base URL, services (database) and the seeded ids."""

    url: str
    app: Any
    ids: dict[str, int]
    errors: list[str] = field(default_factory=list)

    @property
    def services(self):
        return self.app.extensions["xinshu"]


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the browser tests must run."""
    if _in_ci():
        pytest.fail(f"CI is set but the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless chromium, launched through Playwright's bundled driver."""
    if sync_playwright is None:
        _unavailable(PLAYWRIGHT_MISSING)
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} not found (apt-get install chromium fonts-noto-cjk)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The real application on a seeded SQLite file, served on 127.0.0.1 in a background thread."""
    tmp = tmp_path_factory.mktemp("browser")
    app = create_app(
        {
            "TESTING": False,
            "DATABASE_URL": f"sqlite:///{tmp / 'xinshu.db'}",
            "SECRET_KEY": secrets.token_hex(32),
            "DECLARATION_ROOT": str(copy_declarations(tmp / "declarations")),
            "WTF_CSRF_ENABLED": True,
        }
    )
    ids = seed(app.extensions["xinshu"], tmp)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    live = LiveServer(f"http://127.0.0.1:{server.server_port}", app, ids)

    def collect(_sender, exception: BaseException, **_extra) -> None:
        live.errors.append(f"{type(exception).__name__}: {exception}")

    got_request_exception.connect(collect, app)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield live
    server.shutdown()
    thread.join(timeout=10)
    got_request_exception.disconnect(collect, app)
    live.services.db.dispose()


def _test_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")


class PageFactory:
    """Opens pages, each in its own browser context; remembers them in order (``pages``)."""

    def __init__(self, browser):
        self.browser = browser
        self.pages: list[Any] = []

    def __call__(self):
        context = self.browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport=VIEWPORT)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        page = context.new_page()
        self.pages.append(page)
        return page


@pytest.fixture
def open_page(browser, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[PageFactory]:
    """``open_page()``: a new page in its own browser context (its own login); all photographed at the end."""
    name = _test_name(request)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"{name}-*.png"):
        old.unlink()
    errors_before = len(live_server.errors)
    factory = PageFactory(browser)
    yield factory
    for index, page in enumerate(factory.pages, start=1):
        suffix = "final" if index == 1 else f"final-{index}"
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{suffix}.png"), full_page=True)
        except Exception as exc:
            print(f"screenshot {name}-{suffix} failed: {exc}")
        page.context.close()
    errors = live_server.errors[errors_before:]
    if errors:
        pytest.fail("the server raised while serving this test: " + "; ".join(errors), pytrace=False)


@pytest.fixture
def page(open_page: PageFactory):
    """One browser page in a fresh context (the test's first page)."""
    return open_page()


@pytest.fixture
def shot(open_page: PageFactory, request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``shot(step, on=None)``: save ``test-artifacts/screenshots/<test name>-<step>.png`` of ``on``
    (default: the test's first page)."""
    name = _test_name(request)

    def take(step: str, on=None) -> Path:
        path = SCREENSHOTS / f"{name}-{step}.png"
        (on or open_page.pages[0]).screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def login(live_server: LiveServer) -> Callable[..., None]:
    """``login(page, username, password=PASSWORD)``: fill in and send the login form."""

    def log_in(page, username: str, password: str = PASSWORD) -> None:
        page.goto(f"{live_server.url}/login")
        page.fill("#username", username)
        page.fill("#password", password)
        with page.expect_navigation():
            page.click("#submit")

    return log_in
