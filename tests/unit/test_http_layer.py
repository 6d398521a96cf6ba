"""The shared HTTP layer, in process: the error model (400 never 422, 404, 405 + Allow, JSON
everywhere), what ``_count`` counts, and how the request counter keeps its deltas.

Only behaviour that is decided before any data is touched is checked here; the DBaaS address
points at a closed port. Everything that needs data is in tests/integration.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rideshare.config import Settings
from rideshare.dbclient import DBUnavailable
from rideshare.http.counter import RequestCounter
from rideshare.rides.app import create_app as create_rides
from rideshare.users.app import create_app as create_users


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[dict[str, tuple[FastAPI, httpx.AsyncClient]]]:
    nowhere = closed_port_url()
    settings = Settings(orchestrator_url=nowhere, gateway_url=nowhere)
    out: dict[str, tuple[FastAPI, httpx.AsyncClient]] = {}
    apps = {"users": create_users(settings), "rides": create_rides(settings)}
    async with apps["users"].router.lifespan_context(apps["users"]):
        async with apps["rides"].router.lifespan_context(apps["rides"]):
            for name, app in apps.items():
                transport = httpx.ASGITransport(app=app)
                out[name] = (app, httpx.AsyncClient(transport=transport, base_url="http://t"))
            yield out
            for _, client in out.values():
                await client.aclose()


def _is_json_error(response: httpx.Response) -> bool:
    body = response.json()
    return response.headers["content-type"].startswith("application/json") and isinstance(
        body.get("error"), str
    ) and body["error"].endswith(".")


@pytest.mark.parametrize(
    ("service", "method", "path", "allow"),
    [
        ("users", "POST", "/api/v1/users", "GET, PUT"),
        ("users", "DELETE", "/api/v1/users", "GET, PUT"),
        ("users", "PUT", "/api/v1/users/alice", "DELETE, GET"),
        ("rides", "PUT", "/api/v1/rides", "GET, POST"),
        ("rides", "POST", "/api/v1/rides/count", "GET"),
        ("rides", "DELETE", "/api/v1/rides/count", "GET"),
        ("rides", "PUT", "/api/v1/rides/count", "GET"),
        ("rides", "PATCH", "/api/v1/rides/3", "DELETE, GET, POST"),
        ("rides", "PUT", "/api/v1/_count", "DELETE, GET"),
        ("users", "GET", "/api/v1/db/clear", "POST"),
    ],
)
async def test_other_method_is_405_with_allow(
    clients: dict[str, Any], service: str, method: str, path: str, allow: str
) -> None:
    _, client = clients[service]
    response = await client.request(method, path, content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert _is_json_error(response)


@pytest.mark.parametrize(
    ("service", "path"),
    [("users", "/api/v1/users/a/b"), ("users", "/api/v1/users/"), ("users", "/api/v1/rides"),
     ("rides", "/api/v1/rides/1/2"), ("rides", "/api/v1/users"), ("rides", "/nope"),
     ("rides", "/api/v1/rides/")],
)
async def test_unknown_path_is_404_json(clients: dict[str, Any], service: str, path: str) -> None:
    _, client = clients[service]
    response = await client.get(path)
    assert response.status_code == 404
    assert _is_json_error(response)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"null", b"[]", b'"x"', b"1", b'{"username": "a"}', b'{"password": "a"}',
     b'{"username": "a", "password": "' + b"a" * 40 + b'", "admin": true}',
     b'{"username": 1, "password": "' + b"a" * 40 + b'"}',
     b'{"username": "a", "password": "short"}', b'{"username": "a/b", "password": "' + b"a" * 40
     + b'"}', b"\xff\xfe", b'{"username": "\\ud800", "password": "x"}'],
)
async def test_bad_user_bodies_are_400(clients: dict[str, Any], body: bytes) -> None:
    _, client = clients["users"]
    response = await client.put("/api/v1/users", content=body)
    assert response.status_code == 400
    assert _is_json_error(response)


@pytest.mark.parametrize(
    "body",
    [b"{}", b"[1]", b'{"created_by": "a"}',
     b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": 1, "destination": 2, '
     b'"x": 1}',
     b'{"created_by": "a", "timestamp": "01-01-2000:00-00-00", "source": 1, "destination": 2}',
     b'{"created_by": "a", "timestamp": "2099-01-01", "source": 1, "destination": 2}',
     b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": 1.0, "destination": 2}',
     b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": true, "destination": 2}',
     b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": 1, "destination": 1}',
     b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": 1, "destination": 999}',
     b'{"created_by": 7, "timestamp": "01-01-2099:00-00-00", "source": 1, "destination": 2}'],
)
async def test_bad_ride_bodies_are_400(clients: dict[str, Any], body: bytes) -> None:
    _, client = clients["rides"]
    response = await client.post("/api/v1/rides", content=body)
    assert response.status_code == 400
    assert _is_json_error(response)


@pytest.mark.parametrize(
    "query",
    ["", "?source=1", "?destination=2", "?source=a&destination=2", "?source=1&destination=1",
     "?source=0&destination=2", "?source=1.0&destination=2", "?source=1&source=3&destination=2"],
)
async def test_bad_ride_queries_are_400(clients: dict[str, Any], query: str) -> None:
    _, client = clients["rides"]
    response = await client.get("/api/v1/rides" + query)
    assert response.status_code == 400
    assert _is_json_error(response)


@pytest.mark.parametrize("ride_id", ["abc", "0", "-1", "1.5", str(2**63), "9" * 400])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_bad_ride_ids_are_400(clients: dict[str, Any], ride_id: str, method: str) -> None:
    _, client = clients["rides"]
    response = await client.request(method, f"/api/v1/rides/{ride_id}", content=b'{"username":"a"}')
    assert response.status_code == 400
    assert _is_json_error(response)


async def test_idempotency_key_must_be_printable_ascii(clients: dict[str, Any]) -> None:
    _, client = clients["users"]
    body = b'{"username": "a", "password": "' + b"a" * 40 + b'"}'
    for key in ["x" * 201, "caf\u00e9"]:
        response = await client.put(
            "/api/v1/users", content=body, headers={"Idempotency-Key": key.encode("latin-1")}
        )
        assert response.status_code == 400, key
        assert "Idempotency-Key" in response.json()["error"]


async def test_service_down_is_503_json(clients: dict[str, Any]) -> None:
    _, client = clients["users"]
    response = await client.get("/api/v1/users")
    assert response.status_code == 503
    assert _is_json_error(response)


async def test_users_service_down_is_503_from_rides(clients: dict[str, Any]) -> None:
    _, client = clients["rides"]
    body = b'{"created_by": "a", "timestamp": "01-01-2099:00-00-00", "source": 1, "destination": 2}'
    response = await client.post("/api/v1/rides", content=body)
    assert response.status_code == 503
    assert "users service" in response.json()["error"]


async def test_huge_body_on_service_port_is_413(clients: dict[str, Any]) -> None:
    _, client = clients["users"]
    response = await client.put("/api/v1/users", content=b" " * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert _is_json_error(response)


async def test_health(clients: dict[str, Any]) -> None:
    for _, client in clients.values():
        response = await client.get("/health")
        assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_count_counts_own_paths_only(clients: dict[str, Any]) -> None:
    users_app, users = clients["users"]
    rides_app, rides = clients["rides"]
    before_u, before_r = users_app.state.counter.pending, rides_app.state.counter.pending
    await users.post("/api/v1/users")  # 405: counts
    await users.put("/api/v1/users", content=b"{")  # 400: counts
    await users.get("/api/v1/users/a/b")  # unknown path: not counted
    await users.get("/health")
    await users.get("/metrics")
    await users.get("/docs")
    await users.post("/api/v1/_count")  # 405 on _count: not counted
    await rides.post("/api/v1/rides/count")  # 405: counts
    await rides.get("/api/v1/rides/x")  # 400: counts
    await rides.get("/api/v1/rides?source=1")  # 400: counts
    await rides.get("/api/v1/rides/1/2")  # unknown path: not counted
    assert users_app.state.counter.pending - before_u == 2
    assert rides_app.state.counter.pending - before_r == 3


async def test_metrics_are_exposed(clients: dict[str, Any]) -> None:
    _, client = clients["rides"]
    await client.get("/api/v1/rides/x")
    text = (await client.get("/metrics")).text
    route = "/api/v1/rides/{ride_id:ride_segment}"
    labels = f'method="GET",route="{route}",service="rides",status="400"'
    sample = f"rideshare_http_requests_total{{{labels}}}"
    assert sample in text


class _FlakyDB:
    """Stands in for DBClient in the counter's unit tests: fails the first ``fail`` writes."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.applied: dict[str, int] = {}
        self.count = 0
        self.write_ids: list[str | None] = []

    async def write(self, ops: list[dict[str, Any]], write_id: str | None = None) -> dict[str, Any]:
        self.write_ids.append(write_id)
        if self.fail:
            self.fail -= 1
            raise DBUnavailable("down")
        if write_id is not None and write_id in self.applied:
            return {}
        update = ops[1]
        if "add" in update:
            self.count += update["add"]["count"]
        else:
            self.count = update["set"]["count"]
        if write_id is not None:
            self.applied[write_id] = 1
        return {}

    async def read(self, query: dict[str, Any]) -> dict[str, Any]:
        return {"rows": [{"count": self.count}]}


async def test_failed_flush_keeps_the_delta_and_retries_with_the_same_id() -> None:
    db = _FlakyDB(fail=2)
    counter = RequestCounter(db, "users")  # type: ignore[arg-type]
    counter.add(3)
    for _ in range(2):
        with pytest.raises(DBUnavailable):
            await counter.flush()
        assert counter.pending == 3
    counter.add(2)
    await counter.flush()  # the retried delta of 3, under its first id
    assert db.write_ids[0] == db.write_ids[1] == db.write_ids[2]
    assert await counter.value() == 5  # then the 2 that came meanwhile
    assert counter.pending == 0


async def test_reset_drops_pending_and_sets_zero() -> None:
    db = _FlakyDB()
    counter = RequestCounter(db, "rides")  # type: ignore[arg-type]
    counter.add(4)
    assert await counter.value() == 4
    counter.add(9)
    await counter.reset()
    assert counter.pending == 0 and await counter.value() == 0


async def test_background_flush_and_stop() -> None:
    db = _FlakyDB(fail=1)
    counter = RequestCounter(db, "rides", interval_s=0.01)  # type: ignore[arg-type]
    counter.start()
    counter.add(7)
    for _ in range(500):  # poll: the first flush fails, a later one succeeds
        if db.count == 7:
            break
        await asyncio.sleep(0.01)
    counter.add(1)
    await counter.stop()  # flushes what is left
    assert db.count == 8


class _HangingDB(_FlakyDB):
    async def write(self, ops: list[dict[str, Any]], write_id: str | None = None) -> dict[str, Any]:
        await asyncio.Event().wait()  # never answers
        return {}


async def test_a_flush_that_times_out_is_a_503_and_keeps_the_delta() -> None:
    counter = RequestCounter(_HangingDB(), "users", timeout_s=0.05)  # type: ignore[arg-type]
    counter.add(2)
    with pytest.raises(DBUnavailable):
        await counter.value()
    assert counter.pending == 2
