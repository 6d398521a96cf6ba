"""The rides service's pure rules: timestamps, areas, ride ids."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rideshare.errors import BadRequest
from rideshare.rides import rules

UTC_ZONE = ZoneInfo("UTC")
KOLKATA = ZoneInfo("Asia/Kolkata")
BERLIN = ZoneInfo("Europe/Berlin")


def test_timestamp_field_order_is_day_month_year_second_minute_hour() -> None:
    seconds = rules.parse_timestamp("26-01-2031:05-30-18", UTC_ZONE)
    assert datetime.fromtimestamp(seconds, UTC) == datetime(2031, 1, 26, 18, 30, 5, tzinfo=UTC)


def test_timestamp_is_read_in_the_configured_zone() -> None:
    utc = rules.parse_timestamp("26-01-2031:00-30-18", UTC_ZONE)
    ist = rules.parse_timestamp("26-01-2031:00-30-18", KOLKATA)
    assert utc - ist == 5 * 3600 + 30 * 60
    assert rules.format_timestamp(ist, KOLKATA) == "26-01-2031:00-30-18"
    assert rules.format_timestamp(ist, UTC_ZONE) == "26-01-2031:00-00-13"


@pytest.mark.parametrize(
    "text",
    ["", "26-01-2031", "26-01-2031:00-30-18 ", " 26-01-2031:00-30-18", "26-1-2031:00-30-18",
     "2031-01-26:00-30-18", "26/01/2031:00-30-18", "26-01-2031 00-30-18", "26-01-31:00-30-18",
     "32-01-2031:00-30-18", "29-02-2031:00-30-18", "26-13-2031:00-30-18", "26-01-2031:60-30-18",
     "26-01-2031:00-60-18", "26-01-2031:00-30-24", "00-01-2031:00-30-18", "26-01-0000:00-30-18",
     "٢٦-01-2031:00-30-18", "26-01-2031:00-30-18\n", "+6-01-2031:00-30-18",
     "26-01-2031:00-30-1８", 20310126, None, ["26-01-2031:00-30-18"]],
)
def test_bad_timestamps(text: object) -> None:
    with pytest.raises(BadRequest):
        rules.parse_timestamp(text, UTC_ZONE)


def test_leap_day_is_accepted() -> None:
    seconds = rules.parse_timestamp("29-02-2032:00-00-00", UTC_ZONE)
    assert rules.format_timestamp(seconds, UTC_ZONE) == "29-02-2032:00-00-00"


def test_local_time_in_a_dst_gap_is_refused() -> None:
    # Berlin skips 02:00-03:00 on 30 March 2031.
    with pytest.raises(BadRequest):
        rules.parse_timestamp("30-03-2031:00-30-02", BERLIN)


def test_repeated_local_time_takes_the_earlier_instant() -> None:
    # Berlin repeats 02:00-03:00 on 26 October 2031 (CEST, then CET).
    seconds = rules.parse_timestamp("26-10-2031:00-30-02", BERLIN)
    assert datetime.fromtimestamp(seconds, UTC).hour == 0
    assert rules.format_timestamp(seconds, BERLIN) == "26-10-2031:00-30-02"


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31)))
def test_timestamp_round_trip_utc(moment: datetime) -> None:
    text = f"{moment:%d-%m-%Y:%S-%M-%H}"
    assert rules.format_timestamp(rules.parse_timestamp(text, UTC_ZONE), UTC_ZONE) == text


@given(st.integers(min_value=0, max_value=250_000_000_000))
def test_format_then_parse_is_identity_in_any_zone(seconds: int) -> None:
    for zone in (UTC_ZONE, KOLKATA, BERLIN):
        assert rules.parse_timestamp(rules.format_timestamp(seconds, zone), zone) == seconds or (
            # in a repeated hour, the later instant reads back as the earlier one
            datetime.fromtimestamp(seconds, zone).fold == 1
        )


@pytest.mark.parametrize(
    ("value", "area"), [(1, 1), (198, 198), ("1", 1), ("198", 198), ("007", 7), ("0" * 30 + "5", 5)]
)
def test_good_areas(value: object, area: int) -> None:
    assert rules.parse_area(value) == area


@pytest.mark.parametrize(
    "value",
    [0, 199, -1, "0", "199", "-1", "+1", " 1", "1 ", "1.0", "1e2", "0x1", "١", "１", "", True,
     False, None, 1.0, 2.5, [1], {"a": 1}, "9" * 5000, 10**100, "1_0"],
)
def test_bad_areas(value: object) -> None:
    with pytest.raises(BadRequest):
        rules.parse_area(value)


@pytest.mark.parametrize(
    ("text", "ride_id"),
    [("1", 1), ("42", 42), ("007", 7), (str(2**63 - 1), 2**63 - 1), ("0" * 5000 + "3", 3)],
)
def test_good_ride_ids(text: str, ride_id: int) -> None:
    assert rules.parse_ride_id(text) == ride_id


@pytest.mark.parametrize(
    "text",
    ["0", "000", "-1", "+1", "1.0", "1e3", "abc", "", " 1", "١", str(2**63), "9" * 5000,
     "1;DROP TABLE rides", "0x10", "count"],
)
def test_bad_ride_ids(text: str) -> None:
    with pytest.raises(BadRequest):
        rules.parse_ride_id(text)
