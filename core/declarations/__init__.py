"""Declarations: instruments, warning levels, alert rules, intervention
templates and answer-import profiles, written in YAML and validated by the JSON
Schemas in ``schemas/``.

:func:`xinshu.declarations.registry.load_declarations` reads a whole set and
either returns a :class:`~xinshu.declarations.registry.Declarations` or raises
:class:`xinshu.errors.DeclarationsInvalid` with every error found, each as
``file:line: key.path: message``.
"""
