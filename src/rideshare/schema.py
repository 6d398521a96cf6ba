"""The tables a worker stores, described once.

The orchestrator checks every table and column name of a request against this description (an
unknown name is a 400) and the worker builds its DDL from it, so the two can never disagree.
Values are always bound as parameters; names only ever come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ColumnType(StrEnum):
    TEXT = "text"
    INT = "int"


class Generated(StrEnum):
    """Values the master decides, so that every slave stores the same fact."""

    POSITION = "position"  # the log position of the write (orders rows by creation)
    COUNTER = "counter"  # the next value of a counter that never goes back


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False
    generated: Generated | None = None
    references: str | None = None  # "table.column", with ON DELETE CASCADE


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    cleared_by_clear: bool = True
    indexes: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


TEXT, INT = ColumnType.TEXT, ColumnType.INT

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "users",
            (
                Column("username", TEXT),
                Column("password_hash", TEXT),
                Column("created_seq", INT, generated=Generated.POSITION),
            ),
            primary_key=("username",),
            indexes=(("created_seq",),),
        ),
        Table(
            "rides",
            (
                Column("ride_id", INT, generated=Generated.COUNTER),
                Column("created_by", TEXT, references="users.username"),
                Column("ride_time", INT),  # seconds since the epoch, UTC
                Column("source", INT),
                Column("destination", INT),
                Column("created_seq", INT, generated=Generated.POSITION),
            ),
            primary_key=("ride_id",),
            indexes=(("source", "destination", "ride_time"), ("created_by",)),
        ),
        Table(
            "ride_members",
            (
                Column("ride_id", INT, references="rides.ride_id"),
                Column("username", TEXT, references="users.username"),
                Column("joined_seq", INT, generated=Generated.POSITION),
            ),
            primary_key=("ride_id", "username"),
            indexes=(("username",),),
        ),
        Table(
            "request_counts",
            (Column("service", TEXT), Column("count", INT)),
            primary_key=("service",),
            cleared_by_clear=False,
        ),
    )
}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
