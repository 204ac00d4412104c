"""Versions of declaration files edited in the back office (声明编辑).

The editable files live in the active declaration root (the first of
``services.store.roots``)::

    instruments/*.yaml  rules/alerts/*.yaml  rules/interventions/*.yaml
    rules/imports/*.yaml  rules/interviews/*.yaml  rules/levels.yaml

Each save, activation, rejection or restore stores a
:class:`~xinshu.models.DeclarationVersion` row (content and SHA-256 over its
UTF-8 bytes, the same digest a warning records as ``ruleset_digest``). The file
that was on disk before the editor first touched it is recorded as version 1
(status ``active``, author :data:`SYSTEM_AUTHOR`), so the history starts from
what shipped; a change made outside the editor is recorded the same way the
next time the file is touched.

A candidate is checked by loading the *whole* declaration set with the
candidate in its place (:func:`candidate_set`): the same safe loader, size,
alias, tag and depth limits, JSON Schemas and cross-file checks as startup.
Activation (:func:`activate_version`) writes the file atomically, reloads the
application's declarations and commits; if anything fails the previous bytes
are put back and the previous declarations stay active.

Numbers shown to people ("第 3 版") count a file's versions in the order they
were stored, starting at 1 (:func:`numbered`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from xinshu import audit
from xinshu.declarations.loader import MAX_BYTES
from xinshu.declarations.registry import Declarations, load_declarations
from xinshu.errors import DeclarationError, DeclarationsInvalid, XinshuError
from xinshu.models import DeclarationVersion, User, utcnow
from xinshu.services import Services

#: Folder -> declaration kind of the editable folders, in the order shown.
EDITABLE_FOLDERS: dict[str, str] = {
    "instruments": "instrument",
    "rules/alerts": "alert_rules",
    "rules/interventions": "intervention",
    "rules/imports": "import_profile",
    "rules/interviews": "interview_form",
}
#: The one levels file (kind ``levels``).
LEVELS_PATH = "rules/levels.yaml"
#: Kinds whose activation needs a back-test of the warning levels first.
BACKTESTED_KINDS = frozenset({"alert_rules", "levels"})
#: A file name in an editable folder: no directories, no leading dot.
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.yaml$")
#: Folders copied into a candidate root (``local_texts`` holds licensed item text).
COPIED_FOLDERS = ("instruments", "rules", "norms", "local_texts")
#: Author of versions recorded from disk (what shipped, or changes made outside the editor).
SYSTEM_AUTHOR = "system"
SHIPPED_REASON = "编辑器首次使用前的现行文件"
OUTSIDE_REASON = "在编辑器之外更改的现行文件"
STATUSES = ("draft", "active", "superseded", "rejected")

_install_lock = threading.Lock()


class InvalidPath(XinshuError):
    """A relative path that is not an editable declaration file."""


@dataclass(frozen=True)
class EditableFile:
    """One editable declaration file: ``relpath`` under the root, its folder and kind."""

    relpath: str
    folder: str
    kind: str

    @property
    def needs_backtest(self) -> bool:
        """True for alert rules and levels: activation needs the warning back-test."""
        return self.kind in BACKTESTED_KINDS

    @property
    def name(self) -> str:
        return self.relpath.rsplit("/", 1)[-1]


def editable_file(relpath: str) -> EditableFile:
    """Check ``relpath`` strictly and return what it names.

    Accepted: ``rules/levels.yaml`` and ``<folder>/<name>`` with ``folder`` one
    of :data:`EDITABLE_FOLDERS` and ``name`` matching :data:`FILE_NAME`. Nothing
    else: no ``..``, no absolute path, no backslash, no other folder.

    :raises InvalidPath: anything else.
    """
    if not isinstance(relpath, str) or len(relpath) > 255:
        raise InvalidPath("invalid path")
    if relpath == LEVELS_PATH:
        return EditableFile(relpath, "rules", "levels")
    folder, _, name = relpath.rpartition("/")
    if folder not in EDITABLE_FOLDERS or not FILE_NAME.fullmatch(name) or ".." in name:
        raise InvalidPath(f"not an editable declaration file: {relpath!r}")
    return EditableFile(relpath, folder, EDITABLE_FOLDERS[folder])


def new_file(folder: str, filename: str) -> EditableFile:
    """The file ``filename`` in editable ``folder`` (for a new file).

    :raises InvalidPath: unknown folder or a name not matching :data:`FILE_NAME`.
    """
    if folder not in EDITABLE_FOLDERS:
        raise InvalidPath(f"not an editable folder: {folder!r}")
    return editable_file(f"{folder}/{filename}")


def sha256_text(text: str) -> str:
    """SHA-256 (hex) of ``text`` as UTF-8: the digest the loader records for a file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize(text: str) -> str:
    """Text as stored and written: ``\\r\\n`` and ``\\r`` (browser textareas) become ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _target(root: Path, file: EditableFile) -> Path:
    """``root / relpath``, refusing a path that resolves outside ``root`` (a symlink)."""
    path = Path(root) / file.relpath
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise InvalidPath(f"{file.relpath} resolves outside the declaration root")
    return path


def active_text(root: Path, file: EditableFile) -> str | None:
    """The file's content on disk under ``root`` (None when there is none)."""
    path = _target(root, file)
    if not path.is_file():
        return None
    return path.read_bytes().decode("utf-8", errors="replace")


def files_on_disk(root: Path) -> list[EditableFile]:
    """Every editable file present under ``root``, by folder then name."""
    found = []
    for folder, kind in EDITABLE_FOLDERS.items():
        base = Path(root) / folder
        if base.is_dir():
            found += [EditableFile(f"{folder}/{p.name}", folder, kind) for p in sorted(base.glob("*.yaml"))]
    if (Path(root) / LEVELS_PATH).is_file():
        found.append(EditableFile(LEVELS_PATH, "rules", "levels"))
    return [f for f in found if FILE_NAME.fullmatch(f.name)]


def modified_at(root: Path, file: EditableFile) -> dt.datetime | None:
    """The file's modification time on disk, naive UTC (None when absent)."""
    path = _target(root, file)
    if not path.is_file():
        return None
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)


# --- validation and diff ------------------------------------------------------------


def size_error(file: EditableFile, text: str) -> DeclarationError | None:
    """The loader's size error when ``text`` is over :data:`MAX_BYTES` as UTF-8."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        return DeclarationError(file.relpath, 1, "", f"file is larger than {MAX_BYTES} bytes")
    return None


def candidate_set(services: Services, file: EditableFile, text: str) -> Declarations:
    """Load the whole active declaration set with ``text`` as ``file``.

    The active root's declaration folders are copied to a temporary root, the
    candidate is written there and :func:`load_declarations` runs on it (plus
    any plugin roots), exactly as at startup. Nothing of the active set changes.

    :raises DeclarationsInvalid: every error found, each ``file:line: path: message``.
    """
    too_big = size_error(file, text)
    if too_big:
        raise DeclarationsInvalid([too_big])
    active_root = Path(services.store.roots[0])
    with tempfile.TemporaryDirectory(prefix="xinshu-yaml-") as tmp:
        root = Path(tmp)
        for folder in COPIED_FOLDERS:
            if (active_root / folder).is_dir():
                shutil.copytree(active_root / folder, root / folder)
        target = root / file.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(text.encode("utf-8"))
        roots = [root, *services.store.roots[1:]]
        return load_declarations(roots, services.scorer_classes, services.channel_classes)


@dataclass(frozen=True)
class Diff:
    """A unified diff and its counts of added and removed lines."""

    text: str
    added: int
    removed: int


def diff_texts(
    old: str | None, new: str, relpath: str, old_label: str = "active", new_label: str = "candidate"
) -> Diff:
    """Unified diff (3 lines of context) of ``new`` against ``old`` (None: a new file)."""
    lines = list(
        difflib.unified_diff(
            (old or "").splitlines(),
            new.splitlines(),
            fromfile=f"{relpath} ({old_label})",
            tofile=f"{relpath} ({new_label})",
            lineterm="",
        )
    )
    body = lines[2:]
    added = sum(1 for line in body if line.startswith("+"))
    removed = sum(1 for line in body if line.startswith("-"))
    return Diff("\n".join(lines), added, removed)


# --- versions ---------------------------------------------------------------------


def versions(session: Session, relpath: str | None = None) -> list[DeclarationVersion]:
    """Every stored version of one file (of every file when ``relpath`` is None), oldest first.

    ``content`` is deferred: it is read from the database only for rows whose
    content is used.
    """
    stmt = select(DeclarationVersion).options(defer(DeclarationVersion.content)).order_by(DeclarationVersion.id)
    if relpath is not None:
        stmt = stmt.where(DeclarationVersion.relpath == relpath)
    return list(session.scalars(stmt))


def numbered(rows: Iterable[DeclarationVersion]) -> dict[int, int]:
    """Version id -> its number within its file (1, 2, ...), by storage order."""
    counters: dict[str, int] = {}
    numbers = {}
    for row in sorted(rows, key=lambda r: r.id):
        counters[row.relpath] = counters.get(row.relpath, 0) + 1
        numbers[row.id] = counters[row.relpath]
    return numbers


def active_version(session: Session, relpath: str) -> DeclarationVersion | None:
    """The newest version of ``relpath`` with status ``active``, if any."""
    stmt = (
        select(DeclarationVersion)
        .where(DeclarationVersion.relpath == relpath, DeclarationVersion.status == "active")
        .order_by(DeclarationVersion.id.desc())
        .limit(1)
    )
    return session.scalar(stmt)


def ensure_history(session: Session, root: Path, file: EditableFile) -> DeclarationVersion | None:
    """Make the history agree with the disk: the file on disk is the active version.

    The first time a file is touched its content on disk is stored as version 1
    (:data:`SHIPPED_REASON`); later, a file changed outside the editor is stored
    as a new active version (:data:`OUTSIDE_REASON`) and the old one superseded.

    :return: the active version, or None when the file is not on disk (an
        active row left from before is then superseded).
    """
    text = active_text(root, file)
    current = active_version(session, file.relpath)
    if text is None:
        if current is not None:  # removed outside the editor: no version of it is in force
            current.status = "superseded"
        return None
    sha = sha256_text(text)
    if current is not None and current.sha256 == sha:
        return current
    if current is not None:
        current.status = "superseded"
    now = utcnow()
    row = DeclarationVersion(
        kind=file.kind,
        relpath=file.relpath,
        content=text,
        sha256=sha,
        status="active",
        author=SYSTEM_AUTHOR,
        created_at=now,
        activated_by=SYSTEM_AUTHOR,
        activated_at=now,
        reason=OUTSIDE_REASON if current is not None or versions(session, file.relpath) else SHIPPED_REASON,
        backtest={},
    )
    session.add(row)
    session.flush()
    return row


def _audit(
    session: Session,
    action: str,
    row: DeclarationVersion,
    actor: User | str,
    base: DeclarationVersion | None,
    diff: Diff,
    outcome: str = "ok",
    **extra: Any,
) -> None:
    """One audit row: relpath, version ids, digests and diff counts (never the content)."""
    detail = {
        "relpath": row.relpath,
        "kind": row.kind,
        "version_id": row.id,
        "status": row.status,
        "sha256": row.sha256,
        "active_version_id": base.id if base is not None else None,
        "active_sha256": base.sha256 if base is not None else None,
        "added": diff.added,
        "removed": diff.removed,
        **extra,
    }
    audit.record(session, action, "declaration_version", row.id, outcome=outcome, detail=detail, actor=actor)


def _actor_name(actor: User | str) -> str:
    return actor.username if isinstance(actor, User) else str(actor)


def _new_row(file: EditableFile, text: str, status: str, actor: User | str, reason: str) -> DeclarationVersion:
    return DeclarationVersion(
        kind=file.kind,
        relpath=file.relpath,
        content=text,
        sha256=sha256_text(text),
        status=status,
        author=_actor_name(actor)[:80],
        created_at=utcnow(),
        reason=reason.strip(),
        backtest={},
    )


def save_draft(
    session: Session, root: Path, file: EditableFile, text: str, actor: User | str, note: str = "", **extra: Any
) -> DeclarationVersion:
    """Store ``text`` (already validated) as a draft version; audit ``create``.

    Flushes; the caller commits. ``extra`` goes into the audit detail
    (e.g. ``restored_from``).
    """
    base = ensure_history(session, root, file)
    row = _new_row(file, text, "draft", actor, note)
    session.add(row)
    session.flush()
    diff = diff_texts(base.content if base else None, text, file.relpath)
    _audit(session, "create", row, actor, base, diff, **extra)
    return row


def reject(
    session: Session,
    root: Path,
    file: EditableFile,
    text: str,
    actor: User | str,
    error_count: int,
    action: str,
    note: str = "",
) -> DeclarationVersion | None:
    """Store an invalid candidate as a ``rejected`` version; audit ``action`` with outcome ``failed``.

    :param error_count: how many errors the candidate had (kept in the audit detail).
    :param action: the attempted action, ``create`` (save) or ``activate``.

    A candidate over :data:`MAX_BYTES` is not stored (only audited, with its digest).
    Flushes; the caller commits.
    """
    base = ensure_history(session, root, file)
    diff = diff_texts(base.content if base else None, text, file.relpath)
    if size_error(file, text):
        detail = {
            "relpath": file.relpath,
            "kind": file.kind,
            "status": "rejected",
            "sha256": sha256_text(text),
            "errors": error_count,
        }
        audit.record(session, action, "declaration_version", "", outcome="failed", detail=detail, actor=actor)
        return None
    row = _new_row(file, text, "rejected", actor, note)
    session.add(row)
    session.flush()
    _audit(session, action, row, actor, base, diff, outcome="failed", errors=error_count)
    return row


def activate_version(
    session: Session,
    services: Services,
    file: EditableFile,
    text: str,
    actor: User | str,
    reason: str,
    backtest: dict[str, Any] | None = None,
    extra_rows: Iterable[Any] = (),
) -> DeclarationVersion:
    """Store ``text`` as the active version, write it, reload, commit.

    ``text`` must have passed :func:`candidate_set`; the reload checks it again.
    The previous active version becomes ``superseded``. Order: rows flushed,
    file written atomically and declarations reloaded, then the session is
    committed; if writing, reloading or committing fails the previous bytes are
    written back (the active declarations never changed, or are reloaded from
    them) and the error is raised after rolling the session back.
    Existing warnings are not re-levelled: each keeps the ruleset digest it was
    made under.

    :param backtest: the back-test summary shown before activation (alert kinds).
    :param extra_rows: further rows to commit with it (e.g. a ``RulesetActivation``).
    :raises XinshuError: no reason given.
    :raises DeclarationsInvalid: the set does not load with the new file.
    """
    if not reason.strip():
        raise XinshuError("a reason is required to activate a declaration")
    root = Path(services.store.roots[0])
    with _install_lock:
        try:
            base = ensure_history(session, root, file)
            if base is not None:
                base.status = "superseded"
            row = _new_row(file, text, "active", actor, reason)
            row.activated_by = row.author
            row.activated_at = row.created_at
            row.backtest = dict(backtest or {})
            session.add(row)
            session.add_all(list(extra_rows))
            session.flush()
            diff = diff_texts(base.content if base else None, text, file.relpath)
            _audit(session, "activate", row, actor, base, diff, reason=reason.strip()[:500])
            session.flush()
        except BaseException:
            session.rollback()
            raise
        _install(session, services, file, text)
    return row


def _install(session: Session, services: Services, file: EditableFile, text: str) -> None:
    """Write, reload, commit; on any failure restore the previous bytes and roll back."""
    target = _target(services.store.roots[0], file)
    previous = target.read_bytes() if target.is_file() else None
    reloaded = False
    try:
        write_atomic(target, text.encode("utf-8"))
        services.store.reload()
        reloaded = True
        session.commit()
    except BaseException:
        session.rollback()
        if previous is None:
            target.unlink(missing_ok=True)
        else:
            write_atomic(target, previous)
        if reloaded:  # the new set was swapped in before the commit failed: swap the old one back
            services.store.reload()
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the new one, never a part. The file keeps its
    permissions (0644 for a new file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=".xinshu-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
