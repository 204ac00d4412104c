"""Back-test a changed alert ruleset on the stored data before it goes live.

:func:`candidate_declarations` loads the active declarations with candidate
alert-rule files put in place of (or beside) the active ones, validating the
whole set, so an invalid candidate is refused and nothing changes.
:func:`backtest` evaluates both rule sets on everything known about every
active student and lists who would change level. :func:`activate` copies the
candidate into ``rules/alerts/`` and records who, when, why and the back-test.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from xinshu.declarations.loader import read_declaration
from xinshu.declarations.registry import Declarations, load_declarations
from xinshu.errors import XinshuError
from xinshu.facts_db import gather_facts
from xinshu.models import OrgUnit, RulesetActivation, Student
from xinshu.rules import Engine
from xinshu.services import Services


def candidate_files(path: Path) -> list[Path]:
    """The alert-rule files at ``path`` (a file, or every ``*.yaml`` in a directory)."""
    path = Path(path)
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise XinshuError(f"no alert-rule YAML files at {path}")
    return files


def _ruleset_id(path: Path) -> str | None:
    """The ``id`` of a rule file, read with the hardened loader (size, depth, alias and tag limits)."""
    loaded, _errors = read_declaration(path, path.name)
    data = loaded.data if loaded is not None else None
    return data.get("id") if isinstance(data, dict) else None


def replaced_files(alerts: Path, candidate: Path) -> list[Path]:
    """Active alert-rule files the candidate replaces: same ruleset id, another name."""
    wanted = _ruleset_id(candidate)
    if wanted is None:
        return []
    return [f for f in sorted(alerts.glob("*.yaml")) if f.name != candidate.name and _ruleset_id(f) == wanted]


def candidate_declarations(services: Services, path: Path) -> tuple[Declarations, Path]:
    """Load the active declarations with the candidate alert rules in place.

    Returns the declarations and the temporary root holding them (delete it).
    :raises DeclarationsInvalid: the candidate (or the set with it) is invalid.
    """
    root = Path(tempfile.mkdtemp(prefix="xinshu-candidate-"))
    active_root = services.store.roots[0]
    for folder in ("instruments", "rules", "norms", "local_texts"):
        if (active_root / folder).is_dir():
            shutil.copytree(active_root / folder, root / folder)
    for file in candidate_files(path):
        for stale in replaced_files(root / "rules" / "alerts", file):
            stale.unlink()
        shutil.copy2(file, root / "rules" / "alerts" / file.name)
    try:
        decls = load_declarations([root, *services.store.roots[1:]], services.scorer_classes, services.channel_classes)
    except Exception:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return decls, root


@dataclass
class Backtest:
    """Who would change level, and the counts per level and per school."""

    students: int
    changed: list[dict[str, Any]] = field(default_factory=list)
    before: dict[int, int] = field(default_factory=dict)
    after: dict[int, int] = field(default_factory=dict)
    per_school: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "students": self.students,
            "changed": len(self.changed),
            "levels_before": {str(k): v for k, v in sorted(self.before.items())},
            "levels_after": {str(k): v for k, v in sorted(self.after.items())},
            "per_school": self.per_school,
            "students_changed": self.changed,
        }


def backtest(session: Session, active: Declarations, candidate: Declarations) -> Backtest:
    """Evaluate both rule sets on every active student's stored data.

    Levels are the rules' levels (0 = no warning); people's judgements are not
    applied, so the diff shows exactly what the rule change does.
    """
    facts = gather_facts(session, active)
    before = Engine(list(active.rulesets.values())).evaluate(facts)
    after = Engine(list(candidate.rulesets.values())).evaluate(facts)
    result = Backtest(students=facts.n)
    result.before = {lv: int((before.level == lv).sum()) for lv in range(5)}
    result.after = {lv: int((after.level == lv).sum()) for lv in range(5)}
    rows = np.flatnonzero(before.level != after.level)
    schools = _schools(session, [int(facts.student_ids[i]) for i in rows])
    per_school: dict[str, Counter] = {}
    for i in rows:
        sid = int(facts.student_ids[i])
        old, new = int(before.level[i]), int(after.level[i])
        school = schools.get(sid, "")
        per_school.setdefault(school, Counter())["up" if new > old else "down"] += 1
        result.changed.append(
            {"student_id": sid, "school": school, "from": old, "to": new, "rule": after.decision(i).rule_id}
        )
    result.per_school = {school: dict(counts) for school, counts in sorted(per_school.items())}
    return result


def _schools(session: Session, student_ids: list[int]) -> dict[int, str]:
    found = {}
    for start in range(0, len(student_ids), 900):
        chunk = student_ids[start : start + 900]
        stmt = (
            select(Student.id, OrgUnit.code).join(OrgUnit, OrgUnit.id == Student.school_id).where(Student.id.in_(chunk))
        )
        found.update(dict(session.execute(stmt).all()))
    return found


def rules_digest(decls: Declarations) -> tuple[str, dict[str, str]]:
    """SHA-256 over the alert-rule files, and each file's own digest."""
    files = {rs.file: rs.digest for rs in sorted(decls.rulesets.values(), key=lambda r: r.file)}
    combined = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in files.items()).encode()).hexdigest()
    return combined, files


def activate(
    session: Session, services: Services, path: Path, actor: str, reason: str
) -> tuple[RulesetActivation, Backtest]:
    """Validate, back-test, record, then copy the candidate into ``rules/alerts/``.

    The record is flushed before any file is touched; if copying or reloading
    fails, the previous files are written back and the error is raised (the
    caller's transaction then rolls the record back). Existing warnings are
    not re-levelled: each keeps the ruleset version it was made under.

    :raises XinshuError: no reason given. :raises DeclarationsInvalid: invalid
        candidate (nothing is copied, the active rules stay).
    """
    if not reason.strip():
        raise XinshuError("a reason is required to activate alert rules")
    candidate, root = candidate_declarations(services, path)
    try:
        result = backtest(session, services.declarations, candidate)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    digest, files = rules_digest(candidate)
    summary = {k: v for k, v in result.as_dict().items() if k != "students_changed"}
    record = RulesetActivation(digest=digest, files=files, activated_by=actor, reason=reason.strip(), backtest=summary)
    session.add(record)
    session.flush()
    _install(services, candidate_files(path))
    return record, result


def _install(services: Services, files: list[Path]) -> None:
    target = services.store.roots[0] / "rules" / "alerts"
    stale = [old for f in files for old in replaced_files(target, f)]
    touched = [target / f.name for f in files] + stale
    previous = {p.name: p.read_bytes() if p.exists() else None for p in touched}
    try:
        for old in stale:
            old.unlink()
        for file in files:
            shutil.copy2(file, target / file.name)
        services.store.reload()
    except BaseException:
        for name, content in previous.items():
            if content is None:
                (target / name).unlink(missing_ok=True)
            else:
                (target / name).write_bytes(content)
        services.store.reload()
        raise
