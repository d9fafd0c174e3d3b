"""The clocks a conversation may be given (common/clock.py): virtual time moves only when the test moves it."""

import asyncio

import pytest

from common.clock import MONOTONIC, VirtualClock, first_of


async def test_advance_wakes_each_sleeper_at_its_own_time_in_order():
    clock, woke = VirtualClock(), []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    start = clock.now()
    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 0.3), ("early", 0.1), ("never", 5.0))]
    await clock.advance(0.5)
    assert woke == [("early", start + 0.1), ("late", start + 0.3)] and clock.now() == start + 0.5
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_run_jumps_from_timer_to_timer_and_a_cancelled_sleeper_moves_no_time():
    clock = VirtualClock()
    start = clock.now()
    forgotten = asyncio.create_task(clock.sleep(60))
    await asyncio.sleep(0)
    forgotten.cancel()

    async def work() -> str:
        await clock.sleep(2)
        await clock.sleep(3)
        return "done"

    assert await clock.run(work()) == "done" and clock.now() == start + 5
    with pytest.raises(TimeoutError):
        await clock.run(clock.sleep(100), limit_s=10)


async def test_first_of_is_a_timeout_on_the_clock():
    clock = VirtualClock()
    never = asyncio.Event()
    assert await clock.run(first_of(clock, 1.0, never.wait())) is False
    soon = asyncio.Event()
    asyncio.get_running_loop().call_soon(soon.set)
    assert await first_of(clock, 1.0, soon.wait()) is True
    assert await first_of(MONOTONIC, None, asyncio.sleep(0)) is True
