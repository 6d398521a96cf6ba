"""`rideshare down`, then `up`: no server of ours is left running in between, the data is still
there, and log positions continue."""

from __future__ import annotations

import subprocess

import httpx

from tests.support import servers_under, wait_until


def test_data_survives_down_and_up(make_stack):
    stack = make_stack()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        for i in range(50):
            r = db.post("/api/v1/db/write", json={"ops": [{
                "op": "insert", "table": "users",
                "values": {"username": f"keep-{i}", "password_hash": "h"}}]})
            assert r.status_code == 200, r.text
        last = r.json()["position"]
    root = stack.data_root()
    assert len(servers_under(root)) == 2
    stack.down()
    assert servers_under(root) == {}, "down stops every worker's server"
    copies = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("w")]
    assert len(copies) == 2, "the copies stay on disk"
    assert not [c for c in copies if (c / "postmaster.pid").exists()], \
        "each server was shut down cleanly, not killed"
    stack.up()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        count = db.post("/api/v1/db/read", json={"table": "users", "count": True}).json()
        assert count == {"count": 50}
        r = db.post("/api/v1/db/write", json={"ops": [{
            "op": "insert", "table": "users", "values": {"username": "after", "password_hash": "h"}}]})
        assert r.status_code == 200, r.text
        assert r.json()["position"] == last + 1
    wait_until(lambda: len(stack.cluster()["workers"]) == 2, 30, "one master and one slave again")


def test_up_adopts_the_best_copy_removes_those_behind_and_keeps_what_it_cannot_read(make_stack):
    stack = make_stack()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        for i in range(20):
            r = db.post("/api/v1/db/write", json={"ops": [{
                "op": "insert", "table": "users",
                "values": {"username": f"disk-{i}", "password_hash": "h"}}]})
            assert r.status_code == 200, r.text
    root = stack.data_root()
    stack.down()
    copies_before = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] == "w")
    # Beside the two copies: a third, equal one; one that no server can read; and folders whose
    # names only begin like a copy's (another deployment's, say), which are not ours to touch.
    subprocess.run(["cp", "-a", str(root / copies_before[0]), str(root / "w00000000c0de")],
                   check=True)
    unreadable = root / "w00000000bad"
    unreadable.mkdir()
    (unreadable / "PG_VERSION").write_text("15\n")
    foreign = [root / "w1234_staging", root / "wrideshare"]
    for folder in foreign:
        folder.mkdir()
        (folder / "PG_VERSION").write_text("15\n")

    stack.up()
    with httpx.Client(base_url=stack.orchestrator_url, timeout=30) as db:
        assert db.post("/api/v1/db/read", json={"table": "users", "count": True}).json() == {
            "count": 20}
    workers = {w["id"] for w in stack.cluster()["workers"]}
    wait_until(lambda: {p.name for p in root.iterdir() if p.is_dir() and p.name[0] == "w"}
               == workers | {"w00000000bad", "w1234_staging", "wrideshare"}, 30,
               "the copies that are not ahead of the adopted one are removed, nothing else")
    assert (unreadable / "PG_VERSION").read_text() == "15\n", "an unreadable copy is kept as it is"
