"""Requests made in one turn of the event loop travel as one message."""

from __future__ import annotations

import asyncio

import pytest

from rideshare.orchestrator.rpc import Batcher


def test_requests_of_one_turn_share_a_message_and_a_lone_one_goes_alone():
    sent: list[list[int]] = []

    async def send(items):
        sent.append([i["n"] for i in items])
        await asyncio.sleep(0)
        return [{"double": i["n"] * 2} for i in items]

    async def scenario():
        batcher = Batcher(send, max_batch=3)
        together = await asyncio.gather(*(batcher.submit({"n": n}) for n in range(5)))
        alone = await batcher.submit({"n": 9})
        return together, alone

    together, alone = asyncio.run(scenario())
    assert [a["double"] for a in together] == [0, 2, 4, 6, 8]
    assert alone == {"double": 18}
    assert sent == [[0, 1, 2], [3, 4], [9]]


def test_a_failed_message_fails_every_request_in_it():
    async def send(items):
        raise TimeoutError

    async def scenario():
        batcher = Batcher(send)
        return await asyncio.gather(batcher.submit({}), batcher.submit({}),
                                    return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(r, TimeoutError) for r in results)


def test_a_request_given_up_on_does_not_disturb_the_others():
    async def send(items):
        await asyncio.sleep(0.05)
        return [{"ok": True} for _ in items]

    async def scenario():
        batcher = Batcher(send)
        impatient = asyncio.create_task(batcher.submit({}))
        patient = asyncio.create_task(batcher.submit({}))
        await asyncio.sleep(0.01)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        return await patient

    assert asyncio.run(scenario()) == {"ok": True}
