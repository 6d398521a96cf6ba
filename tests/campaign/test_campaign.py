"""The short campaign that ``make test`` runs: every kind of fault once (fixed seed), under the
workload, and a clean verdict from the checker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.campaign.run import run_campaign

pytestmark = pytest.mark.faults


def test_a_short_campaign_of_every_kind_of_fault_loses_nothing(tmp_path: Path) -> None:
    result = run_campaign(duration_s=150, seed=11, run_dir=tmp_path)
    print(result.table())
    assert result.verdict.clean, result.table()
    assert len({f.kind for f in result.faults}) >= 8, "the faults were of many kinds"
