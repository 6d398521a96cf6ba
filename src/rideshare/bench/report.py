"""Tables for people (rich in the terminal, Markdown for the README) and the progress display.

Tables are built as plain rows first, so the terminal and the README show the same figures.
``python -m rideshare.bench.report FILE.json`` prints a saved run's tables as Markdown.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rideshare.bench.load import Tick

#: Above this share of a core, the single-process load generator is what limits a cell.
CLIENT_BOUND = 85.0
#: Above this share of a core used by processes outside the benchmark, a cell is noisy.
NOISY = 30.0
CPU_COLUMNS = ("gateway", "users", "rides", "orchestrator", "master", "slaves", "postgres",
               "rabbitmq", "bench client", "kernel", "other", "machine")


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


def fmt_rate(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}×"


def fmt_errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" for k, v in errors.items()) or "0"


def _pairs(cells: list[dict[str, Any]]) -> list[tuple[str, int, dict[str, Any] | None,
                                                      dict[str, Any] | None]]:
    """(scenario, clients, rideshare cell, direct cell) in the order the cells ran."""
    order: list[tuple[str, int]] = []
    found: dict[tuple[str, int, str], dict[str, Any]] = {}
    for cell in cells:
        key = (cell["scenario"], cell["clients"])
        if key not in order:
            order.append(key)
        found[(*key, cell["system"])] = cell
    return [(s, c, found.get((s, c, "rideshare")), found.get((s, c, "direct")))
            for s, c in order]


def comparison(cells: list[dict[str, Any]], title: str, percentiles: tuple[int, ...],
               errors: bool) -> TableData:
    """scenario, clients, then req/s and percentiles for RideShare, then for direct, then the
    throughput ratio RideShare/direct."""
    headers = ["scenario", "clients", "rideshare req/s",
               *(f"p{p} ms" for p in percentiles), *(["errors"] if errors else []),
               "direct req/s", *(f"p{p} ms" for p in percentiles), "ratio rideshare/direct"]
    rows, capped, client_bound, noisy = [], False, False, False
    for scenario, clients, rs, direct in _pairs(cells):
        row = [scenario, str(clients)]
        for cell in (rs, direct):
            summary = (cell or {}).get("summary", {})
            rate = fmt_rate(summary.get("rps"))
            if cell and cell["system"] == "direct" and cell.get("pool_size", clients) < clients:
                rate += f" (pool {cell['pool_size']})"
                capped = True
            if cell and cell.get("cpu", {}).get("bench client", 0) >= CLIENT_BOUND:
                rate += " *"
                client_bound = True
            if cell and cell.get("cpu", {}).get("other", 0) >= NOISY:
                rate += " †"
                noisy = True
            row.append(rate)
            row.extend(fmt_ms(summary.get(f"p{p}_ms")) for p in percentiles)
            if errors and cell is rs:
                row.append(fmt_errors(rs["errors"]) if rs else "-")
        row.append(fmt_ratio((rs or {}).get("summary", {}).get("rps"),
                             (direct or {}).get("summary", {}).get("rps")))
        rows.append(row)
    note = ("req/s: answers with the expected status per second; p50/p90/p99: latency of those "
            "answers, client side. ratio: RideShare req/s / direct req/s.")
    if capped:
        note += " (pool N): PostgreSQL's max_connections left room for only N connections."
    if client_bound:
        note += (f" *: the load generator (one Python process) used ≥ {CLIENT_BOUND:.0f} % of a "
                 "core in that cell, so it was the limit: the figure is a lower bound.")
    if noisy:
        note += (f" †: other processes on the host used ≥ {NOISY:.0f} % of a core during that "
                 "cell: the figure is noisy.")
    return TableData(title, headers, rows, note)


def cpu_table(cells: list[dict[str, Any]], title: str) -> TableData:
    """Percent of one core used by each process group during each cell."""
    present = [c for c in CPU_COLUMNS if any(c in cell.get("cpu", {}) for cell in cells)]
    rows = [[cell["scenario"], str(cell["clients"]), cell["system"],
             *(f"{cell['cpu'][c]:.0f}" if c in cell.get("cpu", {}) else "" for c in present)]
            for cell in cells]
    note = ("CPU seconds / wall seconds in % of one core; machine = all of the host "
            f"({_cores()} cores = {100 * _cores()} %); kernel = kernel threads and interrupts "
            "(loopback networking, disk flushes); other = every other process on the host.")
    return TableData(title, ["scenario", "clients", "system", *present], rows, note)


def errors_table(cells: list[dict[str, Any]]) -> TableData | None:
    rows = [[c["scenario"], str(c["clients"]), c["system"], fmt_errors(c["errors"])]
            for c in cells if c["errors"]]
    if not rows:
        return None
    return TableData("unexpected outcomes (status code or exception)",
                     ["scenario", "clients", "system", "errors"], rows)


def noise_warning(cells: list[dict[str, Any]], threshold: float = 20.0) -> str | None:
    """A sentence when other work on the host took CPU during the run (then every figure is
    pessimistic, RideShare's more than direct's since it needs more CPU per request)."""
    others = [c["cpu"]["other"] for c in cells if "other" in c.get("cpu", {})]
    if not others or sum(others) / len(others) < threshold:
        return None
    return (f"Other processes on this host used {sum(others) / len(others):.0f} % of a core on "
            f"average during the cells (max {max(others):.0f} %; the JSON names the heaviest): "
            "the figures are noisy; run again on a quiet machine to compare.")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def print_table(console: Console, data: TableData) -> None:
    table = Table(title=data.title, box=box.SIMPLE_HEAD, title_justify="left")
    for i, header in enumerate(data.headers):
        table.add_column(header, justify="left" if i == 0 or header == "system" else "right")
    for row in data.rows:
        table.add_row(*row)
    console.print(table)
    if data.note:
        console.print(f"[dim]{data.note}[/]")


def markdown(data: TableData) -> str:
    lines = [f"**{data.title}**", "", "| " + " | ".join(data.headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(data.headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in data.rows]
    if data.note:
        lines += ["", data.note]
    return "\n".join(lines)


def tables_for(document: dict[str, Any]) -> list[TableData]:
    """Every table of a saved run, as printed at the end of that run; a run on both kinds of
    infrastructure starts with the two side by side."""
    cells = document["cells"]
    bench = document["benchmark"]
    pcts = (50, 99) if bench == "dbaas" else (50, 90, 99)
    kinds = list(dict.fromkeys(cell.get("infra", "single") for cell in cells))
    out = [infra_table(cells, kinds)] if len(kinds) > 1 else []
    for kind in kinds:
        mine = [cell for cell in cells if cell.get("infra", "single") == kind]
        on = f", on {kind} infrastructure" if len(kinds) > 1 else ""
        out += [comparison(mine, f"{bench}: RideShare vs direct PostgreSQL{on}", pcts,
                           errors=bench != "dbaas"),
                cpu_table(mine, f"CPU share per process group (% of one core){on}")]
    errors = errors_table(cells)
    if errors:
        out.append(errors)
    warning = noise_warning(cells)
    if warning:
        out[-1].note += "\n\n" + warning
    return out


def infra_table(cells: list[dict[str, Any]], kinds: list[str]) -> TableData:
    """RideShare's cells on each kind of infrastructure, side by side: the price of
    replication (quorum queues, a ZooKeeper ensemble) in throughput and latency."""
    found = {(c["infra"], c["scenario"], c["clients"]): c for c in cells
             if c["system"] == "rideshare"}
    order = list(dict.fromkeys((c["scenario"], c["clients"]) for c in cells))
    headers = ["scenario", "clients"]
    for kind in kinds:
        headers += [f"{kind} req/s", "p50 ms", "p99 ms"]
    headers.append(f"ratio {kinds[-1]}/{kinds[0]}")
    rows = []
    for scenario, clients in order:
        row = [scenario, str(clients)]
        rates = []
        for kind in kinds:
            summary = found.get((kind, scenario, clients), {}).get("summary", {})
            rates.append(summary.get("rps"))
            row += [fmt_rate(summary.get("rps")), fmt_ms(summary.get("p50_ms")),
                    fmt_ms(summary.get("p99_ms"))]
        row.append(fmt_ratio(rates[-1], rates[0]))
        rows.append(row)
    note = ("The same workload through the gateway on each infrastructure, one after the other in "
            "one invocation. ratio: req/s on the last / req/s on the first.")
    return TableData("rideshare on single-node vs 3-node infrastructure", headers, rows, note)


class CellProgress:
    """One rich progress display for a run: a bar per cell, filled by time or by requests."""

    def __init__(self, console: Console, cells: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=console, transient=False)
        self.overall: TaskID | None = None
        self.cells = cells

    @contextmanager
    def running(self) -> Iterator[CellProgress]:
        with self.progress:
            self.overall = self.progress.add_task("all cells", total=self.cells, info="")
            yield self

    def cell(self, label: str, duration_s: float, max_requests: int) -> tuple[Tick, Any]:
        """A tick for the driver, and ``finish(line)``: drop the bar, print the cell's line."""
        task = self.progress.add_task(label, total=100.0, info="")

        def tick(done: int, elapsed: float) -> None:
            share = max(elapsed / duration_s, done / max_requests) if duration_s else 1.0
            rate = done / elapsed if elapsed > 0 else 0.0
            self.progress.update(task, completed=min(100.0, 100 * share),
                                 info=f"{done:>7,} req {rate:>8,.0f}/s")

        def finish(line: str) -> None:
            self.progress.remove_task(task)
            self.progress.console.print(line)
            if self.overall is not None:
                self.progress.advance(self.overall)

        return tick, finish


def main(argv: list[str]) -> None:
    for name in argv:
        document = orjson.loads(Path(name).read_bytes())
        for data in tables_for(document):
            print(markdown(data), end="\n\n")


if __name__ == "__main__":
    main(sys.argv[1:])
