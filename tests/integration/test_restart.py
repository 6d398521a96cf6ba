"""`rideshare down`, then `up`: the data is still there and log positions continue."""

from __future__ import annotations

import httpx

from tests.support import wait_until


def test_data_survives_down_and_up(make_stack):
    stack = make_stack()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        for i in range(50):
            r = db.post("/api/v1/db/write", json={"ops": [{
                "op": "insert", "table": "users",
                "values": {"username": f"keep-{i}", "password_hash": "h"}}]})
            assert r.status_code == 200, r.text
        last = r.json()["position"]
    stack.down()
    stack.up()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        count = db.post("/api/v1/db/read", json={"table": "users", "count": True}).json()
        assert count == {"count": 50}
        r = db.post("/api/v1/db/write", json={"ops": [{
            "op": "insert", "table": "users", "values": {"username": "after", "password_hash": "h"}}]})
        assert r.status_code == 200, r.text
        assert r.json()["position"] == last + 1
    wait_until(lambda: len(stack.cluster()["workers"]) == 2, 30, "one master and one slave again")
