"""Checking db/write and db/read bodies: every name against the schema, every value typed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rideshare.errors import BadRequest
from rideshare.protocol import (
    Insert,
    operation_json,
    parse_read,
    parse_write,
    query_json,
)


def test_a_write_with_several_operations():
    w = parse_write({"id": "k1", "ops": [
        {"op": "insert", "table": "users", "values": {"username": "a", "password_hash": "h"}},
        {"op": "update", "table": "request_counts", "add": {"count": 2},
         "where": {"service": "users"}},
        {"op": "delete", "table": "rides", "where": {"ride_id": {"in": [1, 2]}}},
        {"op": "clear"}]})
    assert w.write_id == "k1" and len(w.ops) == 4
    assert isinstance(w.ops[0], Insert)
    again = parse_write({"ops": [operation_json(op) for op in w.ops]})
    assert again.ops == w.ops


@pytest.mark.parametrize("body", [
    [], "x", None, {}, {"ops": []}, {"ops": {}}, {"ops": [1]}, {"ops": [{"op": "drop"}]},
    {"ops": [{"op": "insert", "table": "nope", "values": {}}]},
    {"ops": [{"op": "insert", "table": "users", "values": {"username": "a"}}]},
    {"ops": [{"op": "insert", "table": "users", "values": {"username": True,
                                                            "password_hash": "h"}}]},
    {"ops": [{"op": "insert", "table": "rides", "values": {
        "created_by": "a", "ride_time": 1.5, "source": 1, "destination": 2}}]},
    {"ops": [{"op": "insert", "table": "rides", "values": {
        "created_by": "a", "ride_time": 2**63, "source": 1, "destination": 2}}]},
    {"ops": [{"op": "delete", "table": "users", "where": {"1=1 OR username": "a"}}]},
    {"ops": [{"op": "delete", "table": "users", "where": {"username": {"like": "%"}}}]},
    {"ops": [{"op": "update", "table": "users", "where": {}}]},
    {"ops": [{"op": "clear", "table": "users"}]},
    {"ops": [{"op": "clear"}], "id": 5},
    {"ops": [{"op": "clear"}], "extra": 1},
    {"ops": [{"op": "insert", "table": "users", "values": {"username": "a\x00",
                                                            "password_hash": "h"}}]},
])
def test_bad_writes_are_refused_with_a_sentence(body):
    with pytest.raises(BadRequest) as err:
        parse_write(body)
    assert str(err.value).endswith(".")


@pytest.mark.parametrize("body", [
    [], {"table": "x"}, {"table": "users", "columns": []}, {"table": "users", "columns": ["x"]},
    {"table": "users", "limit": 0}, {"table": "users", "limit": True},
    {"table": "users", "order_by": [{"column": "x"}]}, {"table": "users", "count": 1},
    {"queries": []}, {"queries": [{"table": "users"}], "table": "users"},
])
def test_bad_reads_are_refused(body):
    with pytest.raises(BadRequest):
        parse_read(body)


def test_a_read_round_trips_through_its_queue_form():
    r = parse_read({"table": "rides", "columns": ["ride_id"], "where": {"source": 1,
                    "ride_time": {"gt": 5}}, "order_by": [{"column": "ride_time"}], "limit": 3})
    assert r.single
    q = query_json(r.queries[0])
    assert parse_read({"queries": [{k: v for k, v in q.items() if v is not None}]}).queries == \
        r.queries


@given(st.text())
def test_any_string_is_a_value_never_a_name(text):
    w = parse_write({"ops": [{"op": "insert", "table": "users",
                              "values": {"username": text.replace("\x00", ""),
                                         "password_hash": "h"}}]})
    assert w.ops[0].values["username"] == text.replace("\x00", "")  # type: ignore[union-attr]
    if text not in ("users", "rides", "ride_members", "request_counts"):
        with pytest.raises(BadRequest):
            parse_write({"ops": [{"op": "delete", "table": text}]})


@pytest.mark.parametrize("op", [
    {"op": "insert", "table": "rides", "values": {
        "ride_id": 2**63 - 1, "created_by": "a", "ride_time": 5, "source": 1, "destination": 2}},
    {"op": "update", "table": "rides", "set": {"ride_id": 2**63 - 1}, "where": {"ride_id": 1}},
    {"op": "update", "table": "rides", "add": {"ride_id": 1}, "where": {"ride_id": 1}},
])
def test_a_counter_is_the_masters_to_give_never_the_clients(op):
    """An explicit ride_id near 2**63 would make every later ride creation fail."""
    with pytest.raises(BadRequest, match="given by the DBaaS"):
        parse_write({"ops": [op]})
