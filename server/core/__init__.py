"""Plumbing shared by every domain: db sessions, clock, shared state, errors, ids. No rules."""
