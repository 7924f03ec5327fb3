"""Kiosk registry: registration, credentials, listing, detail and nearby search (SPEC §1, §2)."""
