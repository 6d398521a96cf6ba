"""Fixtures: real stacks (PostgreSQL, RabbitMQ, ZooKeeper, nginx), each with its own names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.support import RunningStack


@contextmanager
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningStack]]:
    """A factory of stacks; every stack it started is stopped and cleaned up at the end."""
    started: list[RunningStack] = []

    def make(**overrides: str) -> RunningStack:
        stack = RunningStack(tmp_path_factory.mktemp("stack"), overrides)
        started.append(stack)
        stack.up()
        return stack

    try:
        yield make
    finally:
        left = []
        for stack in started:
            stack.cli("down")
            left += [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in stack.leftovers()]
            stack.cleanup()
        assert not left, f"processes left running after rideshare down: {left}"


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningStack]]:
    """Start a stack with settings overrides (``RIDESHARE_*`` names), for this module only."""
    with stacks(tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The shared stack for tests that do not crash or scale workers."""
    with stacks(tmp_path_factory) as make:
        yield make()
