"""Exceptions shared across xinshu."""

from __future__ import annotations

from dataclasses import dataclass

from flask_babel import gettext


class XinshuError(Exception):
    """Base class for errors a user can act on (printed without a traceback)."""


class StartupError(XinshuError):
    """The application cannot start: duplicate plugin names, bad config."""


@dataclass(frozen=True)
class DeclarationError:
    """One problem in one declaration file.

    ``line`` is 1-based (0 when the file could not be read at all); ``path`` is
    the key path inside the document, e.g. ``items[8].options[2].value`` (empty
    for the document root).
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class DeclarationsInvalid(XinshuError):
    """Raised when a set of declarations has errors; carries all of them."""

    def __init__(self, errors: list[DeclarationError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class RowError:
    """One problem in one row of an imported file.

    ``row`` is the 1-based spreadsheet row (the header is row 1) and
    ``column`` the header text as written in the file, or "" for the row.
    """

    row: int
    column: str
    message: str
    sheet: str = ""

    def __str__(self) -> str:
        where = f"{self.sheet}!" if self.sheet else ""
        if self.column:
            return where + gettext(
                "第%(row)s行 列“%(column)s”: %(message)s", row=self.row, column=self.column, message=self.message
            )
        return where + gettext("第%(row)s行: %(message)s", row=self.row, message=self.message)


class ImportRejected(XinshuError):
    """An import was refused as a whole; nothing was written.

    :ivar errors: every :class:`RowError` found, in file order.
    """

    def __init__(self, errors: list[RowError], summary: str = ""):
        self.errors = errors
        head = summary or f"import rejected: {len(errors)} error(s), nothing written"
        super().__init__(head + "\n" + "\n".join(str(e) for e in errors[:200]))
