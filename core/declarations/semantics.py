"""Checks that JSON Schema cannot express: cross-references between files,
unique ids, band coverage, scorer options, channel names."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from xinshu.declarations.loader import LoadedFile, format_path
from xinshu.declarations.validate import validate_data
from xinshu.errors import DeclarationError
from xinshu.instruments import Instrument
from xinshu.rules import references


def _err(file: LoadedFile, path: tuple, message: str) -> DeclarationError:
    return DeclarationError(file.display, file.line_of(path), format_path(path), message)


def unique_ids(files: list[LoadedFile], what: str) -> list[DeclarationError]:
    """Every file of a kind must have a distinct ``id``."""
    seen: dict[str, str] = {}
    errors = []
    for file in files:
        ident = file.data["id"]
        if ident in seen:
            errors.append(_err(file, ("id",), f"duplicate {what} id {ident!r} (also in {seen[ident]})"))
        seen.setdefault(ident, file.display)
    return errors


def check_instrument(file: LoadedFile, scorers: Mapping[str, type]) -> list[DeclarationError]:
    """Item/scale references, scorer names and options, band coverage."""
    data = file.data
    errors = []
    if data["id"] != Path(file.display).stem:
        errors.append(_err(file, ("id",), f"id {data['id']!r} must equal the file name {Path(file.display).stem!r}"))
    items = {}
    for i, item in enumerate(data["items"]):
        if item["id"] in items:
            errors.append(_err(file, ("items", i, "id"), f"duplicate item id {item['id']!r}"))
        items[item["id"]] = item.get("options", data["response_options"])
    scale_ids: set[str] = set()
    for s, scale in enumerate(data["scales"]):
        errors.extend(_check_scale(file, ("scales", s), scale, items, scorers))
        if scale["id"] in scale_ids:
            errors.append(_err(file, ("scales", s, "id"), f"duplicate scale id {scale['id']!r}"))
        scale_ids.add(scale["id"])
    errors.extend(_check_validity(file, data, items, scale_ids))
    if data.get("text_source") == "local_file" and not data.get("text_file"):
        errors.append(_err(file, ("text_source",), "text_source local_file needs text_file"))
    for c, critical in enumerate(data.get("critical_items", [])):
        options = items.get(critical["item"])
        if options is None:
            errors.append(_err(file, ("critical_items", c, "item"), f"no item {critical['item']!r}"))
        elif critical["min_value"] > max(o["value"] for o in options):
            errors.append(_err(file, ("critical_items", c, "min_value"), "above the item's highest answer"))
    return errors


def _check_validity(file, data, items, scale_ids) -> list[DeclarationError]:
    errors = []
    for v, indicator in enumerate(data.get("validity", [])):
        path = ("validity", v)
        if indicator["kind"] == "scale_at_least" and indicator["scale"] not in scale_ids:
            errors.append(_err(file, (*path, "scale"), f"no scale {indicator['scale']!r} in this instrument"))
        for p, pair in enumerate(indicator.get("pairs", [])):
            for side, item_id in enumerate(pair):
                if item_id not in items:
                    errors.append(_err(file, (*path, "pairs", p, side), f"no item {item_id!r} in this instrument"))
    return errors


def _check_scale(file, path, scale, items, scorers) -> list[DeclarationError]:
    errors = []
    for k, item_id in enumerate(scale["items"]):
        if item_id not in items:
            errors.append(_err(file, (*path, "items", k), f"no item {item_id!r} in this instrument"))
    if len(set(scale["items"])) != len(scale["items"]):
        errors.append(_err(file, (*path, "items"), "an item is listed twice"))
    if scale["missing"]["min_answered"] > len(scale["items"]):
        errors.append(_err(file, (*path, "missing", "min_answered"), "more than the scale's item count"))
    scorer = scorers.get(scale["method"])
    if scorer is None:
        known = ", ".join(sorted(scorers)) or "none"
        errors.append(_err(file, (*path, "method"), f"unknown scoring method {scale['method']!r} (known: {known})"))
    else:
        errors.extend(validate_data(scale.get("options", {}), scorer.options_schema, file, (*path, "options")))
    if "bands" in scale and not errors:
        errors.extend(_check_bands(file, path, scale, items))
    return errors


def _check_bands(file, path, scale, items) -> list[DeclarationError]:
    ranges = scale["bands"]["ranges"]
    errors = []
    for b, band in enumerate(ranges):
        if band["min"] > band["max"]:
            errors.append(_err(file, (*path, "bands", "ranges", b), "min is greater than max"))
        if b and band["min"] <= ranges[b - 1]["max"]:
            errors.append(_err(file, (*path, "bands", "ranges", b, "min"), "overlaps the previous band"))
    if errors or scale["method"] != "sum":
        return errors
    values = [[o["value"] for o in items[i]] for i in scale["items"]]
    if not all(float(v).is_integer() for vs in values for v in vs):
        return errors
    for b in range(1, len(ranges)):
        if ranges[b]["min"] != ranges[b - 1]["max"] + 1:
            errors.append(_err(file, (*path, "bands", "ranges", b, "min"), "leaves a gap after the previous band"))
    factor = scale.get("options", {}).get("multiply", 1)
    low, high = factor * sum(min(v) for v in values), factor * sum(max(v) for v in values)
    if ranges[0]["min"] > low or ranges[-1]["max"] < high:
        errors.append(_err(file, (*path, "bands", "ranges"), f"bands must cover the score range {low:g}–{high:g}"))
    return errors


def check_levels(file: LoadedFile, channels: set[str]) -> list[DeclarationError]:
    """Levels 1–4 each once; every channel named is registered."""
    errors = []
    numbers = [lv["level"] for lv in file.data["levels"]]
    if sorted(numbers) != [1, 2, 3, 4]:
        errors.append(_err(file, ("levels",), f"levels must be 1, 2, 3 and 4 once each, got {numbers}"))
    for i, level in enumerate(file.data["levels"]):
        for n, target in enumerate(level["notify"]):
            for c, channel in enumerate(target["channels"]):
                if channel not in channels:
                    known = ", ".join(sorted(channels))
                    path = ("levels", i, "notify", n, "channels", c)
                    errors.append(_err(file, path, f"unknown channel {channel!r} (known: {known})"))
    return errors


def check_alert_rules(file: LoadedFile, instruments: Mapping[str, Instrument]) -> list[DeclarationError]:
    """Every instrument, scale, item, band, critical item and indicator named exists."""
    default = file.data.get("instrument")
    if default is not None and default not in instruments:
        return [_err(file, ("instrument",), f"no instrument {default!r}")]
    errors = []
    for r, rule in enumerate(file.data["rules"]):
        for kind, name, inst in references(rule["when"], default):
            if kind in ("teacher_report", "parent_report"):
                continue
            problem = _reference_problem(instruments.get(inst) if inst else None, inst, kind, name)
            if problem:
                errors.append(_err(file, ("rules", r, "when"), problem))
        errors.extend(_band_names(file, ("rules", r, "when"), rule["when"], instruments, default))
        errors.extend(_thresholds(file, ("rules", r, "when"), rule["when"], instruments, default))
    return errors


def _reference_problem(instrument: Instrument | None, inst: str | None, kind: str, name: str) -> str | None:
    if inst is None:
        return f"{kind} {name!r} needs an instrument (set it on the ruleset or the condition)"
    if instrument is None:
        return f"no instrument {inst!r}"
    scales = {s.id for s in instrument.scales}
    if kind in ("scale", "band", "t", "percentile", "change") and name not in scales:
        return f"{instrument.id} has no scale {name!r}"
    if kind in ("scale", "band", "t", "percentile", "change") and instrument.scale(name).role == "validity":
        return f"{name!r} is a validity scale of {instrument.id}; it routes to re-test and never warns"
    if kind == "item" and name not in instrument.item_ids:
        return f"{instrument.id} has no item {name!r}"
    if kind in ("critical", "critical_missing") and name not in {c.item for c in instrument.critical_items}:
        return f"{name!r} is not a critical item of {instrument.id}"
    if kind == "validity" and name != "any" and name not in {v["id"] for v in instrument.validity}:
        return f"{instrument.id} has no validity indicator {name!r}"
    return None


def _band_names(file, path, cond, instruments, default) -> list[DeclarationError]:
    errors = []
    for key in ("all", "any", "of"):
        for i, sub in enumerate(cond.get(key, [])):
            errors.extend(_band_names(file, (*path, key, i), sub, instruments, default))
    if "not" in cond:
        errors.extend(_band_names(file, (*path, "not"), cond["not"], instruments, default))
    instrument = instruments.get(cond.get("instrument", default) or "")
    if "band" in cond and instrument is not None and cond["band"] in {s.id for s in instrument.scales}:
        known = [b.id for b in instrument.scale(cond["band"]).bands]
        for i, band in enumerate(cond["in"]):
            if band not in known:
                errors.append(_err(file, (*path, "in", i), f"no band {band!r} (known: {', '.join(known)})"))
    return errors


COMPARISONS = ("gte", "gt", "lte", "lt", "eq")


def _thresholds(file, path, cond, instruments, default) -> list[DeclarationError]:
    """A raw-score or answer threshold outside the values the score can take
    (e.g. ``{scale: total, gte: 30}`` on the PHQ-9, 0–27) is a typo, not a rule."""
    errors = []
    for key in ("all", "any", "of"):
        for i, sub in enumerate(cond.get(key, [])):
            errors.extend(_thresholds(file, (*path, key, i), sub, instruments, default))
    if "not" in cond:
        errors.extend(_thresholds(file, (*path, "not"), cond["not"], instruments, default))
    instrument = instruments.get(cond.get("instrument", default) or "")
    span = score_span(instrument, cond) if instrument is not None else None
    if span is None:
        return errors
    low, high = span
    for op in COMPARISONS:
        if op in cond and not low <= cond[op] <= high:
            message = f"threshold {cond[op]:g} is outside the possible values {low:g}–{high:g}"
            errors.append(_err(file, (*path, op), message))
    return errors


def score_span(instrument: Instrument, cond: dict) -> tuple[float, float] | None:
    """``(lowest, highest)`` value of an ``item`` leaf's answer or a ``scale`` leaf's
    raw score (``sum`` scales only, times ``options.multiply``); None otherwise."""
    if isinstance(cond.get("item"), str) and cond["item"] in instrument.item_ids:
        item = instrument.item(cond["item"])
        return item.min_value, item.max_value
    if isinstance(cond.get("scale"), str) and cond["scale"] in {s.id for s in instrument.scales}:
        scale = instrument.scale(cond["scale"])
        if scale.method != "sum":
            return None
        factor = scale.options.get("multiply", 1)
        items = [instrument.item(i) for i in scale.items]
        return factor * sum(i.min_value for i in items), factor * sum(i.max_value for i in items)
    return None


def unique_rule_ids(files: list[LoadedFile]) -> list[DeclarationError]:
    """Rule ids are unique across all alert rule files (warnings cite them)."""
    seen: dict[str, str] = {}
    errors = []
    for file in files:
        for r, rule in enumerate(file.data["rules"]):
            if rule["id"] in seen:
                errors.append(
                    _err(file, ("rules", r, "id"), f"duplicate rule id {rule['id']!r} (also in {seen[rule['id']]})")
                )
            seen.setdefault(rule["id"], file.display)
    return errors


def check_template_coverage(files: list[LoadedFile], levels_file: LoadedFile) -> list[DeclarationError]:
    """Each level at or above the case threshold has exactly one general template,
    and at most one template per level and case category."""
    threshold = levels_file.data["case_threshold"]
    owner: dict[tuple[int, str], str] = {}
    errors = []
    for file in files:
        category = file.data.get("category", "general")
        for i, level in enumerate(file.data["levels"]):
            key = (level, category)
            if key in owner:
                message = f"level {level} already has {category} template {owner[key]!r}"
                errors.append(_err(file, ("levels", i), message))
            owner.setdefault(key, file.data["id"])
    for level in range(threshold, 5):
        if (level, "general") not in owner:
            message = f"no general intervention template for level {level} (cases open at level {threshold} and above)"
            errors.append(_err(levels_file, ("case_threshold",), message))
    return errors


def check_template(file: LoadedFile) -> list[DeclarationError]:
    """Task ids and exit-criterion ids are unique within the template."""
    errors = []
    for key, what in (("tasks", "task"), ("exit_criteria", "exit criterion")):
        seen: set[str] = set()
        for i, item in enumerate(file.data.get(key, [])):
            if item["id"] in seen:
                errors.append(_err(file, (key, i, "id"), f"duplicate {what} id {item['id']!r}"))
            seen.add(item["id"])
    return errors


CHOICE_TYPES = ("choice", "multi")


def check_interview_form(file: LoadedFile) -> list[DeclarationError]:
    """Field ids are unique; choice and multi fields have options (with unique
    ids) and no other field type has any."""
    errors = []
    seen: set[str] = set()
    for i, item in enumerate(file.data["fields"]):
        if item["id"] in seen:
            errors.append(_err(file, ("fields", i, "id"), f"duplicate field id {item['id']!r}"))
        seen.add(item["id"])
        options = item.get("options")
        if item["type"] in CHOICE_TYPES and not options:
            errors.append(_err(file, ("fields", i), f"a {item['type']} field needs options"))
        elif item["type"] not in CHOICE_TYPES and options is not None:
            errors.append(_err(file, ("fields", i, "options"), f"a {item['type']} field takes no options"))
        option_ids: set[str] = set()
        for o, option in enumerate(options or []):
            if option["id"] in option_ids:
                errors.append(_err(file, ("fields", i, "options", o, "id"), f"duplicate option id {option['id']!r}"))
            option_ids.add(option["id"])
    return errors


def check_profile(file: LoadedFile, instruments: Mapping[str, Instrument]) -> list[DeclarationError]:
    """The instrument exists and every mapped item belongs to it."""
    instrument = instruments.get(file.data["instrument"])
    if instrument is None:
        return [_err(file, ("instrument",), f"no instrument {file.data['instrument']!r}")]
    errors = []
    mapped = list(file.data["items"].values())
    for column, item in file.data["items"].items():
        if item not in instrument.item_ids:
            errors.append(_err(file, ("items", column), f"{instrument.id} has no item {item!r}"))
        elif mapped.count(item) > 1:
            errors.append(_err(file, ("items", column), f"item {item!r} is mapped from more than one column"))
    return errors


NORM_NEEDS = {"linear_t": ("mean",), "normalized_t": ("distribution",), "lookup": ("table",)}


def check_norm_set(file: LoadedFile, instruments: Mapping[str, Instrument]) -> list[DeclarationError]:
    """The scale exists; each group has what the method needs; group keys are unique."""
    data = file.data
    instrument = instruments.get(data["instrument"])
    if instrument is None:
        return [_err(file, ("instrument",), f"no instrument {data['instrument']!r}")]
    if data["scale"] not in {s.id for s in instrument.scales}:
        return [_err(file, ("scale",), f"{instrument.id} has no scale {data['scale']!r}")]
    errors, seen = [], set()
    for g, group in enumerate(data["groups"]):
        key = (group.get("grade"), group.get("gender"), group.get("region"))
        if key in seen:
            errors.append(_err(file, ("groups", g), "another group has the same grade, gender and region"))
        seen.add(key)
        for needed in NORM_NEEDS[data["method"]]:
            if needed not in group:
                errors.append(_err(file, ("groups", g), f"method {data['method']} needs {needed!r}"))
        counts = sum(c for _, c in group.get("distribution", []))
        if "distribution" in group and counts != group["n"]:
            errors.append(_err(file, ("groups", g, "distribution"), f"counts add up to {counts}, not n = {group['n']}"))
    return errors


def one_active_norm(files: list[LoadedFile]) -> list[DeclarationError]:
    """At most one active norm set per instrument scale."""
    active: dict[tuple[str, str], str] = {}
    errors = []
    for file in files:
        if file.data["status"] != "active":
            continue
        key = (file.data["instrument"], file.data["scale"])
        if key in active:
            message = f"{key[0]}.{key[1]} already has an active norm set in {active[key]}"
            errors.append(_err(file, ("status",), message))
        active.setdefault(key, file.display)
    return errors
