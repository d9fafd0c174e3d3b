"""The tools of one conversation: the server's toolbox, the tools the client declared (and may change), the
client's ``tool_choice``, and the client's answers to calls of its own tools.

A reply whose LLM called a client tool ends with the call handed over; the client's result goes into that
reply's tool step, and once every call of the step is answered the conversation may go on: at once (the Voi
extension), or at the client's next ``response.create`` (the OpenAI Realtime protocol).
"""

from __future__ import annotations

from agents.history import History, ToolStep
from agents.services import Emit
from agents.tool_round import ServerTools, TurnTools
from protocol import events as ev
from protocol import messages as m


class UnknownCall(Exception):
    """A tool result names no open call of a client tool in this conversation."""


class SessionTools:
    def __init__(self, server: ServerTools | None, client: tuple[m.ClientTool, ...], choice: str | None) -> None:
        self.server = server
        self.client = client
        self.choice = choice
        self._answered = False  # a step of client calls was answered and no reply has gone on from it yet

    def set_client(self, tools: tuple[m.ClientTool, ...], choice: str | None) -> None:
        self.client, self.choice = tools, choice

    def for_reply(self, request: m.CreateResponse | None = None) -> TurnTools:
        """The tools of one reply: the session's, or those its ``response.create`` named."""
        client = request.tools if request is not None and request.tools is not None else self.client
        choice = request.tool_choice if request is not None and request.tool_choice is not None else self.choice
        return TurnTools(self.server, client, choice)

    async def take_result(self, history: History, result: m.ToolResult, emit: Emit) -> bool:
        """The client's ``result`` (an error to the client if it names no open call): True when the reply goes
        on from it now (its step is answered and the client asked to continue)."""
        try:
            answered = self.answer(history, result)
        except UnknownCall as exc:
            await emit(ev.Error(str(exc), "unknown_tool_call"))
            return False
        return answered and result.continue_reply

    def answer(self, history: History, result: m.ToolResult) -> bool:
        """Record the client's ``result``; True when its step is now answered and is the conversation's latest
        (the reply may go on from it). UnknownCall when no open client call has that id."""
        step, is_latest = _open_step(history, result.call_id)
        if step is None:
            raise UnknownCall(f"tool_result names no open tool call of this session ({result.call_id[:40]!r})")
        step.results[result.call_id] = result.output
        self._answered = step.answered and is_latest
        return self._answered

    def take_answered(self) -> bool:
        """Whether a step of client calls was answered since the last reply was asked for (a reply asked for
        now goes on from it); asked once per reply."""
        answered, self._answered = self._answered, False
        return answered


def _open_step(history: History, call_id: str) -> tuple[ToolStep | None, bool]:
    """The step holding the unanswered call ``call_id``, and whether nothing was said after its message."""
    latest = True
    for stored in reversed(history.messages):
        for step in stored.tool_steps:
            if any(c.id == call_id for c in step.calls) and call_id not in step.results:
                return step, latest
        if any(p.get("type") != "text" or p.get("text") for p in stored.content):  # it said something
            latest = False
    return None, False
