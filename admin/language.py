"""Template helpers for the interface language (Simplified Chinese or English).

The locale is chosen by :func:`xinshu.app.select_locale` (``?lang=`` remembered
in the session, Simplified Chinese by default). These helpers are Jinja
globals of the application (registered by :func:`xinshu.admin.init_admin`), so
the back office, the login page and the report pages all use them.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, request
from flask_babel import get_locale

#: ``?lang=`` values of the language switch (see ``xinshu.app.LOCALES``).
SWITCH_LANGS = ("zh", "en")


def html_lang() -> str:
    """The ``<html lang>`` of the request's locale: ``en`` or ``zh-CN``."""
    locale = get_locale()
    return "en" if locale is not None and locale.language == "en" else "zh-CN"


def lang_url(lang: str) -> str:
    """The current page (path and query) with ``lang`` set, e.g. ``/login?next=%2Fadmin%2F&lang=en``.

    :param lang: one of :data:`SWITCH_LANGS`.
    :raises ValueError: another value.
    """
    if lang not in SWITCH_LANGS:
        raise ValueError(f"unknown language switch {lang!r}")
    args = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    return f"{request.path}?{urlencode([*args, ('lang', lang)])}"


def register_template_globals(app: Flask) -> None:
    """Make :func:`html_lang` and :func:`lang_url` available to every template of ``app``."""
    app.add_template_global(html_lang, "html_lang")
    app.add_template_global(lang_url, "lang_url")
