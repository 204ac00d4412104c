"""The forms of the privacy pages (Flask-WTF, CSRF token): a campaign, a guardian's decision, a
correction or deletion request, and the choice of a research export; with the labels of legal
bases and guardian decisions the pages show.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from xinshu.admin.formatting import GENDER_LABELS
from xinshu.campaigns import MAX_RETENTION_DAYS
from xinshu.data_requests import CHANNELS, KINDS
from xinshu.research_export import RESEARCH_FORMATS

BASIS_LABELS = {"consent": _l("监护人同意"), "statutory_duty": _l("法定职责")}
DECISION_LABELS = {"granted": _l("同意"), "refused": _l("拒绝"), "withdrawn": _l("撤回")}


def options(pairs: Any) -> list[SelectChoice]:
    """WTForms choices from ``(value, label)`` pairs or a mapping (labels may be lazy strings)."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return [SelectChoice(value, label) for value, label in items]


class CampaignForm(FlaskForm):
    """Create or edit a campaign; window bounds in Beijing time."""

    code = StringField(_l("活动代码"), validators=[DataRequired(), Length(max=64)])
    name = StringField(_l("活动名称"), validators=[DataRequired(), Length(max=200)])
    org_unit = SelectField(_l("面向单位"), coerce=int, validators=[InputRequired()])
    instruments = SelectMultipleField(_l("量表"), validators=[DataRequired(message=_l("请至少选择一个量表"))])
    opens = StringField(_l("开始（北京时间，YYYY-MM-DD 或 YYYY-MM-DD HH:MM）"), validators=[DataRequired()])
    closes = StringField(_l("结束（含当日；北京时间）"), validators=[DataRequired()])
    legal_basis = RadioField(_l("法律依据"), choices=options(BASIS_LABELS), default="consent")
    legal_basis_ref = TextAreaField(_l("文件依据（法定职责时必填，如通知文号）"), validators=[Length(max=4000)])
    purpose = TextAreaField(_l("处理目的"), validators=[DataRequired(), Length(max=4000)])
    retention_days = IntegerField(
        _l("保存期限（天）"), default=3 * 365, validators=[InputRequired(), NumberRange(1, MAX_RETENTION_DAYS)]
    )
    submit = SubmitField(_l("保存"))


class ConsentForm(FlaskForm):
    """A guardian's decision for a campaign."""

    student = StringField(_l("学生（系统编号、学籍号或校内学号）"), validators=[DataRequired(), Length(max=64)])
    decision = RadioField(_l("监护人意见"), choices=options(DECISION_LABELS), validators=[InputRequired()])
    relation = SelectField(_l("与学生关系"), validators=[InputRequired()])
    evidence = TextAreaField(
        _l("凭证（如“纸质回执存德育处”；请勿填写姓名、身份证号）"), validators=[DataRequired(), Length(max=4000)]
    )
    at = StringField(_l("监护人作出决定的时间（北京时间，可空）"), validators=[Optional(), Length(max=19)])
    submit = SubmitField(_l("登记"))


class RequestForm(FlaskForm):
    """A correction or deletion request as received."""

    student = StringField(_l("学生（系统编号、学籍号或校内学号）"), validators=[DataRequired(), Length(max=64)])
    kind = RadioField(_l("请求类型"), choices=options(KINDS), validators=[InputRequired()])
    relation = SelectField(_l("请求人"), validators=[InputRequired()])
    channel = SelectField(_l("受理渠道"), choices=options(CHANNELS), validators=[InputRequired()])
    details = TextAreaField(_l("请求内容（请勿填写身份证号）"), validators=[Length(max=4000)])
    new_name = StringField(_l("更正后的姓名"), validators=[Optional(), Length(max=100)])
    new_gender = SelectField(
        _l("更正后的性别"), choices=options([("", "—"), *GENDER_LABELS.items()]), validators=[Optional()]
    )
    new_birth_date = StringField(_l("更正后的出生日期（YYYY-MM-DD）"), validators=[Optional(), Length(max=10)])
    new_class = SelectField(_l("更正后的班级"), coerce=int, validators=[Optional()])
    submit = SubmitField(_l("受理"))


class ExportForm(FlaskForm):
    """Choose the campaign and the file format of a research export."""

    campaign = SelectField(_l("测评活动"), coerce=int, validators=[InputRequired()])
    fmt = RadioField(_l("格式"), choices=options([(f, f.upper()) for f in RESEARCH_FORMATS]), default="csv")
    submit = SubmitField(_l("导出"))
