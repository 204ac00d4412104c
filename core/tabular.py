"""Read the first sheet of an ``.xlsx`` file, or a ``.csv`` file, as rows.

Hardening for files uploaded by schools (security.md §3.2, C1–C5):

* ``defusedxml`` must be installed; openpyxl then refuses XML entity bombs and
  external entities;
* the ZIP central directory is checked before opening: more than
  :data:`MAX_UNCOMPRESSED` bytes declared, or a ratio typical of a zip bomb,
  is refused without decompressing anything;
* read-only mode with ``reset_dimensions()``: a WPS file or a forged
  ``A1:XFD1048576`` dimension neither hides rows nor makes us walk a million
  empty ones; reading stops after :data:`MAX_ROWS` rows and ignores columns
  beyond :data:`MAX_COLUMNS`;
* CSV is read as UTF-8 (with or without BOM) or, failing that, GB18030
  (Excel on Chinese Windows).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import defusedxml  # noqa: F401 - openpyxl uses it when importable
import openpyxl

from xinshu.errors import XinshuError

MAX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_RATIO = 200
MAX_ROWS = 200_000
MAX_COLUMNS = 200


class UnreadableFile(XinshuError):
    """The file cannot be read as a table; the message says why."""


@dataclass
class Table:
    """Header cells and data rows; ``rows`` yields ``(row_number, cells)``."""

    sheet: str
    header: list[str]
    rows: Iterator[tuple[int, list[Any]]]


def read_table(path: Path | str, data: bytes | None = None) -> Table:
    """Open ``path`` (or ``data`` named like ``path``) and return its first table.

    :raises UnreadableFile: wrong type, damaged, encrypted, too large.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadableFile(f"cannot read {path.name}: {exc.strerror}") from exc
    if not data:
        raise UnreadableFile(f"{path.name} is empty (0 bytes)")
    if suffix == ".csv":
        return _read_csv(data)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(data, path.name)
    if suffix in (".xls", ".et"):
        raise UnreadableFile(f"{path.name}: old Excel/WPS format; please save it as .xlsx (另存为 .xlsx)")
    raise UnreadableFile(f"{path.name}: unsupported file type {suffix or '(none)'}; use .xlsx or .csv")


def _read_csv(data: bytes) -> Table:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise UnreadableFile("CSV is neither UTF-8 nor GB18030 text")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise UnreadableFile("the file has no header row")
    rows = ((number, row) for number, row in enumerate(reader, start=2))
    return Table("", header, _limited(rows))


def _read_xlsx(data: bytes, name: str) -> Table:
    buffer = io.BytesIO(data)
    _check_zip(buffer, name)
    try:
        workbook = openpyxl.load_workbook(buffer, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for damaged files
        raise UnreadableFile(f"{name}: not a readable .xlsx file ({type(exc).__name__}: {exc})") from exc
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()
    iterator = sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS)
    try:
        first = next(iterator, None)
    except Exception as exc:
        raise UnreadableFile(f"{name}: cannot read the first sheet ({type(exc).__name__}: {exc})") from exc
    header = [("" if c is None else str(c)).strip() for c in (first or [])]
    while header and header[-1] == "":
        header.pop()
    if not header:
        raise UnreadableFile(f"{name}: the first sheet has no header row")
    rows = ((number, list(row)) for number, row in enumerate(iterator, start=2))
    return Table(sheet.title, header, _limited(rows))


def _check_zip(buffer: io.BytesIO, name: str) -> None:
    if not zipfile.is_zipfile(buffer):
        raise UnreadableFile(f"{name}: not an .xlsx file (not a ZIP package; encrypted or renamed?)")
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as archive:
        infos = archive.infolist()
        declared = sum(info.file_size for info in infos)
        compressed = sum(info.compress_size for info in infos) or 1
        if declared > MAX_UNCOMPRESSED or (declared / compressed > MAX_RATIO and declared > 10 * 1024 * 1024):
            raise UnreadableFile(f"{name}: declares {declared} bytes uncompressed; refused as a possible zip bomb")
    buffer.seek(0)


def _limited(rows: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, list[Any]]]:
    for number, row in rows:
        if number > MAX_ROWS + 1:
            raise UnreadableFile(f"more than {MAX_ROWS} rows")
        yield number, row
