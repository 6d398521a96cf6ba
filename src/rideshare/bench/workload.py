"""The data a run works on, the same for RideShare and for the direct baseline: new usernames,
future departure times, area pairs, and the users and rides seeded before the cells."""

from __future__ import annotations

import hashlib
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field

from rideshare.bench.load import Op, Outcome

AREAS = range(1, 199)  # areas 1..198 (docs/areas.md)
TIMESTAMP_FORMAT = "%d-%m-%Y:%S-%M-%H"  # DD-MM-YYYY:SS-MM-HH
SEED_USERS = 100
SEED_PAIRS = 10
RIDES_PER_PAIR = 20

#: The mix: 80 % reads, 20 % writes.
MIX = (("list-rides", 40), ("ride-details", 40), ("create-ride", 10), ("join-ride", 10))


def future_time() -> int:
    """Whole seconds, 1 to 30 days ahead: upcoming whatever the stack's time zone."""
    return int(time.time()) + random.randint(86_400, 30 * 86_400)


def timestamp(seconds: int) -> str:
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime(seconds))


def random_pair() -> tuple[int, int]:
    source, destination = random.sample(AREAS, 2)
    return source, destination


def password_for(name: str) -> str:
    """A SHA1 hex digest, as clients send (docs/api.md)."""
    return hashlib.sha1(name.encode()).hexdigest()


@dataclass
class Seeded:
    """What one system holds before the cells run: users, rides and who created each."""

    users: list[str] = field(default_factory=list)
    rides: list[int] = field(default_factory=list)
    creators: dict[int, str] = field(default_factory=dict)
    pairs: list[tuple[int, int]] = field(default_factory=list)

    def add_ride(self, ride_id: int, creator: str) -> None:
        self.rides.append(ride_id)
        self.creators[ride_id] = creator

    def joiner(self, ride_id: int) -> str:
        """A user who is not the ride's creator (a creator may not join their own ride)."""
        while True:
            name = random.choice(self.users)
            if name != self.creators[ride_id]:
                return name


class Names:
    """Unique usernames for one system in one run (a run never collides with another)."""

    def __init__(self, system: str) -> None:
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}-{system}"
        self._counter = itertools.count(1)
        self.created: list[str] = []

    def next(self) -> str:
        name = f"{self.prefix}-{next(self._counter)}"
        self.created.append(name)
        return name


def seed_plan() -> list[tuple[int, int]]:
    """The area pairs whose ride lists are read: SEED_PAIRS distinct pairs."""
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < SEED_PAIRS:
        pairs.add(random_pair())
    return sorted(pairs)


def pick_mix() -> str:
    return random.choices([name for name, _ in MIX], weights=[w for _, w in MIX])[0]


def with_mix(table: dict[str, Op]) -> dict[str, Op]:
    """The scenarios, plus ``mix``: each of its requests is one of theirs, drawn by ``MIX``."""

    async def mix(client: int) -> Outcome:
        return await table[pick_mix()](client)

    return {**table, "mix": mix}
