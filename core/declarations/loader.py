"""Line-aware, safe YAML loading for declaration files.

Each file is composed into a node tree with PyYAML's safe loader (kept for
line numbers, after Home Assistant's ``SafeLineLoader`` idea) and the data is
constructed from that same tree. Hardening (security.md E1, E2):

* only the safe loader is used, so ``!!python/...`` tags are refused;
* files over :data:`MAX_BYTES` are refused before parsing;
* anchors and aliases are refused (no alias-expansion bombs);
* explicit tags other than the core ones (``!!str``, ``!!int`` ...) are refused
  by name and line before anything is constructed;
* collections nested deeper than :data:`MAX_DEPTH` are refused before PyYAML's
  recursive composer sees them (no ``RecursionError``, security.md E5);
* duplicate mapping keys are refused, naming both lines;
* timestamps stay strings (``2025-09-01`` is not turned into a ``date``), the
  dbt "custom type rule" problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from xinshu.errors import DeclarationError

MAX_BYTES = 1_000_000
#: Deepest nesting of mappings and sequences accepted (the project's files nest 7 deep).
MAX_DEPTH = 32
#: Explicit tags accepted: the YAML core schema's, nothing that constructs objects.
SAFE_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))


class DeclarationLoader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp resolver."""


DeclarationLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class LoadedFile:
    """One parsed declaration file: its data and its node tree for lines."""

    path: Path
    display: str
    data: Any
    root: yaml.Node | None
    text: str

    def line_of(self, path: tuple) -> int:
        """Return the 1-based line of the node at ``path`` (best effort)."""
        return node_line(self.root, path)


def read_declaration(path: Path, display: str) -> tuple[LoadedFile | None, list[DeclarationError]]:
    """Parse one file; return ``(loaded, errors)``, ``loaded`` None on failure."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [DeclarationError(display, 0, "", f"cannot read file: {exc.strerror}")]
    if len(raw) > MAX_BYTES:
        return None, [DeclarationError(display, 1, "", f"file is larger than {MAX_BYTES} bytes")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [DeclarationError(display, 1, "", f"not UTF-8 text ({exc.reason})")]
    return parse_text(text, path, display)


def parse_text(text: str, path: Path, display: str) -> tuple[LoadedFile | None, list[DeclarationError]]:
    """Parse YAML text already read; see :func:`read_declaration`."""
    try:
        refused = _refused_event(text, display)
        if refused:
            return None, [refused]
        loader = DeclarationLoader(text)
        try:
            root = loader.get_single_node()
            duplicates = _duplicate_keys(root, display)
            if duplicates:
                return None, duplicates
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return None, [DeclarationError(display, line, "", f"YAML syntax: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return None, [DeclarationError(display, 1, "", f"YAML: {exc}")]
    return LoadedFile(path, display, data, root, text), []


def _refused_event(text: str, display: str) -> DeclarationError | None:
    """The first construct refused before composing: an anchor or alias, a tag
    outside :data:`SAFE_TAGS`, or nesting deeper than :data:`MAX_DEPTH`.

    PyYAML's event parser is iterative, so this scan is safe on any input; it
    stops at the first problem.
    """
    depth = 0
    for event in yaml.parse(text, Loader=DeclarationLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            return DeclarationError(display, line, "", "YAML anchors and aliases are not allowed")
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in SAFE_TAGS:
            return DeclarationError(
                display, line, "", f"YAML syntax: unknown tag {tag!r} (only plain YAML values are allowed)"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return DeclarationError(display, line, "", f"nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _duplicate_keys(node: yaml.Node | None, display: str) -> list[DeclarationError]:
    errors: list[DeclarationError] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        message = f"duplicate key {key.value!r} (first at line {seen[key.value]})"
                        errors.append(DeclarationError(display, line, "", message))
                    seen.setdefault(key.value, line)
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return sorted(errors, key=lambda e: e.line)


def node_line(root: yaml.Node | None, path: tuple) -> int:
    """Walk ``path`` (keys and indexes) down the node tree; return a 1-based line."""
    node = root
    if node is None:
        return 1
    for part in path:
        child = _child(node, part)
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def key_line(root: yaml.Node | None, path: tuple, key: str) -> int:
    """Line of mapping key ``key`` inside the mapping at ``path``."""
    node = root
    for part in path:
        node = _child(node, part) if node is not None else None
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                return k.start_mark.line + 1
    return node_line(root, path)


def _child(node: yaml.Node, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        return node.value[part] if 0 <= part < len(node.value) else None
    return None


def format_path(path: tuple | list) -> str:
    """Render a key path as ``a.b[2].c`` (dbt's ``error_path_to_string``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
