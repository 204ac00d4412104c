"""Counters behind the security summary printed at the end of every test run.

Security tests call :func:`count` as they go (routes × roles tried, unauthorised
2xx answers, CSRF-less POSTs accepted, dangerous export cells left unescaped,
sensitive reads without an audit row, ...). ``tests/conftest.py`` prints the
totals in ``pytest_terminal_summary`` (security.md §6, figures 2, 3, 6, 7, 8; and the
injection, XSS and log-hygiene sweeps of tests/security).
The "must be 0" figures are also asserted by the tests that count them, so a
non-zero figure always comes with a failing test.
"""

from __future__ import annotations

from collections import Counter

#: (key, label, must be zero) in the order printed.
FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("routes_roles_tried", "routes x roles tried", False),
    ("unauthorized_2xx", "unauthorized 2xx responses", True),
    ("idor_attempts", "cross-school record requests tried", False),
    ("idor_leaks", "cross-school records leaked", True),
    ("admin_views_checked", "admin views checked for an is_accessible override", False),
    ("admin_views_open", "admin views without an is_accessible override", True),
    ("csrf_posts_tried", "state-changing POSTs tried without a CSRF token", False),
    ("csrf_less_accepted", "CSRF-less POSTs accepted", True),
    ("export_cells_checked", "dangerous export cells checked", False),
    ("unescaped_cells", "unescaped dangerous export cells", True),
    ("deidentified_hits", "identifier regex hits in de-identified exports", True),
    ("sensitive_reads_tried", "sensitive reads tried", False),
    ("unaudited_reads", "sensitive reads without an audit row", True),
    ("sql_text_findings", "SQL text() built from strings", True),
    ("export_rows_streamed", "rows in the large streamed export (D4)", False),
    ("sort_injections_tried", "sort/filter/page injections tried on list views", False),
    ("injection_errors", "injections answered 5xx, with SQL error text or reaching the SQL text", True),
    ("xss_pages_checked", "pages checked for stored XSS", False),
    ("xss_unescaped", "stored XSS payloads rendered unescaped", True),
    ("malicious_rule_files", "malicious rule/schema files tried", False),
    ("rule_code_or_network", "malicious rule files that ran code or reached the network", True),
    ("ruleset_changed_by_rejected", "rejected rule files that changed the active rules", True),
    ("log_records_scanned", "log records scanned", False),
    ("log_identifier_hits", "identifiers, names or secrets in logs", True),
)

_counts: Counter[str] = Counter()
_seen: set[str] = set()


def count(key: str, n: int = 1) -> None:
    """Add ``n`` to the figure ``key`` (one of :data:`FIGURES`)."""
    if key not in {k for k, _label, _zero in FIGURES}:
        raise KeyError(f"unknown security figure {key!r}")
    _counts[key] += n
    _seen.add(key)


def lines() -> list[str]:
    """The summary lines, ``label: value`` (figures no test touched say "not run")."""
    out = []
    for key, label, must_be_zero in FIGURES:
        if key not in _seen:
            out.append(f"{label}: not run")
            continue
        flag = "  <-- must be 0" if must_be_zero and _counts[key] else ""
        out.append(f"{label}: {_counts[key]}{flag}")
    return out
