"""Back-office pages for referrals, the partner directory, the parent ledger, consent and resources."""

from __future__ import annotations
