"""Line-aware, safe YAML loading for declaration files.

Each file is composed into a node tree with PyYAML's safe loader (kept for
line numbers, after Home Assistant's ``SafeLineLoader`` idea) and the data is
constructed from that same tree. Hardening (security.md E1, E2):

* only the safe loader is used, so ``!!python/...`` tags are refused;
* files over :data:`MAX_BYTES` are refused before parsing;
* anchors and aliases are refused (no alias-expansion bombs);
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
        alias_error = _find_alias(text, display)
        if alias_error:
            return None, [alias_error]
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


def _find_alias(text: str, display: str) -> DeclarationError | None:
    for event in yaml.parse(text, Loader=DeclarationLoader):
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent) or anchor:
            line = event.start_mark.line + 1
            return DeclarationError(display, line, "", "YAML anchors and aliases are not allowed")
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
