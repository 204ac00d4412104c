"""SMS channel: the documented plugin interface and one reference implementation."""

from __future__ import annotations
