"""The users service's rules, as pure functions: what a username and a password may be, and how
a password is stored.

What a username may be is ``rideshare.usernames`` (the rides service checks names too).

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
from typing import Any

from rideshare.errors import BadRequest
from rideshare.usernames import username_problem

ITERATIONS = 1000
SALT_BYTES = 16
_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}")


def check_username(name: Any) -> str:
    problem = username_problem(name)
    if problem is not None:
        raise BadRequest(problem)
    return str(name)


def check_password(password: Any) -> str:
    """The password as given (a SHA1 hex digest: exactly 40 hex digits, either case)."""
    if not isinstance(password, str) or _SHA1_HEX.fullmatch(password) is None:
        raise BadRequest("The password must be a SHA1 hex digest: exactly 40 hex digits.")
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
