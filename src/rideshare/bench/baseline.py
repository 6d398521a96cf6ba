"""The scenarios' data work done directly on PostgreSQL: what RideShare's services and workers
must at least do for each request, with nothing in between (no HTTP, no queue, no replica).

    create-user   insert the user
    create-ride   select the creator, insert the ride
    list-rides    select the upcoming rides of a pair, earliest first
    ride-details  select the ride and its members, from one snapshot
    join-ride     insert the membership (a repeat is a no-op)

Generated values (created_seq, ride ids) come from counters in this process, not from the
workers' counter table: the baseline is the least work that answers each request.
"""

from __future__ import annotations

import itertools
import random
import time

from psycopg_pool import AsyncConnectionPool

from rideshare.bench.load import Op, Outcome
from rideshare.bench.workload import (
    RIDES_PER_PAIR,
    SEED_USERS,
    Names,
    Seeded,
    future_time,
    random_pair,
    seed_plan,
    with_mix,
)

#: What the users service stores for a password (pbkdf2_sha256$1000$<salt>$<hash>): the same
#: length; the baseline does not spend CPU on hashing, it only stores.
PASSWORD_HASH = "pbkdf2_sha256$1000$" + "a" * 32 + "$" + "b" * 64

INSERT_USER = "INSERT INTO users (username, password_hash, created_seq) VALUES (%s, %s, %s)"
SELECT_USER = "SELECT 1 FROM users WHERE username = %s"
INSERT_RIDE = ("INSERT INTO rides (ride_id, created_by, ride_time, source, destination,"
               " created_seq) VALUES (%s, %s, %s, %s, %s, %s)")
LIST_RIDES = ("SELECT ride_id, created_by, ride_time FROM rides WHERE source = %s AND"
              " destination = %s AND ride_time > %s ORDER BY ride_time, ride_id")
SELECT_RIDE = ("SELECT ride_id, created_by, ride_time, source, destination FROM rides"
               " WHERE ride_id = %s")
SELECT_MEMBERS = "SELECT username FROM ride_members WHERE ride_id = %s ORDER BY joined_seq"
INSERT_MEMBER = ("INSERT INTO ride_members (ride_id, username, joined_seq) VALUES (%s, %s, %s)"
                 " ON CONFLICT DO NOTHING")


class Counters:
    """Positions and ride ids, as the master would hand them out (never reused)."""

    def __init__(self) -> None:
        self.seq = itertools.count(1)
        self.ride_id = itertools.count(1)


def ops(pool: AsyncConnectionPool, names: Names, seeded: Seeded, counters: Counters
        ) -> dict[str, Op]:
    async def new_user(_: int) -> Outcome:
        async with pool.connection() as conn:
            await conn.execute(INSERT_USER, (names.next(), PASSWORD_HASH, next(counters.seq)))
        return 201

    async def new_ride(_: int) -> Outcome:
        creator = random.choice(seeded.users)
        source, destination = random_pair()
        async with pool.connection() as conn:
            cur = await conn.execute(SELECT_USER, (creator,))
            if await cur.fetchone() is None:
                return 400
            await conn.execute(INSERT_RIDE, (next(counters.ride_id), creator, future_time(),
                                             source, destination, next(counters.seq)))
        return 201

    async def list_rides(_: int) -> Outcome:
        source, destination = random.choice(seeded.pairs)
        async with pool.connection() as conn:
            cur = await conn.execute(LIST_RIDES, (source, destination, int(time.time())))
            return 200 if await cur.fetchall() else 204

    async def details(_: int) -> Outcome:
        ride_id = random.choice(seeded.rides)
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = await conn.execute(SELECT_RIDE, (ride_id,))
            ride = await cur.fetchone()
            cur = await conn.execute(SELECT_MEMBERS, (ride_id,))
            await cur.fetchall()
        return 200 if ride else 204

    async def join(_: int) -> Outcome:
        ride_id = random.choice(seeded.rides)
        async with pool.connection() as conn:
            await conn.execute(INSERT_MEMBER, (ride_id, seeded.joiner(ride_id),
                                               next(counters.seq)))
        return 200

    return with_mix({"create-user": new_user, "create-ride": new_ride, "list-rides": list_rides,
                     "ride-details": details, "join-ride": join})


async def seed(pool: AsyncConnectionPool, names: Names, counters: Counters) -> Seeded:
    """The same amounts as the API seeding: users, then rides on each listed pair."""
    seeded = Seeded(pairs=seed_plan())
    users = [names.next() for _ in range(SEED_USERS)]
    rides = []
    for pair in seeded.pairs:
        for _ in range(RIDES_PER_PAIR):
            ride_id, creator = next(counters.ride_id), random.choice(users)
            rides.append((ride_id, creator, future_time(), *pair, next(counters.seq)))
            seeded.add_ride(ride_id, creator)
    async with pool.connection() as conn:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_USER, [(u, PASSWORD_HASH, next(counters.seq))
                                                for u in users])
            await cur.executemany(INSERT_RIDE, rides)
    seeded.users.extend(users)
    return seeded
