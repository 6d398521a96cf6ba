"""The rides service (SPEC §3)."""
