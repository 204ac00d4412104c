"""Load a whole set of declarations, check them, and keep the last good set.

Layout under each root directory::

    instruments/*.yaml          kind: instrument       (id == file stem)
    rules/levels.yaml           kind: levels           (exactly one)
    rules/alerts/*.yaml         kind: alert_rules
    rules/interventions/*.yaml  kind: intervention
    rules/imports/*.yaml        kind: import_profile
    rules/interviews/*.yaml     kind: interview_form
    norms/*.yaml                kind: norm_set         (at most one active per scale)

Loading is all-or-nothing: :func:`load_declarations` returns a complete
:class:`Declarations` or raises :class:`~xinshu.errors.DeclarationsInvalid`
listing every error. :class:`DeclarationStore` swaps in a new set only when it
loads cleanly, so a bad edit never replaces the active declarations.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xinshu.declarations import semantics
from xinshu.declarations.loader import LoadedFile, read_declaration
from xinshu.declarations.validate import validate_data
from xinshu.errors import DeclarationError, DeclarationsInvalid
from xinshu.instruments import Instrument, build_instrument
from xinshu.levels import (
    InterventionTemplate,
    InterviewForm,
    Levels,
    build_interview_form,
    build_levels,
    build_template,
)
from xinshu.norms import NormSet, build_norm_set_model
from xinshu.profiles import ImportProfile, build_profile
from xinshu.rules import Rule, RuleSet

FOLDERS = {
    "instruments": "instrument",
    "rules/alerts": "alert_rules",
    "rules/interventions": "intervention",
    "rules/imports": "import_profile",
    "rules/interviews": "interview_form",
    "norms": "norm_set",
}


@dataclass(frozen=True)
class Declarations:
    """A complete, checked set of declarations.

    ``digest`` is a SHA-256 over every file's path and bytes: it changes when
    any declaration changes and identifies the set that produced a warning.
    """

    instruments: Mapping[str, Instrument]
    levels: Levels
    rulesets: Mapping[str, RuleSet]
    templates: Mapping[str, InterventionTemplate]
    profiles: Mapping[str, ImportProfile]
    norms: Mapping[str, NormSet]
    digest: str
    files: tuple[str, ...] = field(default_factory=tuple)
    interview_forms: Mapping[str, InterviewForm] = field(default_factory=dict)

    def ruleset_for(self, instrument_id: str) -> RuleSet | None:
        for ruleset in self.rulesets.values():
            if ruleset.instrument == instrument_id:
                return ruleset
        return None

    def active_norm(self, instrument_id: str, scale_id: str) -> NormSet | None:
        """The active norm set of one scale, if any."""
        for norm in self.norms.values():
            if (norm.instrument, norm.scale, norm.status) == (instrument_id, scale_id, "active"):
                return norm
        return None

    def template_for(self, level: int, category: str = "general") -> InterventionTemplate:
        """The intervention template for ``level`` and case ``category``; the
        level's general template when no template has that category.

        :raises KeyError: no template covers ``level``.
        """
        general = None
        for template in self.templates.values():
            if level in template.levels:
                if template.category == category:
                    return template
                if template.category == "general":
                    general = template
        if general is None:
            raise KeyError(level)
        return general

    def categories_for(self, level: int) -> list[str]:
        """The case categories that have a template at ``level`` (general first)."""
        found = {t.category for t in self.templates.values() if level in t.levels}
        return sorted(found, key=lambda c: (c != "general", c))


def discover(roots: Iterable[Path]) -> list[tuple[Path, str, str]]:
    """List ``(path, display name, kind)`` for every declaration file, sorted."""
    found = []
    for root in roots:
        root = Path(root)
        for folder, kind in FOLDERS.items():
            base = root / folder
            if base.is_dir():
                for path in sorted(base.glob("*.yaml")):
                    if not path.name.startswith("."):
                        found.append((path, _display(path, root), kind))
        levels = root / "rules" / "levels.yaml"
        if levels.is_file():
            found.append((levels, _display(levels, root), "levels"))
    return found


def _display(path: Path, root: Path) -> str:
    """The path as written in messages: relative to its declaration root."""
    return str(path.relative_to(root))


def load_declarations(
    roots: Iterable[Path],
    scorers: Mapping[str, type],
    channels: Iterable[str],
) -> Declarations:
    """Read, validate and check every declaration under ``roots``.

    :param scorers: scorer name -> Scorer class (from ``register_scorers``).
    :param channels: channel names (from ``register_channels``).
    :raises DeclarationsInvalid: with every error found, sorted by file, line.
    """
    errors: list[DeclarationError] = []
    loaded: list[tuple[LoadedFile, str]] = []
    digest = hashlib.sha256()
    for path, display, kind in discover(roots):
        file, file_errors = read_declaration(path, display)
        errors.extend(file_errors)
        if file is None:
            continue
        digest.update(display.encode() + b"\0" + file.text.encode() + b"\0")
        schema_errors = validate_data(file.data, kind, file)
        errors.extend(schema_errors)
        if not schema_errors:
            loaded.append((file, kind))
    if errors:
        raise DeclarationsInvalid(_sorted(errors))
    decls = _build(loaded, scorers, set(channels), digest.hexdigest(), errors)
    if errors or decls is None:
        raise DeclarationsInvalid(_sorted(errors))
    return decls


def _sorted(errors: list[DeclarationError]) -> list[DeclarationError]:
    return sorted(set(errors), key=lambda e: (e.file, e.line, e.path, e.message))


def _build(loaded, scorers, channels, digest, errors) -> Declarations | None:
    by_kind: dict[str, list[LoadedFile]] = {k: [] for k in (*FOLDERS.values(), "levels")}
    for file, kind in loaded:
        by_kind[kind].append(file)
    instruments = {}
    for file in by_kind["instrument"]:
        errors.extend(semantics.check_instrument(file, scorers))
        data = with_local_text(file, errors)
        instruments[file.data["id"]] = build_instrument(data, _sha(file), file.display)
    errors.extend(semantics.unique_ids(by_kind["instrument"], "instrument"))
    if len(by_kind["levels"]) != 1:
        where = ", ".join(f.display for f in by_kind["levels"]) or "rules/levels.yaml"
        errors.append(DeclarationError(where, 0, "", "exactly one rules/levels.yaml is required"))
        return None
    levels_file = by_kind["levels"][0]
    errors.extend(semantics.check_levels(levels_file, channels))
    levels = build_levels(levels_file.data, _sha(levels_file))
    rulesets = {}
    for file in by_kind["alert_rules"]:
        errors.extend(semantics.check_alert_rules(file, instruments))
        rulesets[file.data["id"]] = _ruleset(file)
    errors.extend(semantics.unique_ids(by_kind["alert_rules"], "alert ruleset"))
    errors.extend(semantics.unique_rule_ids(by_kind["alert_rules"]))
    templates = {f.data["id"]: build_template(f.data) for f in by_kind["intervention"]}
    errors.extend(semantics.unique_ids(by_kind["intervention"], "intervention template"))
    errors.extend(semantics.check_template_coverage(by_kind["intervention"], levels_file))
    for file in by_kind["intervention"]:
        errors.extend(semantics.check_template(file))
    forms = {}
    for file in by_kind["interview_form"]:
        errors.extend(semantics.check_interview_form(file))
        forms[file.data["id"]] = build_interview_form(file.data)
    errors.extend(semantics.unique_ids(by_kind["interview_form"], "interview form"))
    profiles = {}
    for file in by_kind["import_profile"]:
        errors.extend(semantics.check_profile(file, instruments))
        profiles[file.data["id"]] = build_profile(file.data)
    errors.extend(semantics.unique_ids(by_kind["import_profile"], "import profile"))
    norms = {}
    for file in by_kind["norm_set"]:
        errors.extend(semantics.check_norm_set(file, instruments))
        norms[file.data["id"]] = build_norm_set_model(file.data)
    errors.extend(semantics.unique_ids(by_kind["norm_set"], "norm set"))
    errors.extend(semantics.one_active_norm(by_kind["norm_set"]))
    files = tuple(f.display for f, _ in loaded)
    return Declarations(instruments, levels, rulesets, templates, profiles, norms, digest, files, forms)


LOCAL_TEXT_SCHEMA = {
    "type": "object",
    "description": "item id -> {zh, en}: item text supplied by a licence holder",
    "additionalProperties": {"$ref": "urn:xinshu:common#/$defs/text"},
}


def with_local_text(file: LoadedFile, errors: list[DeclarationError]) -> dict:
    """Instrument data with item text from its ``text_file`` when the licence
    holder has put that file next to it (``text_source: local_file``).

    The text file is not part of the repository; without it the instrument
    is scored from its structure alone. Its errors are reported like any
    declaration's.
    """
    data = file.data
    if data.get("text_source") != "local_file" or not data.get("text_file"):
        return data
    path = file.path.parent / data["text_file"]
    if not path.is_file():
        return data
    display = os.path.normpath(Path(file.display).parent / data["text_file"])
    text, text_errors = read_declaration(path, display)
    if text is not None:
        text_errors = validate_data(text.data, LOCAL_TEXT_SCHEMA, text)
        known = {item["id"] for item in data["items"]}
        text_errors += [
            DeclarationError(display, text.line_of((key,)), key, f"no item {key!r} in {data['id']}")
            for key in text.data or {}
            if key not in known
        ]
    errors.extend(text_errors)
    if text_errors or text is None:
        return data
    items = [item | ({"text": text.data[item["id"]]} if item["id"] in text.data else {}) for item in data["items"]]
    return data | {"items": items}


def _sha(file: LoadedFile) -> str:
    return hashlib.sha256(file.text.encode()).hexdigest()


def _ruleset(file: LoadedFile) -> RuleSet:
    data = file.data
    rules = tuple(Rule(r["id"], r["level"], r["when"], r["explain"], r.get("source", "")) for r in data["rules"])
    return RuleSet(data["id"], data["version"], _sha(file), data.get("instrument"), rules, file.display)


class DeclarationStore:
    """Holds the active declarations; :meth:`reload` swaps only on success.

    Thread-safe: readers take :attr:`current` (an immutable object); a reload
    builds a complete new set before replacing the reference.
    """

    def __init__(self, roots: list[Path], scorers: Mapping[str, type], channels: Iterable[str]):
        self.roots = roots
        self._scorers = scorers
        self._channels = tuple(channels)
        self._lock = threading.Lock()
        self.current: Declarations = load_declarations(roots, scorers, self._channels)

    def reload(self) -> Declarations:
        """Load again; on error raise and keep the active set unchanged."""
        with self._lock:
            fresh = load_declarations(self.roots, self._scorers, self._channels)
            self.current = fresh
            return fresh
