"""Fixtures: real stacks (PostgreSQL, RabbitMQ, ZooKeeper, nginx), each with its own names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import RunningStack


@pytest.fixture(scope="session")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningStack]]:
    """Start a stack with settings overrides (``RIDESHARE_*`` names); all are stopped and
    cleaned up at the end of the session, or by ``stack.down()`` earlier."""
    started: list[RunningStack] = []

    def make(**overrides: str) -> RunningStack:
        run_dir: Path = tmp_path_factory.mktemp("stack")
        stack = RunningStack(run_dir, overrides)
        started.append(stack)
        stack.up()
        return stack

    yield make
    for stack in started:
        stack.cli("down")
        stack.cleanup()


@pytest.fixture(scope="session")
def stack(make_stack: Callable[..., RunningStack]) -> RunningStack:
    """The shared stack for tests that do not crash or scale workers."""
    return make_stack()
