"""The DBaaS through the orchestrator: writes, reads, replication, idempotence, bad input."""

from __future__ import annotations

import asyncio
import random
import uuid

import aio_pika
import httpx
import orjson
import pytest

from tests.support import RunningStack, copies_agree, wait_until


def user_insert(name: str) -> dict:
    return {"op": "insert", "table": "users", "values": {"username": name, "password_hash": "h"}}


@pytest.fixture(scope="module")
def db(stack: RunningStack) -> httpx.Client:
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as client:
        yield client


def test_a_write_then_a_read_returns_it_and_clear_empties_every_worker(db, stack):
    name = f"u-{uuid.uuid4().hex[:8]}"
    written = db.post("/api/v1/db/write", json={"ops": [user_insert(name)]})
    assert written.status_code == 200, written.text
    assert written.json()["results"][0]["rowcount"] == 1
    read = db.post("/api/v1/db/read", json={"table": "users", "columns": ["username"],
                                            "where": {"username": name}})
    assert read.json() == {"rows": [{"username": name}]}

    assert db.post("/api/v1/db/clear").json() == {}
    assert db.post("/api/v1/db/read", json={"table": "users", "count": True}).json() == {"count": 0}
    copies = wait_until(lambda: copies_agree(stack), 30, "every copy agrees after clear")
    assert all(";users:0:" in ";" + c for _, c in copies.values())


def test_several_operations_in_one_write_apply_all_or_none(db):
    name = f"u-{uuid.uuid4().hex[:8]}"
    ok = db.post("/api/v1/db/write", json={"ops": [user_insert(name), {
        "op": "insert", "table": "rides", "values": {
            "created_by": name, "ride_time": 4_000_000_000, "source": 1, "destination": 2}}]})
    assert ok.status_code == 200, ok.text
    ride_id = ok.json()["results"][1]["generated"]["ride_id"]
    # The second insert conflicts, so the first (a new user) must not be stored either.
    other = f"u-{uuid.uuid4().hex[:8]}"
    refused = db.post("/api/v1/db/write", json={"ops": [user_insert(other), user_insert(name)]})
    assert refused.status_code == 409
    assert "error" in refused.json()
    count = db.post("/api/v1/db/read", json={"table": "users", "count": True,
                                             "where": {"username": other}})
    assert count.json() == {"count": 0}
    ride = db.post("/api/v1/db/read", json={"table": "rides", "where": {"ride_id": ride_id}})
    assert ride.json()["rows"][0]["created_by"] == name


async def test_reads_see_every_write_acknowledged_before_them(stack):
    """1,000 writes interleaved with reads from 16 clients (read-your-writes)."""
    acked: list[str] = []
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=30) as client:

        async def one_client(n: int) -> None:
            for i in range(1000 // 16 + 1):
                name = f"ryw-{n}-{i}-{uuid.uuid4().hex[:6]}"
                r = await client.post("/api/v1/db/write", json={"ops": [user_insert(name)]})
                assert r.status_code == 200, r.text
                acked.append(name)
                before = list(acked)
                sample = [before[-1], *random.sample(before, min(20, len(before)))]
                r = await client.post("/api/v1/db/read", json={"queries": [
                    {"table": "users", "count": True, "where": {"username": {"in": sample}}},
                    {"table": "users", "count": True,
                     "where": {"username": {"in": before[-200:]}}}]})
                assert r.status_code == 200, r.text
                got = [x["count"] for x in r.json()["results"]]
                if got != [len(set(sample)), len(set(before[-200:]))]:
                    failures.append(f"{name}: read {got}")

        await asyncio.gather(*(one_client(n) for n in range(16)))
    assert len(acked) >= 1000
    assert failures == []


async def test_after_5000_writes_master_and_both_slaves_hold_identical_data(make_stack):
    stack = make_stack()
    names = [f"c-{i}" for i in range(5000)]
    async with httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=60) as client:
        queue = asyncio.Queue()
        for name in names:
            queue.put_nowait(name)

        async def writer() -> None:
            while not queue.empty():
                name = queue.get_nowait()
                r = await client.post("/api/v1/db/write", json={"ops": [user_insert(name)]})
                assert r.status_code == 200, r.text
                if name == "c-2500":  # a second slave joins half-way through
                    r = await client.put("/api/v1/cluster/slaves", json={"desired": 2})
                    assert r.status_code == 200, r.text

        await asyncio.gather(*(writer() for _ in range(32)))
    wait_until(lambda: len(stack.cluster()["workers"]) == 3, 60, "three workers run")
    copies = wait_until(lambda: copies_agree(stack), 60, "master and both slaves agree")
    assert len(copies) == 3
    ((position, checksum),) = set(copies.values())
    assert position >= 5000 and ";users:5000:" in ";" + checksum


def test_the_same_write_id_is_applied_once(db):
    name = f"u-{uuid.uuid4().hex[:8]}"
    body = {"id": f"once-{name}", "ops": [user_insert(name), {
        "op": "insert", "table": "rides", "values": {
            "created_by": name, "ride_time": 4_000_000_000, "source": 3, "destination": 4}}]}
    first = db.post("/api/v1/db/write", json=body)
    again = db.post("/api/v1/db/write", json=body)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()  # the same ride id, the same log position
    rides = db.post("/api/v1/db/read", json={"table": "rides", "count": True,
                                             "where": {"created_by": name}})
    assert rides.json() == {"count": 1}


async def test_a_write_published_twice_on_writeq_is_applied_once(stack):
    """As RabbitMQ would redeliver it: two messages with one write id."""
    name = f"u-{uuid.uuid4().hex[:8]}"
    prefix = stack.env["RIDESHARE_QUEUE_PREFIX"]
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/", timeout=10)
    async with connection:
        channel = await connection.channel()
        answers = await channel.declare_queue(exclusive=True)
        body = orjson.dumps({"v": 1, "kind": "write", "id": f"dup-{name}",
                             "ops": [user_insert(name)]})
        for n in range(2):
            await channel.default_exchange.publish(
                aio_pika.Message(body, correlation_id=str(n), reply_to=answers.name),
                routing_key=f"{prefix}writeQ")
        replies = []
        async with answers.iterator(timeout=20) as it:
            async for incoming in it:
                replies.append(orjson.loads(incoming.body))
                await incoming.ack()
                if len(replies) == 2:
                    break
    assert replies[0] == replies[1] and replies[0]["ok"]
    async with httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=30) as client:
        r = await client.post("/api/v1/db/read", json={"table": "users", "count": True,
                                                       "where": {"username": name}})
    assert r.json() == {"count": 1}


BAD_BODIES = [
    b"not json",
    b"[1, 2]",
    b'{"ops": [{"op": "insert", "table": "users; DROP TABLE users", "values": {}}]}',
    b'{"ops": [{"op": "insert", "table": "users", "values": {"username": "x", "password_hash":'
    b' "h", "admin": true}}]}',
    b'{"ops": [{"op": "insert", "table": "users", "values": {"username": 5, "password_hash":'
    b' "h"}}]}',
    b'{"ops": [{"op": "delete", "table": "users", "where": {"username\' OR \'1\'=\'1": "x"}}]}',
    b'{"ops": [{"op": "delete", "table": "users", "where": {"username": {"LIKE": "%"}}}]}',
    b'{"ops": [{"op": "DROP TABLE users"}]}',
    b'{"ops": []}',
    b'{"ops": [{"op": "update", "table": "rides", "add": {"source": "1; DROP"}, "where": {}}]}',
    b'{"ops": [{"op": "insert", "table": "rides", "values": {"created_by": "x", "ride_time":'
    b' 99999999999999999999999, "source": 1, "destination": 2}}]}',
    b'{"sql": "SELECT 1"}',
]
BAD_READS = [
    b"{",
    b"[]",
    b'{"table": "pg_user"}',
    b'{"table": "users", "columns": ["password_hash; DROP TABLE users"]}',
    b'{"table": "users", "where": {"username": ["a"]}}',
    b'{"table": "users", "limit": "1; DROP TABLE users"}',
    b'{"table": "users", "order_by": [{"column": "1 DESC; DROP TABLE users"}]}',
    b'{"queries": "users"}',
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_a_bad_write_is_a_400_and_changes_nothing(db, stack, body):
    before = wait_until(lambda: copies_agree(stack), 30, "copies agree before")
    r = db.post("/api/v1/db/write", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert wait_until(lambda: copies_agree(stack), 30, "copies agree after") == before


@pytest.mark.parametrize("body", BAD_READS)
def test_a_bad_read_is_a_400(db, body):
    r = db.post("/api/v1/db/read", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_a_duplicate_username_is_a_409(db):
    name = f"u-{uuid.uuid4().hex[:8]}"
    assert db.post("/api/v1/db/write", json={"ops": [user_insert(name)]}).status_code == 200
    r = db.post("/api/v1/db/write", json={"ops": [user_insert(name)]})
    assert r.status_code == 409 and "already exists" in r.json()["error"]


def test_sql_looking_values_are_stored_as_plain_data(db):
    name = "x'; DROP TABLE users; --"
    db.post("/api/v1/db/write", json={"ops": [{"op": "delete", "table": "users",
                                               "where": {"username": name}}]})
    assert db.post("/api/v1/db/write", json={"ops": [user_insert(name)]}).status_code == 200
    r = db.post("/api/v1/db/read", json={"table": "users", "where": {"username": name}})
    assert r.json()["rows"][0]["username"] == name
    assert db.post("/api/v1/db/read", json={"table": "users", "count": True}).json()["count"] >= 1


def test_a_value_the_database_cannot_hold_is_a_400_and_the_master_lives_on(db, stack):
    epoch = stack.cluster()["epoch"]
    service = f"s-{uuid.uuid4().hex[:8]}"
    assert db.post("/api/v1/db/write", json={"ops": [{
        "op": "insert", "table": "request_counts",
        "values": {"service": service, "count": 1}}]}).status_code == 200
    r = db.post("/api/v1/db/write", json={"ops": [{
        "op": "update", "table": "request_counts", "add": {"count": 2**63 - 1},
        "where": {"service": service}}]})
    assert r.status_code == 400 and r.json()["error"]
    assert db.post("/api/v1/db/write", json={"ops": [user_insert(f"u-{uuid.uuid4().hex[:8]}")]}
                   ).status_code == 200
    assert stack.cluster()["epoch"] == epoch, "no failover: the master did not die"
    assert db.post("/api/v1/db/read", json={"table": "request_counts", "columns": ["count"],
                                            "where": {"service": service}}).json() == {
        "rows": [{"count": 1}]}


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/v1/db/nothing", 404), ("GET", "/api/v1/db/write", 405),
    ("DELETE", "/api/v1/crash/master", 405), ("GET", "/nothing", 404)])
def test_the_orchestrator_answers_unknown_paths_and_methods_with_a_json_error(
        db, method, path, status):
    response = db.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"error"}
    if status == 405:
        assert "POST" in response.headers["allow"]
