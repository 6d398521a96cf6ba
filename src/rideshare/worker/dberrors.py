"""What an error of the worker's database means: the content of one write, or the database itself.

PostgreSQL says which in the first two characters of its SQLSTATE:

- content: the write cannot be stored as it is (22 data exception, 23 integrity constraint,
  54 program limit, such as an index row too large, 42 a statement it refuses). Answered with a
  4xx, set aside (dead-lettered); the worker goes on. Redelivering it would fail the same way on
  every master after this one.
- trouble: the database itself cannot work now (08 connection, 53 insufficient resources such as a
  full disk, 57 operator intervention such as a shutdown, 58 system error, XX internal error, and
  a connection that is simply gone). Answered with a 503; a master in that state steps down, and
  the write is redelivered to the next master.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import psycopg_pool

CONTENT = {"22": 400, "23": 409, "54": 400, "42": 400}
TROUBLE = frozenset({"08", "53", "57", "58", "XX"})


@dataclass(frozen=True)
class DbVerdict:
    status: int
    sentence: str
    trouble: bool  # the database itself: a master steps down

    @property
    def content(self) -> bool:
        return not self.trouble


def judge_error(exc: BaseException) -> DbVerdict:
    """The verdict on an exception raised while talking to the worker's own database."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return DbVerdict(503, "the worker's database has no free connection; retry", True)
    if not isinstance(exc, psycopg.Error):
        return DbVerdict(503, f"the worker's database cannot be reached ({exc!r}); retry", True)
    state = exc.sqlstate or ""
    detail = (exc.diag.message_detail or exc.diag.message_primary or str(exc)).strip()
    klass = state[:2]
    if klass in CONTENT:
        return DbVerdict(CONTENT[klass], f"the database refused the write: {detail}", False)
    broken = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    if klass in TROUBLE or not state or broken:
        return DbVerdict(503, f"the worker's database is in trouble ({state or 'no answer'}: "
                              f"{detail}); retry", True)
    # Any other class is about the statement, not the server: the same write fails everywhere.
    return DbVerdict(400, f"the database refused the write ({state}: {detail})", False)
