"""Kiosk live state from the wire: presence, slots, faults, command results (SPEC §1).

`service.KioskStateService.apply_batch` is what the bridge calls; `rules` holds the pure
ordering and reconciliation rules; `jobs.mark_silent_kiosks_offline` is the presence timeout.
"""
