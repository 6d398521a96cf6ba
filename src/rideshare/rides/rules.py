"""The rides service's rules, as pure functions: timestamps, areas and ride ids.

Timestamps are exactly ``DD-MM-YYYY:SS-MM-HH`` in ASCII digits. The shape is checked with a
regex first because ``strptime`` alone is lenient (it takes ``1-1-2030:0-0-0`` and non-ASCII
digits); then ``strptime("%d-%m-%Y:%S-%M-%H")`` checks that it is a real date and time. The time
is read in the configured zone and stored as Unix seconds (UTC). A local time that the zone
skips (a DST gap) is refused, since it names no instant; one that it repeats takes the earlier
instant (fold=0).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from rideshare.areas import is_area
from rideshare.errors import BadRequest
from rideshare.schema import INT64_MAX

TIMESTAMP_FORMAT = "%d-%m-%Y:%S-%M-%H"
_TIMESTAMP_SHAPE = re.compile(r"[0-9]{2}-[0-9]{2}-[0-9]{4}:[0-9]{2}-[0-9]{2}-[0-9]{2}")
_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 19  # INT64_MAX has 19 digits; longer strings are refused before int()


def parse_timestamp(text: Any, zone: ZoneInfo) -> int:
    """Unix seconds for a ``DD-MM-YYYY:SS-MM-HH`` timestamp read in ``zone``."""
    if not isinstance(text, str) or _TIMESTAMP_SHAPE.fullmatch(text) is None:
        raise BadRequest(
            "The timestamp must be DD-MM-YYYY:SS-MM-HH, for example 26-01-2031:00-30-18."
        )
    try:
        naive = datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError:
        raise BadRequest(f"The timestamp {text!r} is not a real date and time.") from None
    local = naive.replace(tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        raise BadRequest(f"The local time {text!r} does not exist in the zone {zone.key}.")
    return int(instant.timestamp())


@lru_cache(maxsize=65536)
def format_timestamp(seconds: int, zone: ZoneInfo) -> str:
    """The ``DD-MM-YYYY:SS-MM-HH`` form of Unix ``seconds`` in ``zone`` (always zero-padded).
    Cached: the same rides are listed again and again, and this was a fifth of a list's cost."""
    t = datetime.fromtimestamp(seconds, zone)
    return f"{t.day:02d}-{t.month:02d}-{t.year:04d}:{t.second:02d}-{t.minute:02d}-{t.hour:02d}"


def parse_area(value: Any, what: str = "area") -> int:
    """An area number from a JSON integer or a string of ASCII digits (not bool, float, null)."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        significant = value.lstrip("0")
        number = int(significant or "0") if len(significant) <= _MAX_DIGITS else 0
    else:
        number = None
    if number is None:
        raise BadRequest(f"The {what} must be an area number, an integer from 1 to 198.")
    if not is_area(number):
        raise BadRequest(f"The {what} {number} is not a known area; areas are 1 to 198.")
    return number


def parse_ride_id(text: str) -> int:
    """A ride id from a URL path segment: a positive integer that fits in 64 bits."""
    significant = text.lstrip("0")
    if _DIGITS.fullmatch(text) is None or len(significant) > _MAX_DIGITS:
        raise BadRequest(f"The ride id {text[:40]!r} is not a positive integer of at most 64 bits.")
    number = int(significant or "0")
    if not 0 < number <= INT64_MAX:
        raise BadRequest(f"The ride id {text!r} is not a positive integer of at most 64 bits.")
    return number
