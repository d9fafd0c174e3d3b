"""The user's turns waiting for a reply, in order, with the typed input of each, and the order of a turn and
the client message that follows it.

A client that asks for a reply while the agent's previous speech still plays sends the interrupt of that
speech right after its ``create_response`` (the JS client does: text, create_response, interrupt). The new
reply's LLM must see the previous reply cut where the client stopped it, so such a turn (no audio of its own,
a speech still playing) waits until the client's next message has been handled, or until that speech has
played out by the Speaker's estimate when no message comes. An order, not a race: no wait is long enough
for a message that arrives late, and none is needed for one that arrives at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agents.history import History
from agents.replies import Reply
from agents.services import Emit
from agents.tool_round import TurnTools
from agents.user_turn import UserTurn
from common.clock import Clock, first_of
from protocol import events as ev

log = logging.getLogger("voi.conversation")
RECHECK_S = 0.1  # while nothing comes from the client: how often the playing speech is looked at again


@dataclass
class TurnRequest:
    turn: UserTurn
    typed_ids: list[int]
    requested_at: float
    tools: TurnTools
    goes_on: bool = False  # the reply goes on from the client's tool results (there may be no new input)
    handled_before: int = field(default=0, repr=False)  # client messages handled when it was asked for
    abandoned: bool = False  # the user went on with the turn (agents/continuation.py): it is not answered
    reply: Reply | None = field(default=None, repr=False)  # the reply to it, once it is being written


class TurnQueue:
    def __init__(self, history: History, emit: Emit, clock: Clock) -> None:
        self._history = history
        self._emit = emit
        self._clock = clock
        self._requests: asyncio.Queue[TurnRequest] = asyncio.Queue()
        self._typed_ids: list[int] = []  # typed user messages since the last turn was asked for
        self._handled = 0  # client messages handled so far
        self._next_handled = asyncio.Event()
        self._waiting = 0  # turns put and not yet answered

    def message_handled(self) -> None:
        """One more client message was handled (the Conversation calls this after each one)."""
        self._handled += 1
        self._next_handled.set()
        self._next_handled = asyncio.Event()

    async def add_typed(self, content: list[dict[str, Any]]) -> None:
        stored = self._history.add("user", content)
        self._typed_ids.append(stored.id)
        await self._emit(ev.Message("user", stored.id, stored.content))

    def put(self, turn: UserTurn, tools: TurnTools, goes_on: bool) -> TurnRequest:
        """Ask for a reply to ``turn`` and the text typed since the last one."""
        request = TurnRequest(turn, self._typed_ids, turn.ended_at or self._clock.now(), tools, goes_on, self._handled)
        self._requests.put_nowait(request)
        self._typed_ids = []
        self._waiting += 1
        return request

    @property
    def idle(self) -> bool:
        """No turn is waiting for its reply or being answered."""
        return self._waiting == 0

    async def serve(self, run_turn: Callable[[TurnRequest], Awaitable[None]], agent_name: str) -> None:
        """Answer the turns one at a time, in order (the Conversation's worker task)."""
        while True:
            request = await self._requests.get()
            try:
                await run_turn(request)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the session: the turn is already closed by run_turn
                log.exception("turn of agent '%s' failed", agent_name)
            finally:
                self._waiting -= 1
                self._requests.task_done()

    async def join(self) -> None:
        await self._requests.join()

    async def after_next_message(self, request: TurnRequest, playing: Callable[[float], bool]) -> None:
        """Until a client message that came after ``request`` was handled, or nothing ``playing`` any more."""
        while self._handled <= request.handled_before + 1 and playing(self._clock.now()):
            await first_of(self._clock, RECHECK_S, self._next_handled.wait())
