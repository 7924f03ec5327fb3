"""The public GBFS 3.0 feed (SPEC §5; issue 5)."""
