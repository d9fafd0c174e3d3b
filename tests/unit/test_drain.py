"""Drains that tell the caller (deployments/drain.py): every live socket is told at once, the calls go on, and
what is still open after the grace is closed (1001); sockets that leave earlier end the drain early."""

from __future__ import annotations

from common.clock import VirtualClock
from deployments.drain import DRAIN_NOTICE, SHUTDOWN_NOTICE, drain


class Socket:
    def __init__(self, live: set, leaves_after_s: float | None = None, hands_over: bool = False) -> None:
        self.live, self.leaves_after_s, self.hands_over = live, leaves_after_s, hands_over
        self.told: list[str] = []
        self.closed = False
        self.replying = False
        live.add(self)

    def turn_under_way(self) -> bool:
        return self.replying

    async def tell_draining(self, text: str) -> None:
        self.told.append(text)

    async def close_going_away(self) -> None:
        self.closed = True
        self.live.discard(self)


async def test_live_sockets_are_told_at_once_and_the_rest_closed_after_the_grace():
    clock, live = VirtualClock(), set()
    quick, slow = Socket(live, leaves_after_s=3.0), Socket(live)

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if quick in live and clock.now() - start >= quick.leaves_after_s:
            live.discard(quick)  # the client finished its turn and reconnected elsewhere

    start = clock.now()
    told, closed = await clock.run(drain(live, grace_s=10.0, poll_s=0.5, sleep=sleep))
    assert (told, closed) == (2, 1)
    assert quick.told == slow.told == [DRAIN_NOTICE.format(grace=10.0)] and "reconnect" in slow.told[0]
    assert not quick.closed and slow.closed and not live
    assert clock.now() - start >= 10.0


async def test_a_drain_ends_as_soon_as_every_socket_has_left():
    clock, live = VirtualClock(), set()
    socket = Socket(live)

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        live.clear()

    start = clock.now()
    assert await clock.run(drain(live, grace_s=60.0, poll_s=0.5, sleep=sleep)) == (1, 0)
    assert clock.now() - start == 0.5 and not socket.closed


async def test_a_drain_with_no_sockets_returns_at_once():
    assert await drain(set(), grace_s=60.0) == (0, 0)


async def test_a_stopping_server_lets_the_reply_under_way_finish_then_closes():
    """SIGTERM (finish_turn): an idle socket is closed at once, one in the middle of a reply when it ends, and one
    whose reply outlasts the grace when the grace runs out."""
    clock, live = VirtualClock(), set()
    idle, replying, endless = Socket(live), Socket(live), Socket(live)
    replying.replying = endless.replying = True
    closed_at: dict[str, float] = {}

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now() - start >= 2.0:
            replying.replying = False  # response_done went out
        for name, socket in (("idle", idle), ("replying", replying), ("endless", endless)):
            if socket.closed and name not in closed_at:
                closed_at[name] = clock.now() - start

    start = clock.now()
    told, cut = await clock.run(drain(live, grace_s=5.0, poll_s=0.5, sleep=sleep, finish_turn=True))
    assert (told, cut) == (3, 1)
    assert idle.told == replying.told == endless.told == [SHUTDOWN_NOTICE]
    assert closed_at["idle"] == 0.5 and 2.0 <= closed_at["replying"] <= 2.5
    assert idle.closed and replying.closed and endless.closed and not live


async def test_a_call_that_hands_over_is_closed_when_its_turn_is_over_in_a_rolling_drain_too():
    """The phone (its transport reconnects the call to a serving replica once closed): closed between turns,
    while a Voi call in the same drain talks on until the grace ends."""
    clock, live = VirtualClock(), set()
    phone, voi = Socket(live, hands_over=True), Socket(live)
    phone.replying = True
    closed_at: dict[str, float] = {}

    async def sleep(seconds: float) -> None:
        await clock.sleep(seconds)
        if clock.now() - start >= 3.0:
            phone.replying = False  # its reply has been played
        for name, socket in (("phone", phone), ("voi", voi)):
            if socket.closed and name not in closed_at:
                closed_at[name] = clock.now() - start

    start = clock.now()
    assert await clock.run(drain(live, grace_s=10.0, poll_s=0.5, sleep=sleep)) == (2, 1)
    assert 3.0 <= closed_at["phone"] <= 3.5 and "voi" not in closed_at  # (closed when the grace ran out)
    assert voi.closed and clock.now() - start >= 10.0
    assert phone.told == voi.told == [DRAIN_NOTICE.format(grace=10.0)]
