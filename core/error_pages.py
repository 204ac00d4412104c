"""Chinese error pages for the whole application (400, 403, 404, 405, 413, 500, 503).

:func:`register_error_pages` makes every ``abort(code)`` (and every HTTP error
Werkzeug raises itself, e.g. an unknown URL or a missing CSRF token) answer
with ``admin/xinshu_error.html``: the product name, the status code, a short
translated message and links to the back office and the login page, with the
same status code. A description given on purpose (``abort(403,
description=_("…"))``) is shown instead of the generic message; Werkzeug's
English default descriptions, exception texts and tracebacks never are.
Blueprint handlers (e.g. the report pages' CSRF page) still take precedence.
"""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: Status code → (title, message) shown on the error page.
ERROR_TEXTS = {
    400: (_l("请求无效"), _l("提交的内容无效，未保存任何内容。请返回上一页重试。")),
    403: (_l("无权访问"), _l("您没有权限查看此页面或执行此操作。")),
    404: (_l("页面不存在"), _l("找不到该页面或记录，或不在您的管辖范围内。")),
    405: (_l("操作不允许"), _l("此页面不支持这种操作方式。请从页面上的按钮或链接进入。")),
    413: (_l("内容过大"), _l("上传的文件或提交的内容过大，请缩小后重试。")),
    500: (_l("系统出错"), _l("系统内部出错，本次操作未完成。请稍后再试；如仍出错请联系管理员。")),
    503: (_l("服务暂不可用"), _l("服务暂时不可用，请稍后再试或联系管理员。")),
}
#: The statuses answered with the error page.
ERROR_CODES = tuple(ERROR_TEXTS)


def _message(exc: HTTPException, code: int) -> str:
    """The text to show: a deliberate description (ours, translated) or the generic one."""
    if isinstance(exc, CSRFError):
        return _("页面已过期或提交无效，未保存任何内容。请重新打开页面后再提交。")
    default = type(exc).description
    description = exc.description
    if description and description != default and code != 500:
        return str(description)
    return str(ERROR_TEXTS[code][1])


def error_page(exc: HTTPException):
    """Render the error page for ``exc`` with its own status code (one of :data:`ERROR_CODES`)."""
    code = exc.code if exc.code in ERROR_TEXTS else 500
    title = str(ERROR_TEXTS[code][0])
    message = _message(exc, code)
    try:
        body = render_template("admin/xinshu_error.html", code=code, title=title, message=message)
    except Exception:
        log.exception("error page for status %s could not be rendered", code)
        return f"{code} {title}\n{message}\n", code, {"Content-Type": "text/plain; charset=utf-8"}
    return body, code


def register_error_pages(app: Flask) -> None:
    """Answer every status in :data:`ERROR_CODES` with the Chinese error page on ``app``."""
    for code in ERROR_CODES:
        app.register_error_handler(code, error_page)
