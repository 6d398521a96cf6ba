"""The users service (docs/api.md, "Users")."""
