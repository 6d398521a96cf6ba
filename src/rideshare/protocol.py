"""The shapes of db/write and db/read bodies, and of the messages on the queues.

Bodies are structured JSON, never SQL. ``parse_write`` and ``parse_read`` turn a decoded body into
checked operations or raise ``BadRequest`` with a sentence that says what to fix; the orchestrator
calls them before anything reaches a queue, and the worker trusts what they produced.

Write body::

    {"id": "optional-client-write-id",
     "ops": [{"op": "insert", "table": "users", "values": {...}, "on_conflict": "error"},
             {"op": "update", "table": "t", "set": {...}, "add": {"col": 1}, "where": {...}},
             {"op": "delete", "table": "t", "where": {...}},
             {"op": "clear"}]}

Read body: one query, or ``{"queries": [query, ...]}`` answered from one snapshot::

    {"table": "rides", "columns": ["ride_id"], "where": {"source": 1, "ride_time": {"gt": 5}},
     "order_by": [{"column": "ride_time", "desc": false}], "limit": 10}
    {"table": "rides", "count": true}

A ``where`` maps a column to a value (equality) or to ``{"eq"|"ne"|"lt"|"le"|"gt"|"ge"|"in": v}``;
all conditions must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rideshare.errors import BadRequest
from rideshare.schema import INT64_MAX, INT64_MIN, TABLES, Column, ColumnType, Generated, Table

PROTOCOL_VERSION = 1
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in")
MAX_OPS_PER_WRITE = 100
MAX_IN_VALUES = 1000
MAX_LIMIT = 10_000


Value = str | int | None


@dataclass(frozen=True)
class Condition:
    column: str
    operator: str
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class Insert:
    table: str
    values: dict[str, Value]
    on_conflict: str = "error"  # or "ignore"
    op: str = "insert"


@dataclass(frozen=True)
class Update:
    table: str
    set: dict[str, Value]
    add: dict[str, int]
    where: tuple[Condition, ...]
    op: str = "update"


@dataclass(frozen=True)
class Delete:
    table: str
    where: tuple[Condition, ...]
    op: str = "delete"


@dataclass(frozen=True)
class Clear:
    op: str = "clear"


Operation = Insert | Update | Delete | Clear


@dataclass(frozen=True)
class WriteRequest:
    ops: tuple[Operation, ...]
    write_id: str | None = None


@dataclass(frozen=True)
class OrderBy:
    column: str
    desc: bool = False


@dataclass(frozen=True)
class Query:
    table: str
    columns: tuple[str, ...]
    where: tuple[Condition, ...] = ()
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    count: bool = False


@dataclass(frozen=True)
class ReadRequest:
    queries: tuple[Query, ...]
    single: bool = field(default=True)


# --- checking -------------------------------------------------------------------------------


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object.")
    return value


def _only_keys(body: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"{what} has unknown field(s) {unknown}; allowed: {sorted(allowed)}.")


def _table(name: Any) -> Table:
    if not isinstance(name, str) or name not in TABLES:
        raise BadRequest(f"Unknown table {name!r}; tables are {sorted(TABLES)}.")
    return TABLES[name]


def _column(table: Table, name: Any) -> Column:
    column = table.column(name) if isinstance(name, str) else None
    if column is None:
        raise BadRequest(
            f"Unknown column {name!r} in table {table.name!r}; columns are "
            f"{list(table.column_names)}."
        )
    return column


def check_value(column: Column, value: Any) -> Value:
    """A value fit for ``column``: the right JSON type, and a 64-bit integer where one goes."""
    if value is None:
        if column.nullable:
            return None
        raise BadRequest(f"Column {column.name!r} cannot be null.")
    if column.type is ColumnType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"Column {column.name!r} takes an integer, not {value!r}.")
        if not INT64_MIN <= value <= INT64_MAX:
            raise BadRequest(f"Column {column.name!r}: {value} does not fit in 64 bits.")
        return value
    if not isinstance(value, str):
        raise BadRequest(f"Column {column.name!r} takes a string, not {value!r}.")
    if "\x00" in value:
        raise BadRequest(f"Column {column.name!r}: strings cannot contain NUL characters.")
    return value


def _where(table: Table, raw: Any) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    conditions = []
    for name, spec in _expect_object(raw, "'where'").items():
        column = _column(table, name)
        if isinstance(spec, dict):
            if len(spec) != 1:
                raise BadRequest(f"Condition on {name!r} must have exactly one operator.")
            ((operator, value),) = spec.items()
            if operator not in OPERATORS:
                raise BadRequest(f"Unknown operator {operator!r}; use one of {list(OPERATORS)}.")
        else:
            operator, value = "eq", spec
        if operator == "in":
            if not isinstance(value, list) or len(value) > MAX_IN_VALUES:
                raise BadRequest(f"'in' on {name!r} takes a list of at most {MAX_IN_VALUES}.")
            checked: Value | tuple[Value, ...] = tuple(check_value(column, v) for v in value)
        else:
            checked = check_value(column, value)
        conditions.append(Condition(name, operator, checked))
    return tuple(conditions)


def _values(table: Table, raw: Any, what: str) -> dict[str, Value]:
    """Checked values for ``table``; a counter's value is the master's alone to give (an id given
    near the end of its range would make every later one fail)."""
    out = {}
    for name, v in _expect_object(raw, what).items():
        column = _column(table, name)
        if column.generated is Generated.COUNTER:
            raise BadRequest(f"Column {name!r} is given by the DBaaS; leave it out of {what}.")
        out[name] = check_value(column, v)
    return out


def _operation(raw: Any) -> Operation:
    body = _expect_object(raw, "Each operation")
    kind = body.get("op")
    if kind == "clear":
        _only_keys(body, {"op"}, "A clear operation")
        return Clear()
    if kind == "insert":
        _only_keys(body, {"op", "table", "values", "on_conflict"}, "An insert")
        table = _table(body.get("table"))
        values = _values(table, body.get("values"), "'values'")
        missing = [
            c.name
            for c in table.columns
            if c.name not in values and c.generated is None and not c.nullable
        ]
        if missing:
            raise BadRequest(f"Insert into {table.name!r} is missing column(s) {missing}.")
        on_conflict = body.get("on_conflict", "error")
        if on_conflict not in ("error", "ignore"):
            raise BadRequest("'on_conflict' is 'error' or 'ignore'.")
        return Insert(table.name, values, on_conflict)
    if kind == "update":
        _only_keys(body, {"op", "table", "set", "add", "where"}, "An update")
        table = _table(body.get("table"))
        set_values = _values(table, body.get("set", {}), "'set'")
        add = _values(table, body.get("add", {}), "'add'")
        if any(not isinstance(v, int) for v in add.values()):
            raise BadRequest("'add' takes integers for integer columns.")
        if not set_values and not add:
            raise BadRequest("An update needs 'set' or 'add'.")
        return Update(table.name, set_values, add, _where(table, body.get("where")))  # type: ignore[arg-type]
    if kind == "delete":
        _only_keys(body, {"op", "table", "where"}, "A delete")
        table = _table(body.get("table"))
        return Delete(table.name, _where(table, body.get("where")))
    raise BadRequest(f"Unknown operation {kind!r}; use insert, update, delete or clear.")


def parse_write(body: Any) -> WriteRequest:
    body = _expect_object(body, "A write body")
    _only_keys(body, {"ops", "id"}, "A write body")
    ops = body.get("ops")
    if not isinstance(ops, list) or not ops:
        raise BadRequest("A write body needs 'ops', a non-empty list of operations.")
    if len(ops) > MAX_OPS_PER_WRITE:
        raise BadRequest(f"A write holds at most {MAX_OPS_PER_WRITE} operations.")
    write_id = body.get("id")
    if write_id is not None and (not isinstance(write_id, str) or not 0 < len(write_id) <= 200):
        raise BadRequest("'id' must be a string of 1 to 200 characters.")
    return WriteRequest(tuple(_operation(op) for op in ops), write_id)


def _query(raw: Any) -> Query:
    body = _expect_object(raw, "A query")
    _only_keys(body, {"table", "columns", "where", "order_by", "limit", "count"}, "A query")
    table = _table(body.get("table"))
    columns = body.get("columns", list(table.column_names))
    if not isinstance(columns, list) or not columns:
        raise BadRequest("'columns' must be a non-empty list of column names.")
    for name in columns:
        _column(table, name)
    order_by = []
    raw_order = body.get("order_by", [])
    if not isinstance(raw_order, list):
        raise BadRequest("'order_by' must be a list of {\"column\": ..., \"desc\": bool}.")
    for item in raw_order:
        item = _expect_object(item, "Each 'order_by' entry")
        _only_keys(item, {"column", "desc"}, "An 'order_by' entry")
        _column(table, item.get("column"))
        if not isinstance(item.get("desc", False), bool):
            raise BadRequest("'desc' must be true or false.")
        order_by.append(OrderBy(item["column"], item.get("desc", False)))
    limit = body.get("limit")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT
    ):
        raise BadRequest(f"'limit' must be an integer from 1 to {MAX_LIMIT}.")
    count = body.get("count", False)
    if not isinstance(count, bool):
        raise BadRequest("'count' must be true or false.")
    return Query(
        table.name, tuple(columns), _where(table, body.get("where")), tuple(order_by), limit, count
    )


def parse_read(body: Any) -> ReadRequest:
    body = _expect_object(body, "A read body")
    if "queries" in body:
        _only_keys(body, {"queries"}, "A read body with 'queries'")
        queries = body["queries"]
        if not isinstance(queries, list) or not 0 < len(queries) <= MAX_OPS_PER_WRITE:
            raise BadRequest(f"'queries' must be a list of 1 to {MAX_OPS_PER_WRITE} queries.")
        return ReadRequest(tuple(_query(q) for q in queries), single=False)
    return ReadRequest((_query(body),), single=True)


# --- back to JSON (what travels on the queues) ------------------------------------------------


def _conditions_json(conditions: tuple[Condition, ...]) -> dict[str, Any]:
    return {
        c.column: {c.operator: list(c.value) if isinstance(c.value, tuple) else c.value}
        for c in conditions
    }


def operation_json(op: Operation) -> dict[str, Any]:
    if isinstance(op, Insert):
        return {"op": "insert", "table": op.table, "values": op.values,
                "on_conflict": op.on_conflict}
    if isinstance(op, Update):
        return {"op": "update", "table": op.table, "set": op.set, "add": op.add,
                "where": _conditions_json(op.where)}
    if isinstance(op, Delete):
        return {"op": "delete", "table": op.table, "where": _conditions_json(op.where)}
    return {"op": "clear"}


def query_json(q: Query) -> dict[str, Any]:
    return {"table": q.table, "columns": list(q.columns), "where": _conditions_json(q.where),
            "order_by": [{"column": o.column, "desc": o.desc} for o in q.order_by],
            "limit": q.limit, "count": q.count}


# --- message kinds on the queues --------------------------------------------------------------
# writeQ:   {"v": 1, "kind": "writes", "writes": [{"id": str, "ops": [...]}, ...]}
#             reply: {"epoch": int, "answers": [one reply per write]}
#           {"v": 1, "kind": "write", "id": str, "ops": [...]}   (one write; reply: its answer)
#           {"v": 1, "kind": "snapshot"}                    (reply_to: the asking slave's queue)
#           {"v": 1, "kind": "position"}   reply: {"position": int, "epoch": int}
# readQ:    {"v": 1, "reads": [{"queries": [...]}, ...], "min_position": int}
#             reply: {"answers": [one reply per read]}
# syncQ:    {"v": 1, "epoch": int, "entries": [{"position": int, "id": str, "ops": [...],
#                                               "result": {...}}]}
# replies:  {"ok": true, ...} or {"ok": false, "status": 409, "error": "..."}

KIND_WRITE = "write"
KIND_WRITES = "writes"  # several writes in one message, answered in one reply
KIND_SNAPSHOT = "snapshot"
KIND_POSITION = "position"  # the master's log position, ordered after every committed write
KIND_MARKER = "marker"  # a new master's note to itself in its own sync queue: all before is drained


def queue_names(prefix: str) -> dict[str, str]:
    return {
        "read": f"{prefix}readQ",
        "write": f"{prefix}writeQ",
        "response": f"{prefix}responseQ",
        "sync": f"{prefix}syncQ",
        "dead": f"{prefix}deadQ",
    }
