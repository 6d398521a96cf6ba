"""The gateway: nginx with path-based routing, configured from a template."""
