"""Delivery (SPEC §4)."""
