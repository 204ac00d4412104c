"""The guardian notice of a campaign (security.md J5; 儿童个人信息网络保护规定 Art. 10).

:func:`consent_notice` builds the guardian notice of a campaign: purpose, legal basis,
data collected, storage location, retention, security measures, consequences of
refusal, the correction/deletion channel, the complaint channel and a refusal option,
from the campaign's fields and a Python template (:data:`NOTICE_TEMPLATE`);
:func:`notice_text` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from xinshu.campaigns import LEGAL_BASES, closing_text, local_text
from xinshu.models import Campaign


@dataclass(frozen=True)
class NoticeSection:
    """One heading of the notice; ``id`` is used as the HTML element id (``notice-<id>``)."""

    id: str
    heading: str
    text: str


#: Settings for the notice, from the app/CLI config or ``XINSHU_PRIVACY_<NAME>``.
NOTICE_SETTINGS = ("PRIVACY_STORAGE_LOCATION", "PRIVACY_CONTACT", "PRIVACY_OFFICER", "PRIVACY_COMPLAINTS")

_BASIS_TEXT = {
    "consent": _l(
        "监护人单独同意（《个人信息保护法》第二十九条、第三十一条）。未满十四周岁的学生，须经监护人同意后方可参加。"
    ),
    "statutory_duty": _l("为履行法定职责所必需（《个人信息保护法》第十三条第一款第三项）。文件依据：{ref}"),
}
_REFUSAL_TEXT = {
    "consent": _l(
        "不同意不影响学生正常的学习和在校的任何权益，学生不参加本次测评，学校不会收集其作答信息。"
        "您可以随时撤回同意；撤回后不再收集新的作答，已提交的作答可按下述途径申请删除。"
        "学生如有心理困扰，学校仍会按常规提供心理辅导。"
    ),
    "statutory_duty": _l(
        "本次测评依据法定职责开展，不以监护人同意为前提；对处理有异议的，可通过下述途径提出，"
        "学校将予以答复。拒绝或不配合不影响学生正常的学习和在校的任何权益。"
    ),
}
_OPTION_TEXT = {
    "consent": _l("请在回执上勾选：□ 同意孩子参加本次测评　□ 不同意孩子参加本次测评。不作选择视为不同意。"),
    "statutory_duty": _l("请在回执上勾选：□ 已知悉　□ 有异议（请写明理由）。"),
}
#: The notice, heading by heading: ``(id, heading, text)``; ``{placeholders}`` are filled from the
#: campaign and the settings (:func:`consent_notice`).
NOTICE_TEMPLATE: tuple[tuple[str, Any, Any], ...] = (
    ("purpose", _l("处理目的"), "{purpose}"),
    ("legal_basis", _l("法律依据"), "{basis}"),
    (
        "data",
        _l("收集的信息"),
        _l(
            "量表作答：{instruments}；由作答计算的得分、常模分和预警等级；"
            "学校、年级、班级、性别和出生日期（用于核对身份、判断年龄和常模比较）。不收集与本目的无关的信息。"
        ),
    ),
    ("storage", _l("存储地点"), "{storage}"),
    (
        "retention",
        _l("保存期限"),
        _l(
            "作答和得分自提交之日起保存{retention_days}天，到期后删除；学生处于尚未结束的危机干预个案中的，"
            "在个案结束后删除。测评时间：{opens}至{closes}（北京时间）。"
        ),
    ),
    (
        "security",
        _l("安全措施"),
        _l(
            "按市、区、学校、班级分级授权，工作人员只能查看职责范围内的学生；查看和导出均记录审计日志，"
            "日志保存不少于六个月；传输加密；研究用数据去除姓名、身份证号等标识后以代号提供；"
            "有专人负责个人信息保护，发生安全事件时依法告知并报告。"
        ),
    ),
    ("refusal", _l("拒绝的后果"), "{refusal}"),
    (
        "rights",
        _l("更正和删除的途径"),
        _l(
            "您可以查阅、更正孩子的信息，或要求删除：请向{contact}提出，学校自收到之日起15个工作日内办理并答复"
            "（《未成年人保护法》第七十二条；依法须保留的除外）。"
        ),
    ),
    ("complaints", _l("投诉渠道"), "{complaints}"),
    ("officer", _l("个人信息保护负责人"), "{officer}"),
    ("option", _l("拒绝选项"), "{option}"),
)


def notice_settings(config: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The notice settings: config keys of :data:`NOTICE_SETTINGS`, else ``XINSHU_<KEY>``, else defaults."""
    config = config or {}
    defaults = {
        "PRIVACY_STORAGE_LOCATION": _("中华人民共和国境内，由本市教育局管理的服务器，不向境外提供"),
        "PRIVACY_CONTACT": _("学校心理教师、德育主任或校长（书面、电话或当面均可）"),
        "PRIVACY_OFFICER": _("学校校长（个人信息保护负责人），可通过学校办公室联系"),
        "PRIVACY_COMPLAINTS": _("学校办公室；对学校答复不满意的，可向所在区教育局投诉"),
    }
    return {
        key: str(config.get(key) or os.environ.get(f"XINSHU_{key}") or defaults[key]).strip() for key in NOTICE_SETTINGS
    }


def consent_notice(
    campaign: Campaign, instrument_titles: Mapping[str, str] | None = None, settings: Mapping[str, str] | None = None
) -> list[NoticeSection]:
    """The guardian notice of ``campaign`` as headed sections (see :data:`NOTICE_TEMPLATE`).

    :param instrument_titles: instrument id → title (default: the ids).
    :param settings: from :func:`notice_settings` (default: from the environment).
    """
    settings = dict(settings or notice_settings())
    titles = instrument_titles or {}
    basis = campaign.legal_basis if campaign.legal_basis in LEGAL_BASES else "consent"
    values = {
        "purpose": campaign.purpose or "",
        "basis": str(_BASIS_TEXT[basis]).format(ref=campaign.legal_basis_ref or ""),
        "instruments": _("、").join(titles.get(i, i) for i in campaign.instruments or []) or "—",
        "storage": settings["PRIVACY_STORAGE_LOCATION"],
        "retention_days": campaign.retention_days,
        "opens": local_text(campaign.opens_at),
        "closes": closing_text(campaign.closes_at),
        "refusal": str(_REFUSAL_TEXT[basis]),
        "contact": settings["PRIVACY_CONTACT"],
        "complaints": settings["PRIVACY_COMPLAINTS"],
        "officer": settings["PRIVACY_OFFICER"],
        "option": str(_OPTION_TEXT[basis]),
    }
    # Only the template is formatted; campaign text is substituted as data, never parsed.
    return [NoticeSection(key, str(heading), str(text).format(**values)) for key, heading, text in NOTICE_TEMPLATE]


def notice_text(campaign: Campaign, sections: list[NoticeSection]) -> str:
    """The notice as plain text (for printing or the CLI)."""
    lines = [_("%(name)s（%(code)s）监护人告知书", name=campaign.name, code=campaign.code), ""]
    for number, section in enumerate(sections, 1):
        lines += [f"{number}. {section.heading}", f"   {section.text}", ""]
    return "\n".join(lines)
