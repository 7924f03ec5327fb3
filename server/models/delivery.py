"""Proof of play, make-goods, credits and advertiser invoices (SPEC §4 delivery, billing)."""

from __future__ import annotations
