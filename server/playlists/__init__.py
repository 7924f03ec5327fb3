"""Playlists (SPEC §4)."""
