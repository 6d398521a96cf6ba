"""The rides service (docs/api.md, "Rides")."""
