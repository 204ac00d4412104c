"""Roster columns: header aliases and the parsing of each cell.

Each parser returns the clean value or raises :class:`FieldError` with a
Chinese message for the school's staff. ID numbers (居民身份证号) are checked
with python-stdnum's ``stdnum.cn.ric`` (GB 11643-1999: length, birth date,
area code, ISO 7064 MOD 11-2 check character) and kept as exact strings; a
number typed into a numeric cell has already lost digits in Excel and is
refused (school-context.md §1.3, §1.4).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from flask_babel import gettext as _
from stdnum import exceptions as stdnum_errors
from stdnum.cn import ric

from xinshu.grades import parse_grade


class FieldError(ValueError):
    """A cell's value is not acceptable; the message is shown to the user."""


HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "学生姓名"),
    "gender": ("性别",),
    "student_number": ("全国学籍号", "学籍号", "学籍辅号", "省级电子注册学籍号"),
    "id_number": ("身份证号", "身份证件号", "身份证号码", "居民身份证号", "证件号码"),
    "birth_date": ("出生日期", "出生年月日"),
    "grade": ("年级",),
    "class": ("班级", "班别", "班"),
    "school_student_no": ("校内学号", "学号"),
    "school_code": ("学校代码", "学校标识码"),
}
REQUIRED = ("name", "gender", "grade", "class")
IDENTIFIERS = ("id_number", "student_number", "school_student_no")
LABELS = {field: aliases[0] for field, aliases in HEADER_ALIASES.items()}


def normalise_header(text: str) -> str:
    """Header text without spaces, full-width forms or a trailing ``*``."""
    return unicodedata.normalize("NFKC", text).replace(" ", "").rstrip("*")


def map_headers(header: list[str]) -> tuple[dict[str, int], list[str]]:
    """Return ``{field: column index}`` and a list of problems.

    A field named by two columns (e.g. 学籍号 and 全国学籍号) is a problem.
    """
    lookup = {alias: field for field, aliases in HEADER_ALIASES.items() for alias in aliases}
    found: dict[str, int] = {}
    problems = []
    for index, text in enumerate(header):
        field = lookup.get(normalise_header(text))
        if field is None:
            continue
        if field in found:
            problems.append(
                _(
                    "列“%(first)s”和“%(second)s”重复表示%(field)s",
                    first=header[found[field]],
                    second=text,
                    field=LABELS[field],
                )
            )
        found.setdefault(field, index)
    for field in REQUIRED:
        if field not in found:
            problems.append(_("缺少必需的列“%(column)s”", column=LABELS[field]))
    if not any(field in found for field in IDENTIFIERS):
        problems.append(_("至少需要“身份证号”“学籍号”“校内学号”中的一列"))
    return found, problems


def text_cell(value: Any) -> str:
    """A cell as clean text: NFKC (full-width digits → ASCII), trimmed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return unicodedata.normalize("NFKC", str(value)).strip()


def _no_formula(text: str) -> str:
    if text.startswith("="):
        raise FieldError(_("单元格是公式，请填写值"))
    return text


def parse_name(value: Any) -> str:
    text = _no_formula(text_cell(value))
    if not text:
        raise FieldError(_("姓名不能为空"))
    if len(text) > 50:
        raise FieldError(_("姓名超过50个字符"))
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise FieldError(_("姓名含有控制字符或不可见字符"))
    return text


def parse_gender(value: Any) -> str:
    text = text_cell(value).upper()
    mapping = {"男": "M", "1": "M", "M": "M", "女": "F", "2": "F", "F": "F"}
    if text not in mapping:
        raise FieldError(_("性别“%(value)s”无法识别，应为 男/女 或 1/2", value=text))
    return mapping[text]


def parse_id_number(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise FieldError(_("身份证号保存为数字，Excel 已丢失末几位；请将该列设为“文本”格式后重新填写"))
    text = text_cell(value).upper()
    if not text:
        return None
    try:
        return ric.validate(text)
    except stdnum_errors.InvalidLength:
        raise FieldError(_("身份证号应为18位，实为%(length)s位", length=len(text))) from None
    except stdnum_errors.InvalidChecksum:
        raise FieldError(_("身份证号校验码错误")) from None
    except stdnum_errors.InvalidFormat:
        raise FieldError(_("身份证号格式错误（前17位应为数字）")) from None
    except stdnum_errors.InvalidComponent:
        raise FieldError(_("身份证号中的出生日期或地区代码无效")) from None


def parse_student_number(value: Any) -> str | None:
    """全国学籍号: ``G``/``J`` + 18 characters (checksummed like an ID),
    ``L`` + 18 digits (temporary, not checksummed), or a 10–19 digit local
    number (school-context.md §1.2)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(str(int(value))) > 15:
        raise FieldError(_("学籍号保存为数字，Excel 已丢失末几位；请将该列设为“文本”格式"))
    text = text_cell(value).upper()
    if not text:
        return None
    if text[0] in "GJ":
        try:
            ric.validate(text[1:])
        except stdnum_errors.ValidationError:
            raise FieldError(
                _("%(letter)s字头学籍号后18位应为有效的身份证号码格式（校验码或日期错误）", letter=text[0])
            ) from None
        return text
    if re.fullmatch(r"L\d{18}", text) or re.fullmatch(r"\d{10,19}", text):
        return text
    raise FieldError(_("学籍号格式错误（应为 G/J/L 开头加18位，或10–19位数字）"))


def parse_school_student_no(value: Any) -> str | None:
    text = _no_formula(text_cell(value))
    if len(text) > 32:
        raise FieldError(_("校内学号超过32个字符"))
    return text or None


def parse_birth_date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = text_cell(value)
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%Y年%m月%d日"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise FieldError(_("出生日期“%(value)s”格式错误，应为 YYYY-MM-DD", value=text))


def parse_grade_cell(value: Any) -> int:
    try:
        return parse_grade(value)
    except ValueError:
        raise FieldError(_("年级“%(value)s”无法识别（如 七年级、初一、高二）", value=text_cell(value))) from None


def parse_class(value: Any) -> int:
    """Class number from ``1班``, ``(1)班``, ``七年级3班``, ``3``."""
    text = text_cell(value)
    digits = re.findall(r"\d+", text.split("年级")[-1])
    if not digits:
        raise FieldError(_("班级“%(value)s”中没有班号（如 1班、(3)班）", value=text))
    number = int(digits[-1])
    if not 1 <= number <= 99:
        raise FieldError(_("班号%(number)s超出1–99", number=number))
    return number


PARSERS = {
    "name": parse_name,
    "gender": parse_gender,
    "id_number": parse_id_number,
    "student_number": parse_student_number,
    "school_student_no": parse_school_student_no,
    "birth_date": parse_birth_date,
    "grade": parse_grade_cell,
    "class": parse_class,
    "school_code": text_cell,
}


def cross_check(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Gender and birth date must agree with the ID number (GB 11643-1999:
    digits 7–14 are the birth date; the 17th digit is odd for men)."""
    problems = []
    id_number = record.get("id_number")
    if not id_number:
        return problems
    id_gender = "M" if int(id_number[16]) % 2 else "F"
    if record.get("gender") and record["gender"] != id_gender:
        problems.append(("gender", _("性别与身份证号第17位不一致")))
    birth = ric.get_birth_date(id_number)
    if record.get("birth_date") and record["birth_date"] != birth:
        problems.append(("birth_date", _("出生日期与身份证号不一致（身份证为 %(date)s）", date=birth.isoformat())))
    if record.get("birth_date") is None:
        record["birth_date"] = birth
    return problems
