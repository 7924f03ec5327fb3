"""Console and B-side accounts: operators, partners' and advertisers' users, their logins,
and the `Principal` every tenant-scoped endpoint checks (SPEC §4, §5 isolation)."""
