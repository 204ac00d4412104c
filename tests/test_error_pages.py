"""The Chinese error pages (xinshu.error_pages): same status code, Chinese text, navigation, no exception text."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, abort
from werkzeug.exceptions import InternalServerError

from tests.test_web import app_config
from xinshu.app import create_app


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    app = create_app(app_config(tmp_path, MAX_CONTENT_LENGTH=1000))

    @app.route("/_boom/<int:code>")
    def boom(code: int):
        if code == 500:
            raise InternalServerError(original_exception=RuntimeError("secret detail 13800138000"))
        abort(code)

    @app.route("/_said/403")
    def said():
        abort(403, description="列表中有您无权导出的记录")

    return app


def test_unknown_url_is_a_chinese_404_page(app):
    response = app.test_client().get("/no/such/page")
    body = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "页面不存在" in body and "找不到该页面或记录" in body
    assert 'href="/admin/"' in body and 'href="/login"' in body and "心数 xinshu" in body
    assert "Not Found" not in body and "requested URL" not in body


@pytest.mark.parametrize(
    ("code", "title"),
    [
        (400, "请求无效"),
        (403, "无权访问"),
        (404, "页面不存在"),
        (405, "操作不允许"),
        (500, "系统出错"),
        (503, "服务暂不可用"),
    ],
)
def test_each_status_keeps_its_code(app, code, title):
    response = app.test_client().get(f"/_boom/{code}")
    body = response.get_data(as_text=True)
    assert response.status_code == code
    assert title in body and f'<span id="error-code">{code}</span>' in body
    assert "secret detail" not in body and "13800138000" not in body and "Traceback" not in body


def test_a_deliberate_description_is_shown(app):
    response = app.test_client().get("/_said/403")
    assert response.status_code == 403 and "列表中有您无权导出的记录" in response.get_data(as_text=True)


def test_wrong_method_csrf_and_too_large(app):
    client = app.test_client()
    wrong_method = client.put("/login")
    assert wrong_method.status_code == 405 and "操作不允许" in wrong_method.get_data(as_text=True)
    no_token = client.post("/login", data={"username": "x", "password": "y"})
    body = no_token.get_data(as_text=True)
    assert no_token.status_code == 400 and "页面已过期或提交无效" in body and "CSRF" not in body
    too_large = client.post("/login", data={"username": "x" * 2000})
    assert too_large.status_code == 413 and "内容过大" in too_large.get_data(as_text=True)


def test_english_session_gets_english_page(app):
    client = app.test_client()
    client.get("/login?lang=en")
    response = client.get("/no/such/page")
    assert response.status_code == 404 and "Page not found" in response.get_data(as_text=True)
