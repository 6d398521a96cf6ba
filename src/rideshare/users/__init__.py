"""The users service (SPEC §2)."""
