"""One campaign: its own RabbitMQ and ZooKeeper behind proxies, a stack on them, the workload, the
nemesis for ``duration_s``, then the checker; and the table that sums it up."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.campaign.checker import Verdict, check
from tests.campaign.infra import CampaignInfra
from tests.campaign.nemesis import KINDS, REPLICATED_KINDS, Fault, Nemesis
from tests.campaign.workload import Workload
from tests.support import RunningStack, copies_agree, servers_under, wait_until

#: The campaign's stack: short sessions, so that faults show quickly; the orchestrator leaves lost
#: workers to fence themselves, as across hosts.
STACK_SETTINGS = {
    "RIDESHARE_INITIAL_SLAVES": "2",
    "RIDESHARE_ZK_SESSION_TIMEOUT_S": "4",
    "RIDESHARE_KILL_LOST_WORKERS": "false",
    "RIDESHARE_SCALE_INTERVAL": "100000",
    "RIDESHARE_WRITE_TIMEOUT_S": "5",
    "RIDESHARE_READ_TIMEOUT_S": "5",
    "RIDESHARE_BROKER_GRACE_S": "8",
    "RIDESHARE_DB_DEADLINE_S": "5",
    "RIDESHARE_WORKER_START_TIMEOUT_S": "60",
}


@dataclass
class Result:
    seed: int
    seconds: float
    faults: list[Fault]
    verdict: Verdict

    def table(self) -> str:
        lines = [f"campaign: seed {self.seed}, {self.seconds:.0f} s, {len(self.faults)} faults",
                 "", "| fault | injected | not injected | recovery median (s) | recovery max (s) "
                 "| bound (s) |", "|---|---:|---:|---:|---:|---:|"]
        for kind in (*KINDS, *REPLICATED_KINDS):
            tried = [f for f in self.faults if f.kind == kind]
            mine = [f for f in tried if not f.note.startswith("could not inject")]
            times = [f.recovered_in for f in mine if f.recovered_in is not None]
            if not tried:
                continue
            median = f"{statistics.median(times):.1f}" if times else "-"
            most = f"{max(times):.1f}" if times else "-"
            lines.append(f"| {kind} | {len(mine)} | {len(tried) - len(mine)} | {median} | {most} "
                         f"| {tried[0].bound:.0f} |")
        lines += ["", "writes: " + ", ".join(f"{v} {k.removeprefix('writes ')}"
                                             for k, v in self.verdict.counts.items()
                                             if k.startswith("writes ")),
                  f"reads checked for read-your-writes: {self.verdict.counts['reads checked']}",
                  f"public API users created: {self.verdict.counts['public users ok']}",
                  "checker: " + ("clean" if self.verdict.clean else
                                 f"{len(self.verdict.problems)} problem(s)")]
        lines += [f"  - {p}" for p in self.verdict.problems[:30]]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {"seed": self.seed, "seconds": round(self.seconds, 1),
                "faults": [{"kind": f.kind, "target": f.target, "recovered_in": f.recovered_in,
                            "bound": f.bound, "note": f.note} for f in self.faults],
                "counts": self.verdict.counts, "problems": self.verdict.problems}


def run_campaign(duration_s: float, seed: int, run_dir: Path, log: bool = True,
                 kinds: list[str] | None = None, nodes: int = 1) -> Result:
    """Faults are started while ``duration_s`` lasts; the last one is let finish. ``kinds``
    narrows the nemesis to some kinds of fault (to chase one defect)."""
    name = f"c{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    infra = CampaignInfra(run_dir, name, nodes)
    overrides = run_dir / "worker-overrides.json"
    overrides.write_text("[]")
    infra.start()
    stack = RunningStack(run_dir / "stack", {**STACK_SETTINGS, **infra.env(),
                                             "RIDESHARE_TEST_WORKER_OVERRIDES": str(overrides)})
    started = time.monotonic()
    nemesis = Nemesis(stack, infra, seed, kinds=tuple(kinds or (*KINDS, *REPLICATED_KINDS)))
    try:
        stack.up()
        assert nemesis.settle(), "the campaign's cluster did not come up whole"
        workload = Workload(stack, seed)
        workload.prepare()
        with workload:
            time.sleep(3)  # the workload under way before the first fault
            while time.monotonic() - started < duration_s:
                fault = nemesis.inject(nemesis.next_kind())
                if not nemesis.settle():
                    fault.note += " the cluster did not become whole again within 90 s"
                if log:
                    print(f"[{time.monotonic() - started:6.0f} s] {fault.kind:<18} "
                          f"{fault.target:<40} recovered in {fault.recovered_in} {fault.note}",
                          flush=True)
            time.sleep(2)
        try:  # copies that still differ then are the checker's to report
            wait_until(lambda: copies_agree(stack), 120, "every copy holds the same data")
        except AssertionError:
            pass
        verdict = check(stack, workload.history, nemesis.faults)
        return Result(seed, time.monotonic() - started, nemesis.faults, verdict)
    except BaseException:
        print(stack.logs()[-6000:])
        raise
    finally:
        stack.cli("down")
        left = [f"{p.pid} {' '.join(p.cmdline()[:5])}" for p in stack.leftovers()]
        stack.cleanup()
        nemesis.cleanup()
        infra.stop()
        assert not left, f"processes left running after rideshare down: {left}"
        assert not servers_under(stack.data_root()), "no server of the campaign is left"


def save(result: Result, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"chaos-{time.strftime('%Y%m%dT%H%M%S')}-seed{result.seed}.json"
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
