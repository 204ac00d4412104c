"""The de-identified research export of a campaign (security.md P2, D3).

:func:`write_research_export` writes one row per score with the student's keyed pseudonym
(:func:`xinshu.exports.pseudonym`, key :func:`pseudonym_key`), school code, grade,
gender, instrument, scale, raw score, T score, percentile, band and the Beijing date
of submission; never a name, ID number, 学籍号, phone, address or birth date. Grade
and school are the student's current ones. Small groups (one school, grade and
gender with few students) can still single a child out: share the file only under
a data-use agreement. Each export writes an audit row with its row count.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping
from typing import IO, Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from xinshu import audit
from xinshu.campaigns import CampaignError, to_local
from xinshu.models import Campaign, OrgUnit, Response, Score, Student, User

#: Columns of the research export: one row per score, no name, ID, phone, address or birth date.
RESEARCH_COLUMNS = (
    ("pseudonym", _l("学生代号")),
    ("school_code", _l("学校代码")),
    ("grade", _l("年级")),
    ("gender", _l("性别")),
    ("instrument", _l("量表")),
    ("scale", _l("分量表")),
    ("raw_score", _l("原始分")),
    ("t_score", _l("T分")),
    ("percentile", _l("百分位")),
    ("band", _l("等级")),
    ("submitted_date", _l("提交日期")),
)
RESEARCH_FORMATS = ("csv", "xlsx")


def pseudonym_key(config: Mapping[str, Any] | None = None) -> str | bytes:
    """The key of export pseudonyms: ``PSEUDONYM_KEY`` / ``XINSHU_PSEUDONYM_KEY``, else the secret key
    (``SECRET_KEY`` / ``XINSHU_SECRET_KEY``). The same key gives the same pseudonyms in every export.

    :raises CampaignError: neither is set (a random key would make pseudonyms change between exports).
    """
    config = config or {}
    for value in (
        config.get("XINSHU_PSEUDONYM_KEY"),
        config.get("PSEUDONYM_KEY"),
        os.environ.get("XINSHU_PSEUDONYM_KEY"),
        config.get("SECRET_KEY"),
        os.environ.get("XINSHU_SECRET_KEY"),
    ):
        if value:
            return value if isinstance(value, bytes) else str(value)
    raise CampaignError(_("请设置 XINSHU_PSEUDONYM_KEY（或 XINSHU_SECRET_KEY），去标识化导出的代号由它生成"))


def research_rows(
    session: Session, campaign: Campaign, key: str | bytes, students: Select | None = None
) -> Iterator[list]:
    """The export's rows (see :data:`RESEARCH_COLUMNS`), one per score of the campaign's responses.

    :param key: the pseudonym key (:func:`pseudonym_key`).
    :param students: a ``select`` of student ids to restrict to (the exporting user's scope); None: all.
    """
    from xinshu.exports import pseudonym

    stmt = (
        select(
            Response.student_id,
            OrgUnit.code,
            Student.grade_level,
            Student.gender,
            Response.instrument_id,
            Score.scale,
            Score.raw_score,
            Score.t_score,
            Score.percentile,
            Score.band,
            Response.submitted_at,
        )
        .join(Response, Response.id == Score.response_id)
        .join(Student, Student.id == Response.student_id)
        .join(OrgUnit, OrgUnit.id == Student.school_id)
        .where(Response.campaign_id == campaign.id)
        .order_by(Response.id, Score.id)
    )
    if students is not None:
        stmt = stmt.where(Response.student_id.in_(students))
    for row in session.execute(stmt).yield_per(1000):
        student_id, school, grade, gender, instrument, scale, raw, t_score, percentile, band, submitted = row
        day = to_local(submitted).date().isoformat()
        yield [
            pseudonym(student_id, key),
            school,
            grade,
            gender,
            instrument,
            scale,
            raw,
            t_score,
            percentile,
            band,
            day,
        ]


def write_research_export(
    session: Session,
    campaign: Campaign,
    out: IO[bytes],
    fmt: str,
    key: str | bytes,
    actor: User | str,
    students: Select | None = None,
) -> int:
    """Write the de-identified export of ``campaign`` to ``out`` and add its audit row
    (action ``export``, ``deidentified: true``, the row count) to ``session``; the caller commits,
    and must not hand the file out if the commit fails.

    :param fmt: ``csv`` (UTF-8 with BOM, RFC 4180) or ``xlsx``; cells escaped against formulas.
    :return: the number of data rows.
    :raises CampaignError: an unknown format.
    """
    from xinshu.exports import write_csv, write_xlsx

    if fmt not in RESEARCH_FORMATS:
        raise CampaignError(_("导出格式须为 csv 或 xlsx"))
    header = [str(label) for _name, label in RESEARCH_COLUMNS]
    rows = research_rows(session, campaign, key, students)
    if fmt == "csv":
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        count = write_csv(text, header, rows)
        text.detach()
    else:
        count = write_xlsx(out, header, rows, title=campaign.code)
    detail = {"deidentified": True, "rows": count, "format": fmt, "campaign": campaign.code}
    detail["scoped"] = students is not None
    audit.record(session, "export", "campaign", campaign.id, detail=detail, actor=actor)
    return count
