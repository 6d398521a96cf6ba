"""The reconciliation decision, without any I/O."""

from __future__ import annotations

from rideshare.dcs import Epoch
from rideshare.orchestrator.planning import Observed, elect, plan
from rideshare.orchestrator.runtime.base import WorkerHandle


def handles(*specs: tuple[str, int, float]) -> dict[str, WorkerHandle]:
    return {w: WorkerHandle(w, pid, started) for w, pid, started in specs}


def seen(alive, roles, master, desired=1, retiring=(), registered=None) -> Observed:
    return Observed(alive, roles, Epoch(3, master), frozenset(retiring), desired,
                    frozenset(registered if registered is not None else roles))


def test_the_live_slave_with_the_lowest_pid_is_elected():
    assert elect(handles(("a", 300, 1), ("b", 200, 2), ("c", 250, 3))) == "b"
    assert elect({}) is None


def test_a_dead_master_is_replaced_by_the_lowest_pid_ready_slave_and_a_slave_is_started():
    alive = handles(("b", 200, 2), ("c", 150, 3))
    todo = plan(seen(alive, {"b": "slave", "c": "starting"}, master="a", desired=2))
    assert todo.elect == "b"  # "c" has a lower pid but is not ready yet
    assert todo.start_slaves == 1


def test_with_nobody_to_take_over_a_master_adopting_the_data_is_started():
    todo = plan(seen(handles(("c", 150, 3)), {"c": "starting"}, master="a"))
    assert todo.start_master and todo.kill == ["c"] and todo.elect is None
    assert plan(seen({}, {}, master=None)).start_master


def test_a_dead_slave_is_replaced_up_to_the_desired_count():
    alive = handles(("m", 100, 1), ("s1", 101, 2))
    todo = plan(seen(alive, {"m": "master", "s1": "slave"}, master="m", desired=3))
    assert todo.start_slaves == 2 and not todo.retire and todo.elect is None


def test_scale_down_retires_the_newest_slaves_and_retiring_ones_are_not_replaced():
    alive = handles(("m", 100, 1), ("s1", 101, 2), ("s2", 99, 3), ("s3", 102, 4))
    roles = {"m": "master", "s1": "slave", "s2": "slave", "s3": "slave"}
    todo = plan(seen(alive, roles, master="m", desired=1))
    assert todo.retire == ["s2", "s3"]
    todo = plan(seen(alive, roles, master="m", desired=1, retiring={"s2", "s3"}))
    assert todo.retire == [] and todo.start_slaves == 0


def test_a_worker_whose_znode_vanished_is_killed_and_not_counted():
    alive = handles(("m", 100, 1), ("s1", 101, 2))
    todo = plan(seen(alive, {"s1": "slave"}, master="m", registered={"m", "s1"}))
    assert todo.kill == ["m"]
    assert todo.elect == "s1"
    assert todo.start_slaves == 1


def test_a_suspect_slave_is_never_elected_and_with_no_other_the_cluster_starts_from_disk():
    """A slave whose broker connection dropped lost the batches its sync queue held."""
    alive = handles(("b", 200, 2), ("c", 300, 3))
    suspect = Observed(alive, {"b": "slave", "c": "slave"}, Epoch(3, "a"), frozenset(), 2,
                       frozenset({"b", "c"}), suspect=frozenset({"b"}))
    assert plan(suspect).elect == "c", "the lowest pid is suspect: the next one leads"
    both = Observed(alive, {"b": "slave", "c": "slave"}, Epoch(3, "a"), frozenset(), 2,
                    frozenset({"b", "c"}), suspect=frozenset({"b", "c"}))
    todo = plan(both)
    assert todo.elect is None and todo.start_master
    assert sorted(todo.kill) == ["b", "c"]
