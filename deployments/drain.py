"""Drains that tell the caller: an Ingress replica that Serve is stopping (a rolling update, a downscale) tells
its live clients, lets their calls go on for a grace period, then closes what is left.

Ray Serve gives a replica no call when its drain begins: it stops routing new requests to it and waits up to
``graceful_shutdown_timeout_s`` for the ongoing ones (each open websocket is one) before ``__del__``. So the
replica asks the controller every ``DRAIN_POLL_S`` whether it is ``STOPPING`` (``watch_for_drain``); then
``drain`` sends each live socket the ``server_shutdown`` error at once (the message SIGTERM of
``python serve_app.py`` sends, PROTOCOL.md section 8) while the call goes on, so the client can finish its
turn and reconnect at a moment of its choosing (new connections go to the new replicas), and after
``grace_s`` closes the sockets still open with 1001. The serve configs keep ``graceful_shutdown_timeout_s``
above ``drain_grace_s`` plus the poll (tests/unit/test_serve_configs.py), so Serve never cuts a call first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

log = logging.getLogger("ray.serve")

DRAIN_POLL_S = 2.0
DRAIN_NOTICE = "this server is being replaced: finish your turn and reconnect; the call ends within {grace:.0f} s"
SHUTDOWN_NOTICE = "the server is shutting down; please reconnect in a moment"


class Drainable(Protocol):
    # Its transport reconnects the call itself once we close it (the phone: Twilio asks the webhook what next, and
    # a serving replica takes the call), so it is closed as soon as its turn is over, in a rolling drain too.
    hands_over: bool

    def turn_under_way(self) -> bool:
        """A response (the phone: or the caller's turn, or the reply's playback) is under way."""
        ...

    async def tell_draining(self, text: str) -> None: ...

    async def close_going_away(self) -> None: ...


async def drain(connections: Collection[Drainable], grace_s: float, poll_s: float = 0.2,
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, *, finish_turn: bool = False) -> tuple[int, int]:
    """Tell every live socket, wait until they have all left or ``grace_s`` passed, close the rest (1001).
    ``connections`` is the live set (sockets remove themselves when they end). A rolling update's drain lets the
    calls go on (new replicas take the reconnects); with ``finish_turn`` (the whole server stops: SIGTERM), and
    always for a call that ``hands_over``, a socket is closed as soon as no turn is under way, so the reply
    under way is finished first. Returns (told, closed when the grace ran out)."""
    live = list(connections)
    text = SHUTDOWN_NOTICE if finish_turn else DRAIN_NOTICE.format(grace=grace_s)
    await asyncio.gather(*(c.tell_draining(text) for c in live), return_exceptions=True)
    closed: set[int] = set()

    async def close(sockets: list[Drainable]) -> None:
        closed.update(id(c) for c in sockets)
        await asyncio.gather(*(c.close_going_away() for c in sockets), return_exceptions=True)

    waited = 0.0
    while connections and waited < grace_s:
        await close([c for c in list(connections)
                     if id(c) not in closed and (finish_turn or c.hands_over) and not c.turn_under_way()])
        await sleep(poll_s)
        waited += poll_s
    left = [c for c in list(connections) if id(c) not in closed]
    await close(left)
    return len(live), len(left)


async def watch_for_drain(on_drain: Callable[[], Awaitable[None]]) -> None:
    """Call ``on_drain`` once, when the controller says this replica is stopping (run as a task on the replica's
    loop; outside a replica, or when the controller cannot be asked, it ends without calling)."""
    import ray
    from ray import serve
    from ray.serve._private.common import ReplicaState
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        context = serve.get_replica_context()
        me, app, deployment = context.replica_id.unique_id, context.app_name, context.deployment
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except Exception as exc:
        log.warning("drains will not be told to clients: %s: %s", type(exc).__name__, exc)
        return
    while True:
        await asyncio.sleep(DRAIN_POLL_S)
        try:
            details = await controller.get_deployment_details.remote(app, deployment)
        except Exception:  # the controller restarts, or is busy: ask again next round
            continue
        if any(r.replica_id == me and r.state == ReplicaState.STOPPING for r in details.replicas):
            await on_drain()
            return
