"""The ``rideshare`` command: up, down, status, crash."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from rideshare.bench.cli import bench as bench_command
from rideshare.config import get_settings
from rideshare.launcher import Stack, read_state
from rideshare.localhost import pid_alive

app = typer.Typer(help="RideShare: a ride-pooling backend with its own replicated DBaaS.",
                  no_args_is_help=True, add_completion=False)
console = Console()


def _alive(pid: int) -> bool:
    return pid_alive(pid)  # a dead child not yet reaped counts as dead


@app.command()
def up(detach: Annotated[bool, typer.Option("--detach", "-d",
                                            help="return once every part answers")] = False,
       timeout: Annotated[float, typer.Option(help="seconds to wait for readiness")] = 120.0,
       ) -> None:
    """Start gateway, services, orchestrator and the first workers."""
    settings = get_settings()
    state = read_state(settings)
    if state and _alive(int(state["supervisor_pid"])):
        console.print(f"RideShare is already up (supervisor pid {state['supervisor_pid']}).")
        raise typer.Exit(0)
    if detach:
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        with open(settings.run_dir / "stack.log", "ab") as out:
            child = subprocess.Popen([sys.executable, "-m", "rideshare.cli", "up"], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = read_state(settings)
            if state and state.get("ready") and state["supervisor_pid"] == child.pid:
                console.print(f"RideShare is up: {state['gateway_url']}")
                return
            if child.poll() is not None:
                console.print(f"[red]RideShare failed to start[/]; see {settings.run_dir}/stack.log"
                              f" and {settings.run_dir}/logs/")
                raise typer.Exit(1)
            time.sleep(0.2)
        child.terminate()
        console.print(f"[red]RideShare was not ready after {timeout:.0f} s[/]")
        raise typer.Exit(1)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness poll
    stack = Stack(settings)

    def request_stop(*_: object) -> None:
        stack.stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        stack.start(timeout)
        console.print(f"RideShare is up: http://{settings.host}:{settings.gateway_port} "
                      "(Ctrl-C stops it)")
        stack.supervise()
    finally:
        stack.stop()
        console.print("RideShare has stopped; its data is kept.")


@app.command()
def down(timeout: float = 60.0) -> None:
    """Stop everything ``up`` started; the data stays."""
    settings = get_settings()
    state = read_state(settings)
    if not state or not _alive(int(state["supervisor_pid"])):
        console.print("RideShare is not running.")
        return
    pid = int(state["supervisor_pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        console.print(f"[red]The supervisor (pid {pid}) did not stop in {timeout:.0f} s[/]")
        raise typer.Exit(1)
    console.print("RideShare is down; its data is kept.")


def _orchestrator() -> httpx.Client:
    return httpx.Client(base_url=get_settings().orchestrator_url, timeout=10)


@app.command()
def status() -> None:
    """A table of parts, workers (pid, role, log position, lag) and the scaling state."""
    settings = get_settings()
    state = read_state(settings)
    if state:
        parts = Table(title="parts")
        for column in ("part", "pid", "port"):
            parts.add_column(column)
        for name, info in state["parts"].items():
            parts.add_row(name, str(info["pid"]), str(info["port"]))
        console.print(parts)
    try:
        with _orchestrator() as client:
            cluster = client.get("/api/v1/cluster").json()
    except httpx.HTTPError as exc:
        console.print(f"[red]The orchestrator at {settings.orchestrator_url} is not answering[/]"
                      f" ({exc}). Is RideShare up?")
        raise typer.Exit(1) from exc
    workers = Table(title=f"workers (epoch {cluster['epoch']})")
    for column in ("id", "pid", "role", "state", "log position", "lag"):
        workers.add_column(column)
    for w in cluster["workers"]:
        workers.add_row(w["id"], str(w["pid"]), w["role"], w["state"], str(w["log_position"]),
                        str(w["lag"]))
    console.print(workers)
    sc = cluster["scaling"]
    console.print(f"slaves: {cluster['slaves']['actual']} running, "
                  f"{cluster['slaves']['desired']} desired; window: {sc['window_reads']} reads "
                  f"since {sc['window_started_at'] or '(no read yet)'}, every {sc['interval_s']} s,"
                  f" {sc['reads_per_slave']} reads per slave, at most {sc['max_slaves']}")
    for d in sc.get("decisions", [])[-5:]:
        console.print(f"  {d['at']}: {d['window_reads']} reads -> "
                      f"{d['slaves_before']} to {d['slaves_after']} slaves")


@app.command()
def crash(role: Annotated[str, typer.Argument(help="master or slave")]) -> None:
    """SIGKILL the master, or the slave with the highest PID (the crash APIs)."""
    if role not in ("master", "slave"):
        console.print("crash takes 'master' or 'slave'.")
        raise typer.Exit(2)
    with _orchestrator() as client:
        response = client.post(f"/api/v1/crash/{role}")
    console.print(f"{response.status_code} {response.text}")
    raise typer.Exit(0 if response.status_code == 200 else 1)


infra_app = typer.Typer(help="A local RabbitMQ cluster and ZooKeeper ensemble (rideshare.infra).",
                        no_args_is_help=True)
app.add_typer(infra_app, name="infra")


@infra_app.command("up")
def infra_up(nodes: Annotated[int, typer.Option(help="nodes of each (1 or 3)")] = 3) -> None:
    """Start the nodes (on their own ports and data) and write <run_dir>/infra.env."""
    from rideshare.infra.local import LocalInfra

    infra = LocalInfra(get_settings().run_dir)
    settings = infra.up(nodes)
    console.print(f"{nodes} RabbitMQ node(s) and {nodes} ZooKeeper server(s) are up; "
                  f"their settings are in {infra.env_file}:")
    for key, value in settings.items():
        console.print(f"  {key}={value}")


@infra_app.command("down")
def infra_down() -> None:
    """Stop the nodes (their data stays)."""
    from rideshare.infra.local import LocalInfra

    LocalInfra(get_settings().run_dir).down()
    console.print("the local RabbitMQ and ZooKeeper nodes are stopped")


@infra_app.command("status")
def infra_status() -> None:
    """Each node, which broker node leads each queue, and which ZooKeeper server leads."""
    from rideshare.infra.local import LocalInfra

    state = LocalInfra(get_settings().run_dir).status()
    if not state["nodes"]:
        console.print("no local infrastructure (rideshare infra up)")
        raise typer.Exit(1)
    nodes = Table(title="RabbitMQ nodes")
    for column in ("node", "port", "running"):
        nodes.add_column(column)
    for n in state["rabbitmq"]:
        nodes.add_row(n["node"], str(n["port"]), "yes" if n["running"] else "no")
    console.print(nodes)
    servers = Table(title="ZooKeeper servers")
    for column in ("server", "address", "mode"):
        servers.add_column(column)
    for z in state["zookeeper"]:
        servers.add_row(str(z["server"]), z["address"], z["mode"])
    console.print(servers)
    queues = Table(title="queues")
    for column in ("queue", "type", "leader", "messages"):
        queues.add_column(column)
    for q in state["queues"]:
        queues.add_row(q["name"], q["type"], q["leader"], q["messages"])
    console.print(queues)


app.command("bench", help="Benchmark the public API through the gateway, next to the same "
            "data work done directly with psycopg.")(bench_command)

if __name__ == "__main__":
    app()
