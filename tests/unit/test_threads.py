"""common.threads.iterate_in_thread: a blocking generator consumed from asyncio, and stopped promptly. Milliseconds."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.clock import settle
from common.threads import iterate_in_thread


@pytest.fixture
def pool():
    pool = ThreadPoolExecutor(1, thread_name_prefix="worker")
    yield pool
    pool.shutdown(wait=True)


async def test_items_are_made_in_the_worker_thread_in_order(pool):
    threads: list[str] = []
    finished: list[str] = []

    def numbers():
        for n in range(3):
            threads.append(threading.current_thread().name)
            yield n

    got = [n async for n in iterate_in_thread(numbers(), pool, on_finished=lambda: finished.append("done"))]
    assert got == [0, 1, 2]
    assert threads and all(name.startswith("worker") for name in threads)
    assert finished == ["done"]
    assert [n async for n in iterate_in_thread(iter("ab"))] == ["a", "b"]  # the loop's default executor


async def test_an_error_of_the_iterator_reaches_the_consumer(pool):
    finished: list[str] = []

    def failing():
        yield 1
        raise ValueError("no second item")

    got = []
    with pytest.raises(ValueError, match="no second item"):
        async for n in iterate_in_thread(failing(), pool, on_finished=lambda: finished.append("done")):
            got.append(n)
    assert got == [1] and finished == ["done"]


async def test_cancelled_while_an_item_is_made_the_generator_is_closed_after_it_in_its_thread(pool):
    making, release = threading.Event(), threading.Event()
    events: list[object] = []
    finished = asyncio.Event()

    def items():
        try:
            yield 1
            making.set()
            release.wait(5)  # item 2 is being made when the consumer goes
            events.append("made 2")
            yield 2
            events.append("asked for 3")
            yield 3
        finally:
            events.append(("closed in", threading.current_thread().name))

    got = []

    async def consume() -> None:
        async for n in iterate_in_thread(items(), pool, on_finished=finished.set):
            got.append(n)

    task = asyncio.create_task(consume())
    await asyncio.to_thread(making.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == [] and not finished.is_set()  # not closed under the running thread
    release.set()
    await asyncio.wait_for(finished.wait(), 5)
    assert got == [1]
    assert events == ["made 2", ("closed in", events[-1][1])] and events[-1][1].startswith("worker")


async def test_closed_between_items_the_generator_is_closed_at_once(pool):
    events: list[str] = []

    def items():
        try:
            yield 1
            events.append("asked for 2")
            yield 2
        finally:
            events.append("closed")

    stream = iterate_in_thread(items(), pool, on_finished=lambda: events.append("finished"))
    assert await stream.__anext__() == 1
    await stream.aclose()
    assert events == ["closed", "finished"]


async def test_an_item_still_queued_when_the_consumer_goes_is_never_asked_for(pool):
    busy = threading.Event()
    pool.submit(busy.wait, 5)  # the only worker is taken: the first next() waits in the queue
    asked: list[str] = []
    finished = asyncio.Event()

    def items():
        asked.append("next")
        yield 1

    async def consume() -> None:
        async for _ in iterate_in_thread(items(), pool, on_finished=finished.set):
            pass

    task = asyncio.create_task(consume())
    await settle()  # its first next() is submitted to the pool
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
    busy.set()
    await asyncio.to_thread(pool.shutdown, True)
    assert asked == []
