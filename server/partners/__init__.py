"""City partners (SPEC §5). Minimal for now: create and list."""
