"""Back-office pages of the six-step case workflow (filled in by the workflow work)."""

from __future__ import annotations
