"""A worker's own PostgreSQL database: its schema, applying operations, answering queries.

The master applies operations with ``resolve=True``: it decides generated values (ride ids from
counters that never go back, log positions) and returns the operations with those values filled in.
A slave applies those resolved operations as they are, so every copy stores the same facts.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from rideshare.protocol import Condition, Query
from rideshare.schema import TABLES, ColumnType, Generated, Table

log = logging.getLogger(__name__)

_OPERATORS = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_CLEAR_ORDER = ("ride_members", "rides", "users")  # children first
_META_DDL = (
    "CREATE TABLE IF NOT EXISTS log_state (id int PRIMARY KEY CHECK (id = 1),"
    " position bigint NOT NULL, epoch bigint NOT NULL)",
    "INSERT INTO log_state VALUES (1, 0, 0) ON CONFLICT DO NOTHING",
    "CREATE TABLE IF NOT EXISTS id_counters (name text PRIMARY KEY, value bigint NOT NULL)",
    "CREATE TABLE IF NOT EXISTS applied_writes (write_id text PRIMARY KEY,"
    " position bigint NOT NULL, result jsonb NOT NULL, applied_at bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS applied_writes_position ON applied_writes (position)",
    "CREATE INDEX IF NOT EXISTS applied_writes_applied_at ON applied_writes (applied_at)",
)
#: Tables a snapshot carries, parents before children; meta tables included.
SNAPSHOT_TABLES = ("users", "rides", "ride_members", "request_counts", "id_counters",
                   "applied_writes")


@dataclass(frozen=True)
class LogState:
    position: int
    epoch: int


def _table_ddl(table: Table) -> list[sql.Composed]:
    columns = []
    for c in table.columns:
        kind = sql.SQL("bigint" if c.type is ColumnType.INT else "text")
        parts = [sql.Identifier(c.name), kind]
        if not c.nullable:
            parts.append(sql.SQL("NOT NULL"))
        if c.references:
            ref_table, ref_column = c.references.split(".")
            parts.append(sql.SQL("REFERENCES {} ({}) ON DELETE CASCADE").format(
                sql.Identifier(ref_table), sql.Identifier(ref_column)))
        columns.append(sql.SQL(" ").join(parts))
    columns.append(sql.SQL("PRIMARY KEY ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, table.primary_key))))
    statements = [sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        sql.Identifier(table.name), sql.SQL(", ").join(columns))]
    for index in table.indexes:
        statements.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{table.name}_{'_'.join(index)}"), sql.Identifier(table.name),
            sql.SQL(", ").join(map(sql.Identifier, index))))
    return statements


def _where(conditions: tuple[Condition, ...]) -> tuple[sql.Composable, list[Any]]:
    if not conditions:
        return sql.SQL(""), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for c in conditions:
        if c.operator == "in":
            parts.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(c.column)))
            params.append(list(c.value))  # type: ignore[arg-type]
        else:
            parts.append(sql.SQL("{} {} %s").format(
                sql.Identifier(c.column), sql.SQL(_OPERATORS[c.operator])))
            params.append(c.value)
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts), params


def _counter_name(table: str, column: str) -> str:
    return f"{table}.{column}"


class Store:
    """One worker's database. Not safe for concurrent use: one connection, one caller."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], dsn: str = "") -> None:
        self.conn = conn
        self.dsn = dsn  # with its password, unlike conn.info.dsn: for more connections

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, dsn: str) -> Store:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, row_factory=dict_row)
        store = cls(conn, dsn)
        await store.create_schema()
        return store

    async def close(self) -> None:
        await self.conn.close()

    async def create_schema(self) -> None:
        async with self.conn.transaction():
            for table in TABLES.values():
                for statement in _table_ddl(table):
                    await self.conn.execute(statement)
            for meta in _META_DDL:
                await self.conn.execute(meta)

    async def log_state(self) -> LogState:
        cur = await self.conn.execute("SELECT position, epoch FROM log_state WHERE id = 1")
        row = await cur.fetchone()
        assert row is not None
        return LogState(row["position"], row["epoch"])

    async def set_log_state(self, position: int, epoch: int) -> None:
        await self.conn.execute(
            "UPDATE log_state SET position = %s, epoch = %s WHERE id = 1", (position, epoch))

    # --- writes --------------------------------------------------------------------------------

    async def applied_results(self, write_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored result of each write id already applied, so a repeat is answered, not
        applied twice."""
        if not write_ids:
            return {}
        cur = await self.conn.execute(
            "SELECT write_id, result FROM applied_writes WHERE write_id = ANY(%s)", (write_ids,))
        return {row["write_id"]: row["result"] for row in await cur.fetchall()}

    async def record_log(self, entries: list[dict[str, Any]], epoch: int) -> None:
        """Remember each entry's write id, result and time, and advance the log position: one
        round trip for the whole batch."""
        await self.conn.execute(
            "WITH recorded AS (INSERT INTO applied_writes (write_id, position, result, applied_at)"
            " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::jsonb[], %s::bigint[])"
            " ON CONFLICT (write_id) DO NOTHING)"
            " UPDATE log_state SET position = %s, epoch = %s WHERE id = 1",
            ([e["id"] for e in entries], [e["position"] for e in entries],
             [orjson.dumps(e["result"]).decode() for e in entries],
             [e.get("at", 0) for e in entries], entries[-1]["position"], epoch))

    async def forget_write_ids(self, forget: dict[str, int]) -> None:
        """Forget the write ids the master decided to forget (``forget_decision``): the same
        rows on every copy, at the same log position, whatever each copy's clock says."""
        await self.conn.execute(
            "DELETE FROM applied_writes WHERE position <= %s OR applied_at < %s",
            (forget["upto"], forget["before"]))

    async def apply(
        self, ops: list[dict[str, Any]], position: int, resolve: bool, savepoint: bool = True
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Apply one write's operations: all or none.

        Returns (the operations with generated values filled in, one result per operation).
        Raises the database's ``psycopg.Error`` when it refuses (``dberrors`` says what it
        means). With ``savepoint``, only this write is rolled back; without, the caller's whole
        transaction is (cheaper when nothing fails).
        """
        resolved, results = [], []
        async with self.conn.transaction() if savepoint else contextlib.nullcontext():
            for op in ops:
                done, result = await self._apply_one(op, position, resolve)
                resolved.append(done)
                results.append(result)
        return resolved, results

    async def _apply_one(
        self, op: dict[str, Any], position: int, resolve: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        kind = op["op"]
        if kind == "clear":
            for name in _CLEAR_ORDER:
                await self.conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(name)))
            return op, {"rowcount": 0}
        table = TABLES[op["table"]]
        if kind == "insert":
            return await self._insert(table, op, position, resolve)
        if kind == "update":
            where, params = _where(_conditions(op["where"]))
            assignments = [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in op["set"]]
            assignments += [sql.SQL("{0} = {0} + %s").format(sql.Identifier(k)) for k in op["add"]]
            statement = sql.SQL("UPDATE {} SET {}").format(
                sql.Identifier(table.name), sql.SQL(", ").join(assignments)) + where
            cur = await self.conn.execute(
                statement, [*op["set"].values(), *op["add"].values(), *params])
            return op, {"rowcount": cur.rowcount}
        if kind == "delete":
            where, params = _where(_conditions(op["where"]))
            cur = await self.conn.execute(
                sql.SQL("DELETE FROM {}").format(sql.Identifier(table.name)) + where, params)
            return op, {"rowcount": cur.rowcount}
        raise ValueError(f"unknown operation {kind!r}")

    async def _insert(
        self, table: Table, op: dict[str, Any], position: int, resolve: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        values = dict(op["values"])
        generated: dict[str, Any] = {}
        for column in table.columns:
            if column.generated is Generated.POSITION and column.name not in values:
                values[column.name] = generated[column.name] = position
            elif column.generated is Generated.COUNTER:
                name = _counter_name(table.name, column.name)
                if column.name in values:  # a slave applying the master's decision
                    await self.conn.execute(
                        "INSERT INTO id_counters VALUES (%s, %s) ON CONFLICT (name) DO UPDATE"
                        " SET value = GREATEST(id_counters.value, EXCLUDED.value)",
                        (name, values[column.name]))
                elif resolve:
                    cur = await self.conn.execute(
                        "INSERT INTO id_counters VALUES (%s, 1) ON CONFLICT (name) DO UPDATE"
                        " SET value = id_counters.value + 1 RETURNING value", (name,))
                    row = await cur.fetchone()
                    assert row is not None
                    values[column.name] = generated[column.name] = row["value"]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(sql.Placeholder() * len(values)))
        if op.get("on_conflict") == "ignore":
            statement += sql.SQL(" ON CONFLICT DO NOTHING")
        cur = await self.conn.execute(statement, list(values.values()))
        return {**op, "values": values}, {"rowcount": cur.rowcount, "generated": generated}

    # --- reads ---------------------------------------------------------------------------------

    async def query(self, queries: list[Query]) -> list[dict[str, Any]]:
        """Answer every query from one snapshot (one statement needs no transaction of its own:
        BEGIN and COMMIT were most of a single read's cost)."""
        if len(queries) == 1:
            return [await self._query_one(queries[0])]
        async with self.conn.transaction():
            await self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return [await self._query_one(q) for q in queries]

    async def _query_one(self, q: Query) -> dict[str, Any]:
        where, params = _where(q.where)
        table = sql.Identifier(q.table)
        if q.count:
            cur = await self.conn.execute(
                sql.SQL("SELECT count(*) AS n FROM {}").format(table) + where, params)
            row = await cur.fetchone()
            return {"count": row["n"] if row else 0}
        statement = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, q.columns)), table) + where
        if q.order_by:
            statement += sql.SQL(" ORDER BY ") + sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(o.column),
                                        sql.SQL("DESC" if o.desc else "ASC"))
                for o in q.order_by)
        if q.limit:
            statement += sql.SQL(" LIMIT {}").format(sql.Literal(q.limit))
        cur = await self.conn.execute(statement, params)
        return {"rows": await cur.fetchall()}


def _conditions(raw: dict[str, Any]) -> tuple[Condition, ...]:
    """Conditions as they travel on the queues: {column: {operator: value}}."""
    out = []
    for column, spec in raw.items():
        ((operator, value),) = spec.items()
        out.append(Condition(column, operator, tuple(value) if operator == "in" else value))
    return tuple(out)
