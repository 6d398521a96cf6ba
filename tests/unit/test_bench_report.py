"""The benchmark's tables: a run on both kinds of infrastructure puts them side by side."""

from __future__ import annotations

from typing import Any

from rideshare.bench.report import tables_for


def cell(infra: str, system: str, scenario: str, rps: float, p50: float) -> dict[str, Any]:
    return {"infra": infra, "system": system, "scenario": scenario, "clients": 8,
            "summary": {"rps": rps, "p50_ms": p50, "p90_ms": p50 * 2, "p99_ms": p50 * 3},
            "errors": {}, "cpu": {"master": 40.0}}


def test_a_run_on_both_infrastructures_starts_with_them_side_by_side() -> None:
    cells = [cell("single", "rideshare", "create-ride", 400, 10),
             cell("single", "direct", "create-ride", 2000, 2),
             cell("3-node", "rideshare", "create-ride", 100, 40),
             cell("3-node", "direct", "create-ride", 2000, 2)]
    tables = tables_for({"benchmark": "rideshare", "cells": cells})
    side_by_side = tables[0]
    assert side_by_side.headers[2] == "single req/s" and side_by_side.headers[5] == "3-node req/s"
    assert side_by_side.rows == [["create-ride", "8", "400", "10.0", "30.0", "100", "40.0",
                                  "120.0", "0.25×"]]
    titles = [t.title for t in tables]
    assert any(t.endswith("on single infrastructure") for t in titles)
    assert any(t.endswith("on 3-node infrastructure") for t in titles)
    by_title = {t.title: t for t in tables}
    single = by_title["rideshare: RideShare vs direct PostgreSQL, on single infrastructure"]
    assert single.rows[0][-1] == "0.20×"  # each infrastructure against its own baseline


def test_a_run_on_one_infrastructure_has_no_side_by_side_table() -> None:
    cells = [cell("single", "rideshare", "mix", 400, 10), cell("single", "direct", "mix", 800, 2)]
    tables = tables_for({"benchmark": "rideshare", "cells": cells})
    assert tables[0].title == "rideshare: RideShare vs direct PostgreSQL"
    assert tables[0].rows[0][-1] == "0.50×"
