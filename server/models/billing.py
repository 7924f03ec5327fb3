"""Advertiser invoices: prepaid orders and monthly statements (SPEC §4 Billing)."""

from __future__ import annotations
