"""``woken``: a background loop's wait that a stop always ends."""

from __future__ import annotations

import asyncio

from fhir_service.waits import woken


async def test_a_loop_stops_when_cancelled_as_its_event_is_set() -> None:
    # The moment Python 3.11's wait_for gets wrong: the event is set, then the loop is
    # cancelled before it runs again. wait_for returned as if woken and the loop went on.
    event = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            event.clear()
            await woken(event, 10)
            rounds += 1

    task = asyncio.create_task(loop())
    for _ in range(3):
        await asyncio.sleep(0)
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1)
    assert done == {task}, "the loop went on after it was cancelled"
    assert task.cancelled()
    assert rounds == 0


async def test_it_says_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert await woken(event, 0.01) is False
    event.set()
    assert await woken(event, 10) is True
