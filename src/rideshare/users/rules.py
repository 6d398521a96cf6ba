"""The users service's rules, as pure functions: what a username and a password may be, and how
a password is stored.

Usernames are case-sensitive and end up in URL paths (``/api/v1/users/{username}``), so the
names a path cannot carry faithfully are refused: empty, ``.`` and ``..`` (proxies normalise them
away), anything with ``/``, and control characters (Unicode category Cc, which includes NUL).
Length is counted in Unicode code points.

Passwords arrive as the client's SHA1 hex digest. We store only a salted PBKDF2-SHA256 hash of the
digest, as ``pbkdf2_sha256$<iterations>$<salt hex>$<hash hex>``. The digest is normalised to lower
case first (it is the same digest either way). 1000 iterations: the input is already a hash and
nothing in the API checks passwords yet, so the cost is kept small (well under a millisecond)
while a leaked table still needs a salted brute force per user; raise ``ITERATIONS`` when logins
arrive, old hashes keep working because each records its own count.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from typing import Any

MAX_USERNAME = 256
ITERATIONS = 1000
SALT_BYTES = 16
_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")


class RuleError(ValueError):
    """Input that breaks a rule; the message is the sentence the client gets with its 400."""


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


def check_username(name: Any) -> str:
    problem = username_problem(name)
    if problem is not None:
        raise RuleError(problem)
    return str(name)


def check_password(password: Any) -> str:
    """The password as given (a SHA1 hex digest: exactly 40 hex digits, either case)."""
    if not isinstance(password, str) or _SHA1_HEX.fullmatch(password) is None:
        raise RuleError("The password must be a SHA1 hex digest: exactly 40 hex digits.")
    return password


def _derive(digest: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", digest.lower().encode("ascii"), salt, iterations)


def hash_password(digest: str, iterations: int = ITERATIONS) -> str:
    """A salted hash of a checked password digest, as stored in ``users.password_hash``."""
    salt = secrets.token_bytes(SALT_BYTES)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${_derive(digest, salt, iterations).hex()}"


def verify_password(digest: str, stored: str) -> bool:
    """True when ``digest`` is the password that ``stored`` was made from."""
    try:
        scheme, iterations, salt_hex, hash_hex = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        derived = _derive(digest, bytes.fromhex(salt_hex), int(iterations))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(derived.hex(), hash_hex)
