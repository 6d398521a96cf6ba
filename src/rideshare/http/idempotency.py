"""The ``Idempotency-Key`` header (beyond the original; docs/api.md): a retry with the same key
gets the first attempt's answer and is applied once.

The key becomes the write id of the DBaaS write; the master stores each write id's result and
returns it on a repeat. The id is ``idem:<service>:<route>:<sha256 of the key>``: hashing keeps it
within the DBaaS's 200-character limit for any key a client may send, and the service and route
in it keep one key used on two endpoints from answering one with the other's result.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request

from rideshare.errors import BadRequest

HEADER = "Idempotency-Key"
MAX_KEY = 200


def check_key(key: str) -> str:
    """A key is 1..200 printable ASCII characters (space to ``~``)."""
    if not 0 < len(key) <= MAX_KEY or any(not " " <= ch <= "~" for ch in key):
        raise BadRequest(f"The {HEADER} header must be 1 to {MAX_KEY} printable ASCII characters.")
    return key


def write_id(request: Request, service: str, route: str) -> str | None:
    """The write id for this request's ``Idempotency-Key``, or None when it sent none."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"Send the {HEADER} header once.")
    digest = hashlib.sha256(check_key(values[0]).encode("ascii")).hexdigest()
    return f"idem:{service}:{route}:{digest}"
