"""Bookings (SPEC §4)."""
