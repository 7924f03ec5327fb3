"""Creatives (SPEC §4)."""
