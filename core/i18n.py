"""Translation helpers for labels that are also stored as data.

Some label dictionaries (e.g. :data:`xinshu.referrals.REFERRAL_KINDS`) are
written into case timelines in Chinese, so they must stay plain strings. Their
texts are marked with :func:`N_` (extracted as msgids by ``pybabel extract``,
whose default keywords include ``N_``, but not translated where they are
defined), and the back office shows them through :func:`lazy_labels`, which
translates them into the request's language when rendered.

Catalogues: ``xinshu/translations`` (docs/translations.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from flask_babel import lazy_gettext
from flask_babel.speaklater import LazyString


def N_(text: str) -> str:
    """Mark ``text`` as a msgid without translating it (``gettext_noop``); returns ``text``."""
    return text


def lazy_labels(labels: Mapping[str, str]) -> dict[str, LazyString]:
    """``labels`` (key → Chinese msgid) with each text translated lazily, when shown."""
    return {key: lazy_gettext(text) for key, text in labels.items()}
