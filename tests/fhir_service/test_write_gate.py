"""The gate a request's writes wait at: they go once its audit record is kept, never without."""

from __future__ import annotations

import asyncio

import pytest

from fhir_service.write_gate import NotRecordedError, before_write, gated


async def test_a_write_outside_a_request_does_not_wait() -> None:
    await asyncio.wait_for(before_write(), timeout=1)


async def test_a_write_waits_until_the_record_is_kept() -> None:
    opening: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    with gated(opening):
        writing = asyncio.create_task(before_write())
        await asyncio.sleep(0.05)
        assert not writing.done()
        opening.set_result(True)
        await asyncio.wait_for(writing, timeout=1)


async def test_no_write_is_made_when_the_record_could_not_be_kept() -> None:
    opening: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    opening.set_result(False)
    with gated(opening), pytest.raises(NotRecordedError, match="nothing was written"):
        await before_write()


async def test_a_write_given_up_on_leaves_the_record_to_the_others() -> None:
    opening: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    with gated(opening):
        first = asyncio.create_task(before_write())
        second = asyncio.create_task(before_write())
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        opening.set_result(True)
        await asyncio.wait_for(second, timeout=1)
    assert first.cancelled()
    assert not opening.cancelled()


async def test_the_gate_ends_with_its_block() -> None:
    opening: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    opening.set_result(False)
    with gated(opening):
        pass
    await before_write()
