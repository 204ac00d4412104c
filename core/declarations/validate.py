"""JSON Schema validation of declaration data, with file and line in errors.

Schemas are package data (``schemas/*.json``), registered in a
:class:`referencing.Registry` that never retrieves anything: a ``$ref`` to a
URL or a file is an unresolvable reference, not a network or disk read
(security.md E4). Every error is kept (dbt's ``iter_errors``), not just the
first, and turned into a :class:`~xinshu.errors.DeclarationError` pointing at
the offending key.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import referencing
from jsonschema.exceptions import ValidationError, best_match
from referencing.exceptions import Unresolvable

from xinshu.declarations.loader import LoadedFile, format_path, key_line
from xinshu.errors import DeclarationError

KINDS = ("instrument", "levels", "alert_rules", "intervention", "import_profile", "norm_set", "interview_form")


@cache
def _registry() -> referencing.Registry:
    resources_ = []
    for name in (*KINDS, "common"):
        schema = load_schema(name)
        resources_.append((schema["$id"], referencing.Resource.from_contents(schema)))
    return referencing.Registry().with_resources(resources_)


@cache
def load_schema(kind: str) -> dict:
    """Return the committed JSON Schema for ``kind`` (``instrument``, ...)."""
    text = resources.files("xinshu.declarations").joinpath(f"schemas/{kind}.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def validator_for(kind: str) -> jsonschema.protocols.Validator:
    """A validator for ``kind``, its draft picked from the schema's ``$schema``."""
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, registry=_registry())


def validate_data(
    data: Any,
    schema: dict | str,
    loaded: LoadedFile,
    prefix: tuple = (),
) -> list[DeclarationError]:
    """Validate ``data`` against a schema (a kind name or a schema dict).

    :param prefix: the key path of ``data`` inside the file, for messages and
        line lookup (used for plugin option fragments).
    :return: every error, sorted by line.
    """
    if isinstance(schema, str):
        validator = validator_for(schema)
    else:
        validator = jsonschema.validators.validator_for(schema)(schema, registry=_registry())
    errors = []
    try:
        found = list(validator.iter_errors(data))
    except Unresolvable as exc:
        return [DeclarationError(loaded.display, 1, format_path(prefix), f"unresolvable $ref: {exc}")]
    for error in found:
        errors.append(_convert(error, loaded, prefix))
    return sorted(set(errors), key=lambda e: (e.line, e.path))


def _convert(error: ValidationError, loaded: LoadedFile, prefix: tuple) -> DeclarationError:
    for _ in range(2):  # a condition's leaf can itself be a choice (change: worsened_by | band_worsened_by)
        if error.validator in ("oneOf", "anyOf") and error.context:
            error = best_match(_fitting_branches(error))
    path = prefix + tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        if extras:
            key = extras[0]
            line = key_line(loaded.root, path, key)
            return DeclarationError(loaded.display, line, format_path((*path, key)), f"unknown key {key!r}")
    return DeclarationError(loaded.display, loaded.line_of(path), format_path(path), _message(error))


def _fitting_branches(error: ValidationError) -> list[ValidationError]:
    """Errors of the ``oneOf`` branches the instance was meant for: drop branches
    whose own required key is absent, so a malformed ``{teacher_report: [x]}``
    is reported as what is wrong with it, not as "'all' is a required property"."""
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    fitting = [
        errors
        for errors in branches.values()
        if not any(e.validator == "required" and len(e.relative_schema_path) == 2 for e in errors)
    ]
    return [e for errors in fitting for e in errors] or list(error.context)


def _message(error: ValidationError) -> str:
    if error.validator == "type" and isinstance(error.instance, (int, float)) and error.validator_value == "string":
        return f"{error.message} (quote it in YAML, e.g. '{error.instance}')"
    if error.validator == "const":
        return f"must be {error.validator_value!r}, got {error.instance!r}"
    return error.message
