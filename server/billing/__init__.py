"""Billing (SPEC §4)."""
