"""The reconciliation decision, a pure function: what should run (one master, N slaves) against
what runs; ``Cluster`` does the I/O around it."""

from __future__ import annotations

from dataclasses import dataclass, field

from rideshare.dcs import Epoch
from rideshare.orchestrator.runtime.base import WorkerHandle


@dataclass(frozen=True)
class Observed:
    alive: dict[str, WorkerHandle]  # from the runtime: whose process runs
    roles: dict[str, str]  # from ZooKeeper: worker id -> "starting" | "slave" | "master"
    epoch: Epoch
    retiring: frozenset[str]
    desired_slaves: int
    registered: frozenset[str] = frozenset()  # ids ever seen in ZooKeeper
    suspect: frozenset[str] = frozenset()  # slaves whose copy may miss entries: never elected


@dataclass
class Plan:
    elect: str | None = None  # name this slave master of the next epoch
    start_master: bool = False  # no worker at all: start one that adopts the best copy on disk
    kill: list[str] = field(default_factory=list)
    start_slaves: int = 0
    retire: list[str] = field(default_factory=list)


def elect(candidates: dict[str, WorkerHandle]) -> str | None:
    """The spec's rule: the live slave with the lowest PID."""
    if not candidates:
        return None
    return min(candidates.values(), key=lambda h: h.pid).worker_id


def plan(seen: Observed) -> Plan:
    out = Plan()
    # A worker whose znode is gone has lost its ZooKeeper session: it must not act any more.
    out.kill = [w for w in seen.alive if w in seen.registered and w not in seen.roles
                and w not in seen.retiring]
    serving = {w: h for w, h in seen.alive.items()
               if w not in seen.retiring and w not in out.kill}
    master = seen.epoch.master if seen.epoch.master in serving else None
    if master is None:
        ready = {w: h for w, h in serving.items()
                 if seen.roles.get(w) == "slave" and w not in seen.suspect}
        out.elect = elect(ready)
        if out.elect is None:
            # Nobody can take over. Workers still starting wait for a master that will never
            # come, and suspect slaves must not lead: stop them all, and start a master from the
            # most advanced copy left on disk.
            out.kill += list(serving)
            out.start_master = True
            return out
        master = out.elect
    slaves = sorted((h for w, h in serving.items() if w != master), key=lambda h: h.started_at)
    if len(slaves) < seen.desired_slaves:
        out.start_slaves = seen.desired_slaves - len(slaves)
    elif len(slaves) > seen.desired_slaves:
        out.retire = [h.worker_id for h in slaves[seen.desired_slaves:]]
    return out
