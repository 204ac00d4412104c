"""Labels and column formatters for the back office.

Every formatter escapes what it shows: HTML is built only with
:class:`markupsafe.Markup` templates, which escape their arguments. Times are
stored as naive UTC and shown in Asia/Shanghai (UTC+8).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from flask import current_app
from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms.fields.choices import SelectChoice

from xinshu.admin.access import may
from xinshu.models import LevelChange
from xinshu.norms import t_display

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991

ROLE_LABELS = {
    "bureau_admin": _l("市教育局管理员"),
    "district_admin": _l("区教育局管理员"),
    "principal": _l("校长"),
    "moral_education_director": _l("德育主任"),
    "psychology_teacher": _l("心理教师"),
    "class_teacher": _l("班主任"),
}
ORG_KIND_LABELS = {
    "city": _l("市"),
    "district": _l("区"),
    "school": _l("学校"),
    "grade": _l("年级"),
    "class": _l("班级"),
}
CASE_STATE_LABELS = {
    "monitoring": _l("数据监测"),
    "warned": _l("已预警"),
    "interviewing": _l("调研访谈"),
    "planning": _l("制定方案"),
    "intervening": _l("干预实施"),
    "follow_up": _l("跟踪随访"),
    "closed": _l("已结案"),
    "transferred": _l("已转出"),
}
WARNING_STATUS_LABELS = {
    "open": _l("未处理"),
    "acknowledged": _l("已确认"),
    "superseded": _l("已升级取代"),
    "closed": _l("已关闭"),
}
NOTIFICATION_STATUS_LABELS = {"pending": _l("待发送"), "sent": _l("已发送"), "dead": _l("无法送达")}
GENDER_LABELS = {"M": _l("男"), "F": _l("女")}
JUDGEMENT_KIND_LABELS = {"confirm": _l("确认"), "adjust": _l("调整"), "override": _l("人工覆盖")}
LEVEL_SOURCE_LABELS = {"rules": _l("规则"), "person": _l("人工")}
#: Shown instead of a note the user may not read.
HIDDEN_TEXT = _l("（无权查看）")


def choices(labels: dict[str, str]) -> list[tuple[str, str]]:
    return list(labels.items())


def select_choices(labels: Mapping[str, Any]) -> list[SelectChoice]:
    """WTForms choices from ``labels`` (value → label, labels may be lazy translations).

    A plain ``dict`` of lazy labels is not WTForms' shorthand (``dict[str, str]``) and
    would be read as option groups.
    """
    return [SelectChoice(value, label) for value, label in labels.items()]


def local_time(value: dt.datetime | None) -> str:
    """A stored naive-UTC timestamp as Asia/Shanghai ``YYYY-MM-DD HH:MM``."""
    if value is None:
        return ""
    return value.replace(tzinfo=dt.UTC).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def _datetime_formatter(view, value: dt.datetime, name: str) -> str:
    return local_time(value)


TYPE_FORMATTERS = {**DEFAULT_FORMATTERS, dt.datetime: _datetime_formatter}


def current_services():
    return current_app.extensions["xinshu"]


def level_badge(level: int | None) -> Markup:
    """A level as a badge in its declared colour, e.g. ``4 非常严重``."""
    if level is None:
        return Markup("")
    try:
        definition = current_services().declarations.levels.get(level)
    except KeyError:
        return Markup("<span class='badge badge-secondary'>{}</span>").format(level)
    return Markup("<span class='badge' style='background-color: {}; color: #000'>{} {}</span>").format(
        definition.colour, level, definition.name.get("zh", definition.key)
    )


def level_text(level: int | None) -> str:
    """A level as plain text, e.g. ``3 严重`` (``—`` for none)."""
    if level is None:
        return "—"
    try:
        return f"{level} {current_services().declarations.levels.get(level).name.get('zh', '')}".strip()
    except KeyError:
        return str(level)


def _rule_explain(rule_id: str) -> str:
    for ruleset in current_services().declarations.rulesets.values():
        for rule in ruleset.rules:
            if rule.id == rule_id:
                return rule.explain.get("zh") or next(iter(rule.explain.values()), "")
    return ""


def _value_text(value: Any) -> str:
    if value is True:
        return _("是")
    if value is False:
        return _("否")
    if value is None:
        return _("无")
    return str(value)


#: Shown instead of the item-level values of a warning's inputs to a user without ``answers``.
ITEM_INPUTS_HIDDEN = _l("（逐题作答需查阅权限）")


def is_item_input(key: Any) -> bool:
    """True when an input key of a fired rule reveals an item answer: ``<instrument>:item:<item>``,
    or a critical-item flag (``…:flag:critical:<item>``, ``…:flag:critical_missing:<item>``,
    legacy ``critical:<item>``), which says what was answered to one item."""
    parts = str(key).split(":")
    return "item" in parts[1:-1] or any(part in ("critical", "critical_missing") for part in parts[:-1])


def explain_inputs(fired: Iterable[Any] | None, show_items: bool = True) -> Markup:
    """The fired rules of a warning as a list: rule, level, reason and the values read.

    :param show_items: show item-level values (:func:`is_item_input`); without it they are
        replaced by :data:`ITEM_INPUTS_HIDDEN` (the viewer lacks the ``answers`` capability).
    """
    items = []
    for entry in fired or []:
        if not isinstance(entry, dict):
            items.append(Markup("<li>{}</li>").format(_value_text(entry)))
            continue
        rule_id = str(entry.get("rule_id", ""))
        reason = _rule_explain(rule_id)
        values = entry.get("inputs") or {}
        read = _read_text(values, show_items) if isinstance(values, dict) else ""
        code = Markup("<code>{}</code>").format(rule_id)
        rule = escape(_("规则 %(rule)s（%(level)s级）")) % {"rule": code, "level": entry.get("level", "?")}
        items.append(
            Markup("<li>{}{}{}</li>").format(
                rule,
                _("：%(reason)s", reason=reason) if reason else "",
                _("。依据：%(values)s", values=read) if read else "",
            )
        )
    return Markup("<ul class='mb-0 pl-3'>{}</ul>").format(Markup("").join(items))


def _read_text(values: Mapping[str, Any], show_items: bool) -> str:
    shown = [f"{key} = {_value_text(val)}" for key, val in values.items() if show_items or not is_item_input(key)]
    if len(shown) < len(values):
        shown.append(str(ITEM_INPUTS_HIDDEN))
    return _("；").join(shown)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> Markup:
    head = Markup("").join(Markup("<th>{}</th>").format(h) for h in headers)
    body = Markup("").join(
        Markup("<tr>{}</tr>").format(Markup("").join(Markup("<td>{}</td>").format(c) for c in row)) for row in rows
    )
    return Markup(
        "<table class='table table-sm table-bordered mb-0'><thead><tr>{}</tr></thead><tbody>{}</tbody></table>"
    ).format(head, body)


def fmt_level(view, context, model, name) -> Markup:
    return level_badge(getattr(model, name))


def fmt_role(view, context, model, name) -> str:
    role = getattr(model, name)
    return ROLE_LABELS.get(role, role or "")


def _score_parts(response) -> list[tuple[str, str, str, str]]:
    parts = []
    for score in sorted(response.scores, key=lambda s: s.scale):
        raw = "—" if score.raw_score is None else f"{score.raw_score:g}"
        band = score.band or (_("无效") if not score.valid else "—")
        norm = ""
        if score.t_score is not None:
            norm = f" T={t_display(score.t_score)}"
        if score.percentile is not None:
            norm += f" PR={score.percentile:.0f}"
        parts.append((score.scale, raw, band, norm))
    return parts


def scores_text(response) -> str:
    """A response's scores as plain text, e.g. ``total=2/high T=55``."""
    return "; ".join(f"{scale}={raw}/{band}{norm}" for scale, raw, band, norm in _score_parts(response))


def fmt_scores(view, context, model, name) -> Markup:
    parts = [
        Markup("<span class='text-nowrap'>{}={}/{}{}</span>").format(scale, raw, band, norm)
        for scale, raw, band, norm in _score_parts(model)
    ]
    return Markup("; ").join(parts)


def fmt_inputs(view, context, model, name) -> Markup:
    """A warning's fired rules (:func:`explain_inputs`); item-level values only with ``answers``
    on the warning's student (wrap it in ``guarded("results", ...)`` for the scale-level rest)."""
    return explain_inputs(model.inputs, show_items=may(model.student, "answers"))


def fmt_tasks(view, context, model, name, roles: Iterable[str] | None = None) -> Markup:
    """The case's plan tasks as a table; with ``roles``, only tasks owned by one of them."""
    rows = [
        (
            task.title,
            ROLE_LABELS.get(task.owner_role, task.owner_role),
            CASE_STATE_LABELS.get(task.step, task.step),
            task.category,
            local_time(task.due_at),
            task.status,
        )
        for task in sorted(model.tasks, key=lambda t: (t.due_at, t.id))
        if roles is None or task.owner_role in set(roles)
    ]
    return _table((_("任务"), _("负责人"), _("步骤"), _("类别"), _("截止时间"), _("状态")), rows)


def fmt_events(view, context, model, name, show_reason: bool = True) -> Markup:
    """The case timeline; the reasons (case notes) only with ``show_reason``."""
    rows = [
        (
            local_time(event.at),
            CASE_STATE_LABELS.get(event.from_state or "", event.from_state or "—"),
            CASE_STATE_LABELS.get(event.to_state, event.to_state),
            event.actor,
            event.reason if show_reason else HIDDEN_TEXT,
        )
        for event in model.events
    ]
    return _table((_("时间"), _("原状态"), _("新状态"), _("操作人"), _("原因")), rows)


def fmt_level_history(view, context, model, name, show_reasons: bool = True) -> Markup:
    """The warning's level history (:class:`~xinshu.models.LevelChange` rows), oldest first;
    a person's reasons (notes of the interview) only with ``show_reasons``."""
    stmt = select(LevelChange).where(LevelChange.warning_id == model.id).order_by(LevelChange.at, LevelChange.id)
    rows = []
    for change in view.session.scalars(stmt):
        rule_id = change.rule_id or ""
        if change.source == "person":
            kind = rule_id.partition(":")[2]
            who = (
                _("%(actor)s（%(kind)s）", actor=change.actor, kind=JUDGEMENT_KIND_LABELS.get(kind, kind))
                if kind
                else change.actor
            )
            reason = change.reason if show_reasons else HIDDEN_TEXT
        else:
            version = f" {change.ruleset_version}" if change.ruleset_version else ""
            who = f"{rule_id}{version}"
            reason = change.reason or _rule_explain(rule_id)
        rows.append(
            (
                local_time(change.at),
                f"{level_text(change.from_level)} → {level_text(change.to_level)}",
                LEVEL_SOURCE_LABELS.get(change.source, change.source),
                who,
                reason,
            )
        )
    if not rows:
        return Markup("<span class='text-muted'>{}</span>").format(_("无"))
    return _table((_("时间"), _("等级变化"), _("来源"), _("规则/操作人"), _("原因")), rows)


def fmt_roles(view, context, model, name) -> str:
    return _("；").join(
        f"{ROLE_LABELS.get(a.role, a.role)}@{a.org_unit.name if a.org_unit else '?'}" for a in model.roles
    )


#: The link base of notification payloads when ``PUBLIC_URL`` is not set (:func:`xinshu.episodes.notification_payload`).
DEFAULT_PUBLIC_URL = "http://127.0.0.1:5000"


def on_site_path(link: str | None) -> str | None:
    """The on-site path of ``link`` (``/admin/...``), or None when it leads elsewhere.

    Accepted: a path starting with one ``/``, or an absolute URL under the configured
    ``PUBLIC_URL`` (notification payloads carry those); backslashes and control characters are refused.
    """
    text = (link or "").strip()
    if not text or "\\" in text or any(ord(c) < 32 for c in text):
        return None
    base = str(current_services().config.get("PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")
    if base and text.startswith(base + "/"):
        text = text[len(base) :]
    if text.startswith("/") and not text.startswith("//"):
        return text
    return None


def fmt_link(view, context, model, name) -> Markup | str:
    """A message's link as an ``<a>`` when it leads on-site (:func:`on_site_path`), else plain text."""
    link = getattr(model, name) or ""
    path = on_site_path(link)
    if path is not None:
        return Markup("<a href='{}'>{}</a>").format(path, link)
    return link
