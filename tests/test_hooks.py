"""Every hook is documented and tested (after datasette's ``test_plugin_hooks_have_tests``).

For each hook specification in :mod:`xinshu.hookspecs`:

* ``docs/plugins.md`` has a heading ``## name(arg1, arg2)`` whose arguments
  are the spec's arguments in order;
* some test module under ``tests/`` defines ``test_hook_<name>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
import pytest

from xinshu import hookspecs

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "plugins.md"
HEADING = re.compile(r"^## (\w+)\(([^)]*)\)\s*$", re.MULTILINE)
HOOK_NAMES = sorted(set(hookspecs.__all__) - {"hookimpl", "hookspec"})


def spec_argnames() -> dict[str, tuple[str, ...]]:
    """``{hook name: argument names}`` as pluggy sees the specs."""
    pm = pluggy.PluginManager("xinshu")
    pm.add_hookspecs(hookspecs)
    return {name: tuple(getattr(pm.hook, name).spec.argnames) for name in HOOK_NAMES}


def documented_hooks() -> dict[str, tuple[str, ...]]:
    """``{name: args}`` for every ``## name(args)`` heading in docs/plugins.md."""
    text = DOCS.read_text(encoding="utf-8")
    return {name: tuple(a.strip() for a in args.split(",") if a.strip()) for name, args in HEADING.findall(text)}


def test_all_lists_exactly_the_hookspecs() -> None:
    marked = {name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "xinshu_spec")}
    assert marked == set(HOOK_NAMES)
    assert HOOK_NAMES == [
        "notification_attempted",
        "register_admin_views",
        "register_channels",
        "register_commands",
        "register_declaration_dirs",
        "register_scorers",
        "warning_raised",
    ]


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_is_documented_with_its_arguments(hook: str) -> None:
    docs = documented_hooks()
    assert hook in docs, f"docs/plugins.md has no '## {hook}(...)' heading"
    assert docs[hook] == spec_argnames()[hook]


def test_docs_describe_no_other_hooks() -> None:
    assert set(documented_hooks()) == set(HOOK_NAMES)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_hook_has_a_test(hook: str) -> None:
    pattern = re.compile(rf"^\s*def test_hook_{hook}\(", re.MULTILINE)
    found = [p.name for p in sorted(TESTS.glob("test_*.py")) if pattern.search(p.read_text(encoding="utf-8"))]
    assert found, f"no test named test_hook_{hook} under tests/"
