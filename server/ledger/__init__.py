"""The double-entry deposit ledger (SPEC §3). Chart of accounts: `rules.py`."""
