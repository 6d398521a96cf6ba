"""What a username may be: the users service refuses other names, and the rides service knows
without asking that no user has one.

Usernames are case-sensitive and end up in URL paths (``/api/v1/users/{username}``), so the
names a path cannot carry faithfully are refused: empty, ``.`` and ``..`` (proxies normalise them
away), anything with ``/``, and control characters (Unicode category Cc, which includes NUL).
Length is counted in Unicode code points.
"""

from __future__ import annotations

import unicodedata
from typing import Any

MAX_USERNAME = 256


def username_problem(name: Any) -> str | None:
    """Why ``name`` cannot be a username, or None when it can."""
    if not isinstance(name, str):
        return "The username must be a string."
    if not name:
        return "The username must not be empty."
    if len(name) > MAX_USERNAME:
        return f"The username must be at most {MAX_USERNAME} characters."
    if name in (".", ".."):
        return "The username cannot be '.' or '..'."
    if "/" in name:
        return "The username cannot contain '/'."
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "The username cannot contain control characters."
    return None
