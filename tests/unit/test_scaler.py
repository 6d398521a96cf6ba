from __future__ import annotations

import pytest

from rideshare.orchestrator.scaler import ReadWindow, desired_slaves


@pytest.mark.parametrize(("reads", "slaves"), [
    (0, 1), (1, 1), (20, 1), (21, 2), (40, 2), (41, 3), (60, 3), (61, 4), (65, 4), (200, 10),
    (201, 10), (10_000, 10),
])
def test_the_rule_at_every_boundary(reads, slaves):
    assert desired_slaves(reads, reads_per_slave=20, max_slaves=10) == slaves


def test_the_cap_and_the_rate_are_settings():
    assert desired_slaves(100, reads_per_slave=10, max_slaves=3) == 3
    assert desired_slaves(11, reads_per_slave=10, max_slaves=3) == 2


def test_the_timer_starts_at_the_first_read_and_the_count_resets_each_window():
    window = ReadWindow(interval_s=120, reads_per_slave=20, max_slaves=10)
    assert not window.due(1_000.0)
    assert window.started_at is None
    for _ in range(65):
        window.record_read(1_000.0)
    assert window.started_at == 1_000.0
    assert not window.due(1_119.9)
    assert window.due(1_120.0)
    assert window.close(1_120.0, slaves_before=1) == 4
    assert window.reads == 0
    assert window.started_at == 1_120.0
    assert window.close(1_240.5, slaves_before=4) == 1  # an idle window
    assert window.started_at == 1_240.0  # the timer keeps its rhythm
    assert [(d.window_reads, d.slaves_before, d.slaves_after) for d in window.decisions] == [
        (65, 1, 4), (0, 4, 1)]
