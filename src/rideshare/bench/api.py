"""The scenarios through RideShare's public API (the gateway), and the seeding they need."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from rideshare.bench.common import Client, HttpClients
from rideshare.bench.load import Op, Outcome
from rideshare.bench.workload import (
    RIDES_PER_PAIR,
    SEED_USERS,
    Names,
    Seeded,
    future_time,
    password_for,
    random_pair,
    seed_plan,
    timestamp,
    with_mix,
)

JSON = {"content-type": "application/json"}
#: The status each scenario answers when all is well (docs/api.md).
EXPECTED: dict[str, set[Outcome]] = {
    "create-user": {201}, "create-ride": {201}, "list-rides": {200}, "ride-details": {200},
    "join-ride": {200}, "mix": {200, 201},
}


async def create_user(http: Client | httpx.AsyncClient, name: str) -> int:
    body = {"username": name, "password": password_for(name)}
    r = await http.put("/api/v1/users", headers=JSON, content=orjson.dumps(body))
    return r.status_code


async def create_ride(http: Client | httpx.AsyncClient, creator: str,
                      pair: tuple[int, int]) -> tuple[int, Any]:
    body = {"created_by": creator, "timestamp": timestamp(future_time()),
            "source": pair[0], "destination": pair[1]}
    r = await http.post("/api/v1/rides", headers=JSON, content=orjson.dumps(body))
    return r.status_code, (r.json().get("rideId") if r.status_code == 201 else None)


def ops(http: HttpClients, names: Names, seeded: Seeded) -> dict[str, Op]:
    """One request of each scenario, as a client of the public API sends it (client ``c``
    uses its own keep-alive connection)."""

    async def new_user(c: int) -> Outcome:
        return await create_user(http[c], names.next())

    async def new_ride(c: int) -> Outcome:
        status, _ride = await create_ride(http[c], random.choice(seeded.users), random_pair())
        return status

    async def list_rides(c: int) -> Outcome:
        source, destination = random.choice(seeded.pairs)
        r = await http[c].get("/api/v1/rides", params={"source": source,
                                                        "destination": destination})
        return r.status_code

    async def details(c: int) -> Outcome:
        r = await http[c].get(f"/api/v1/rides/{random.choice(seeded.rides)}")
        return r.status_code

    async def join(c: int) -> Outcome:
        ride = random.choice(seeded.rides)
        r = await http[c].post(f"/api/v1/rides/{ride}", headers=JSON,
                               content=orjson.dumps({"username": seeded.joiner(ride)}))
        return r.status_code

    return with_mix({"create-user": new_user, "create-ride": new_ride, "list-rides": list_rides,
                     "ride-details": details, "join-ride": join})


async def bounded(jobs: list[Callable[[], Awaitable[None]]], concurrency: int) -> None:
    """Run ``jobs`` with at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


async def seed(http: httpx.AsyncClient, names: Names, concurrency: int = 16) -> Seeded:
    """SEED_USERS users, and RIDES_PER_PAIR upcoming rides on each of the listed pairs."""
    seeded = Seeded(pairs=seed_plan())

    async def user() -> None:
        name = names.next()
        status = await create_user(http, name)
        if status != 201:
            raise RuntimeError(f"seeding: PUT /api/v1/users answered {status}")
        seeded.users.append(name)

    await bounded([user for _ in range(SEED_USERS)], concurrency)

    def ride(pair: tuple[int, int]) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            creator = random.choice(seeded.users)
            status, ride_id = await create_ride(http, creator, pair)
            if status != 201 or not isinstance(ride_id, int):
                raise RuntimeError(f"seeding: POST /api/v1/rides answered {status} "
                                   "(it must answer 201 {\"rideId\": n})")
            seeded.add_ride(ride_id, creator)
        return job

    await bounded([ride(p) for p in seeded.pairs for _ in range(RIDES_PER_PAIR)], concurrency)
    return seeded


async def delete_users(http: httpx.AsyncClient, names: list[str], concurrency: int = 16) -> int:
    """Delete what the run created on someone's stack (their rides and joins go with them)."""
    deleted = 0

    def job(name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            nonlocal deleted
            try:
                r = await http.delete(f"/api/v1/users/{name}")
                deleted += r.status_code == 200
            except httpx.HTTPError:
                pass
        return run

    await bounded([job(n) for n in names], concurrency)
    return deleted
