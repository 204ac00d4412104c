"""Log capture and scanning for log hygiene (security.md I5).

:class:`LogCapture` collects every record the application's loggers emit (``xinshu``
and the Flask extensions at DEBUG, everything else at its own level); :func:`scan`
finds ID numbers, mobile numbers, seeded names, passwords and the secret key in text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sec_world import ID_NUMBER, MOBILE, PASSWORD, SECRET_KEY

#: Loggers lowered to DEBUG while capturing (the application and the web stack). SQLAlchemy's
#: engine logger is left alone: at INFO it would echo every statement with its parameters.
DEBUG_LOGGERS = ("xinshu", "flask_admin", "flask_wtf", "flask_login", "flask_babel", "werkzeug", "waitress")


class LogCapture(logging.Handler):
    """A handler on the root logger keeping every record; a context manager."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogCapture:
        for name in DEBUG_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def texts(self) -> list[str]:
        """Each record as the text a log file would hold (message, exception and stack)."""
        out = []
        for record in self.records:
            parts = [record.name, record.getMessage()]
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                parts.append(record.stack_info)
            out.append(" ".join(parts))
        return out


def scan(text: str, names: Iterable[str]) -> list[str]:
    """What of the identifiers and secrets ``text`` holds (empty: nothing)."""
    found = [f"id:{m}" for m in ID_NUMBER.findall(text)] + [f"mobile:{m}" for m in MOBILE.findall(text)]
    found += [f"name:{name}" for name in names if name and name in text]
    if SECRET_KEY in text:
        found.append("secret key")
    if PASSWORD in text:
        found.append("password")
    return found


__all__ = ["DEBUG_LOGGERS", "LogCapture", "scan"]
