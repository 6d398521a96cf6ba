"""Which copy left on disk the first master takes over, and which copies may go."""

from __future__ import annotations

from rideshare.orchestrator.adoption import choose_copy
from rideshare.orchestrator.runtime.base import CopyState


def test_the_copy_of_the_latest_epoch_wins_whatever_its_position():
    chosen = choose_copy({"wa": CopyState(3, 900), "wb": CopyState(4, 500), "wc": CopyState(4, 450)})
    assert chosen.adopt == "wb"
    assert chosen.behind == ("wa", "wc") and not chosen.refused


def test_equal_copies_go_to_the_lowest_id_and_the_other_is_not_ahead():
    chosen = choose_copy({"wb": CopyState(2, 10), "wa": CopyState(2, 10)})
    assert chosen.adopt == "wa" and chosen.behind == ("wb",)


def test_a_copy_that_could_not_be_read_is_kept_and_proves_nothing():
    chosen = choose_copy({"wa": CopyState(2, 10), "wbad": None})
    assert chosen.adopt == "wa" and chosen.unreadable == ("wbad",) and chosen.behind == ()


def test_no_copy_at_all_starts_empty():
    assert choose_copy({}) .adopt is None and not choose_copy({}).refused


def test_no_master_starts_from_a_copy_behind_the_newest_acknowledged_write():
    """The copy that holds it may be the one that could not be read (a full disk, say)."""
    chosen = choose_copy({"wa": CopyState(5, 100), "wfull": None}, floor=CopyState(6, 140))
    assert chosen.refused and chosen.adopt is None and chosen.unreadable == ("wfull",)
    assert choose_copy({}, floor=CopyState(1, 1)).refused
    assert choose_copy({"wa": CopyState(6, 140)}, floor=CopyState(6, 140)).adopt == "wa"
