"""Safe tabular exports: formula-injection escaping, CSV and XLSX writers, pseudonyms.

Every CSV or XLSX file xinshu writes goes through :func:`escape_cell`: a text
cell whose first character is ``=``, ``+``, ``-``, ``@``, tab, carriage return
or NUL gets a leading single quote, so a spreadsheet shows it as text instead of
running it as a formula (OWASP ASVS 1.2.10; security.md D1, P10). CSV is
RFC 4180 (every field quoted, CRLF line ends) with a UTF-8 byte-order mark so
Excel and WPS open Chinese text correctly. XLSX cells holding text are always
string cells, never formulas.

De-identified exports (security.md A7, D3; REDCap's de-identification) drop
:data:`IDENTIFIER_FIELDS` and name a student only by :func:`pseudonym`, a keyed
hash that cannot be reversed without the key and is stable across exports made
with the same key.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

#: First characters that make a spreadsheet treat a text cell as a formula (ASVS 1.2.10).
DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\0")

#: Fields that identify a student or a person and never appear in a de-identified export.
IDENTIFIER_FIELDS = frozenset(
    {
        "name",
        "student_name",
        "id_number",
        "student_number",
        "school_student_no",
        "birth_date",
        "phone",
        "mobile",
        "address",
        "email",
        "guardian_name",
        "guardian_phone",
    }
)

UTF8_BOM = "\ufeff"


def escape_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text starting with a dangerous character.

    Numbers, dates and None are returned unchanged (a negative *number* is not a formula).
    """
    if isinstance(value, str) and value.startswith(DANGEROUS_PREFIXES):
        return "'" + value
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(escape_cell(value) if isinstance(value, str) else value)


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]], bom: bool = True) -> Iterator[str]:
    """The CSV file as a stream of lines (for a streamed HTTP response).

    :param header: column titles (escaped like any cell).
    :param rows: rows of cell values; text cells are escaped with :func:`escape_cell`.
    :param bom: start with a UTF-8 byte-order mark (Excel/WPS need it for Chinese).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    first = True
    for row in _with_header(header, rows):
        writer.writerow([_text(value) for value in row])
        line = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if first and bom:
            line = UTF8_BOM + line
        first = False
        yield line


def _with_header(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    yield header
    yield from rows


def write_csv(out: IO[str], header: Sequence[str], rows: Iterable[Sequence[Any]], bom: bool = True) -> int:
    """Write an escaped RFC 4180 CSV to ``out``; return the number of data rows."""
    count = -1
    for count, line in enumerate(csv_lines(header, rows, bom=bom)):  # noqa: B007 - count is the result
        out.write(line)
    return max(count, 0)


def write_xlsx(
    out: IO[bytes] | str, header: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "export"
) -> int:
    """Write an XLSX workbook (one sheet, constant memory); return the number of data rows.

    Text cells are escaped with :func:`escape_cell` and stored as string cells.
    """
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31] or "export")
    count = 0
    for index, row in enumerate(_with_header(header, rows)):
        sheet.append([_xlsx_cell(sheet, value) for value in row])
        count = index
    workbook.save(out)
    return count


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    if isinstance(value, str):
        # XML 1.0 cannot hold most control characters: shown as U+FFFD instead of failing the file.
        cell = WriteOnlyCell(sheet, value=ILLEGAL_CHARACTERS_RE.sub("\ufffd", escape_cell(value)))
        cell.data_type = "s"  # never a formula, whatever the text looks like
        return cell
    return value


def pseudonym(student_id: int, key: bytes | str) -> str:
    """A stable keyed hash naming a student in de-identified exports (HMAC-SHA256, 20 hex digits).

    :param student_id: the student's database id.
    :param key: the export key (the application's secret key or a per-study key).
    """
    secret = key.encode() if isinstance(key, str) else key
    return hmac.new(secret, f"xinshu-student:{int(student_id)}".encode(), hashlib.sha256).hexdigest()[:20]


def deidentify(record: dict[str, Any], key: bytes | str, id_field: str = "student_id") -> dict[str, Any]:
    """A copy of ``record`` without :data:`IDENTIFIER_FIELDS` and with ``id_field`` replaced by its pseudonym."""
    clean = {name: value for name, value in record.items() if name not in IDENTIFIER_FIELDS}
    if id_field in clean and clean[id_field] is not None:
        clean[id_field] = pseudonym(clean[id_field], key)
    return clean
