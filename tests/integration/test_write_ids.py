"""Remembered write ids are bounded, and forgotten alike on every copy: the master decides what to
forget and the decision travels in the log."""

from __future__ import annotations

import httpx

from tests.support import copies_agree, wait_until, worker_copies


def insert(name: str, write_id: str) -> dict:
    return {"id": write_id, "ops": [{"op": "insert", "table": "users", "on_conflict": "ignore",
                                     "values": {"username": name, "password_hash": "h"}}]}


def test_write_ids_beyond_the_bound_are_forgotten_at_the_same_position_on_every_copy(make_stack):
    stack = make_stack(RIDESHARE_WRITE_IDS_KEPT="50", RIDESHARE_INITIAL_SLAVES="2")
    wait_until(lambda: len(stack.cluster()["workers"]) == 3, 60, "a master and two slaves")
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        for i in range(120):
            assert db.post("/api/v1/db/write", json=insert(f"id-{i}", f"write-{i}")
                           ).status_code == 200
        wait_until(lambda: copies_agree(stack), 30, "every copy holds the same rows, write ids too")
        kept = [int(part.split(":")[1]) for _, sums in worker_copies(stack).values()
                for part in sums.split(";") if part.startswith("applied_writes:")]
        assert len(kept) == 3 and all(50 <= n <= 56 for n in kept), kept

        # A recent id is still remembered: its retry is answered, not applied again.
        recent = db.post("/api/v1/db/write", json=insert("id-119", "write-119")).json()
        assert recent["results"][0]["rowcount"] == 1, "the first answer, replayed"
        # A forgotten id is a new write: applied again (here: ignored as a duplicate row).
        old = db.post("/api/v1/db/write", json=insert("id-0", "write-0")).json()
        assert old["results"][0]["rowcount"] == 0, "applied again, and found the row there"
