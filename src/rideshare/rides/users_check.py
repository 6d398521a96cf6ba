"""How the rides service learns whether a user exists: one HTTP request to the users service,
through the gateway, with ``Origin: <public_name>`` (it counts in the users ``_count``).

It uses the process's single keep-alive ``aiohttp.ClientSession``. A name that no user can have
(``rideshare.usernames``) is refused without a request: it could never exist, and names like
``..`` would not even reach the right path through a proxy.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import aiohttp

from rideshare.config import Settings
from rideshare.errors import Unavailable
from rideshare.usernames import username_problem

log = logging.getLogger(__name__)

UNAVAILABLE = "The users service is not answering; try again in a moment."


async def user_exists(http: aiohttp.ClientSession, settings: Settings, username: str) -> bool:
    """True if the users service knows ``username``; ``Unavailable`` (a 503) if it cannot tell."""
    if username_problem(username) is not None:
        return False
    url = f"{settings.gateway_url.rstrip('/')}/api/v1/users/{quote(username, safe='')}"
    try:
        async with http.get(url, headers={"Origin": settings.public_name}) as response:
            status = response.status
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("users service unreachable at %s: %r", url, exc)
        raise Unavailable(UNAVAILABLE, headers={"Retry-After": "1"}) from None
    if status == 200:
        return True
    if status == 404:
        return False
    log.warning("users service answered %s for %s", status, url)
    raise Unavailable(UNAVAILABLE, headers={"Retry-After": "1"})
