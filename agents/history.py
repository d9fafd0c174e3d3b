"""The messages of one conversation, as the client sees them and as the LLM is shown them.

Ids are positions: the greeting is message 0 and every later message takes the next id, so the client's
message ids, a speech's ``speech_id`` and a cut after an interrupt all name the same stored message.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from llm.tool_calls import ToolCall
from protocol import messages as m


@dataclass
class ToolStep:
    """One round of tool calls inside an assistant reply: made after ``at`` characters of its text were said."""

    at: int
    calls: list[ToolCall]
    results: dict[str, str] = field(default_factory=dict)  # call id -> what the LLM is shown

    @property
    def answered(self) -> bool:
        return all(call.id in self.results for call in self.calls)


CANCELLED_RESULT = "error: the call was cancelled (the user interrupted)"


@dataclass
class StoredMessage:
    id: int
    role: str
    content: list[dict[str, Any]]
    tone: str | None = None  # an assistant message's voice tone
    tool_steps: list[ToolStep] = field(default_factory=list)  # an assistant reply's tool calls and their results

    @property
    def text(self) -> str:
        return " ".join(p["text"] for p in self.content if p.get("type") == "text")

    def set_text(self, text: str) -> None:
        self.content = [m.text_part(text)] + [p for p in self.content if p.get("type") != "text"]


class History:
    """The message store of a conversation and its view for the LLM."""

    def __init__(self) -> None:
        self.messages: list[StoredMessage] = []

    def add(self, role: str, content: list[dict[str, Any]], tone: str | None = None) -> StoredMessage:
        stored = StoredMessage(id=len(self.messages), role=role, content=content, tone=tone)
        self.messages.append(stored)
        return stored

    def __getitem__(self, message_id: int) -> StoredMessage:
        return self.messages[message_id]

    def forget(self, message_id: int) -> None:
        """Empty a message (its id stays taken: ids are positions); the LLM is no longer shown it."""
        if 0 <= message_id < len(self.messages):
            self.messages[message_id].content = []

    def __len__(self) -> int:
        return len(self.messages)

    def for_llm(self, json_replies: bool) -> list[dict[str, Any]]:
        """The conversation as LLM messages: consecutive user messages merged, image parts kept.

        With ``json_replies`` the assistant's own turns are shown in the JSON format it must answer in.
        """
        out: list[dict[str, Any]] = []
        for stored in self.messages:
            if stored.role == "assistant" and stored.tool_steps:
                out += _reply_with_tools(stored)
                continue
            if stored.role == "assistant":
                if not stored.text:
                    continue
                content: Any = stored.text
                if json_replies:  # keep showing the model its own format
                    content = json.dumps({"voice_tone": stored.tone or "neutral", "text": stored.text})
                out.append({"role": "assistant", "content": content})
                continue
            parts = [p for p in stored.content if p.get("type") in ("text", "image_url")]
            if not parts:
                continue
            if out and out[-1]["role"] == "user":
                out[-1]["content"] = out[-1]["content"] + parts
            else:
                out.append({"role": "user", "content": list(parts)})
        for message in out:
            content = message["content"]
            if isinstance(content, list) and all(p.get("type") == "text" for p in content):
                message["content"] = "\n".join(p["text"] for p in content)
        return out


def _reply_with_tools(stored: StoredMessage) -> list[dict[str, Any]]:
    """A reply that called tools, as the LLM saw it happen: what it said before each round of calls, the
    calls, their results, and what it said after. A call without a result (the reply was cut while it ran)
    is shown as cancelled: every call must have an answer in a chat-completions context."""
    out: list[dict[str, Any]] = []
    text, said = stored.text, 0
    for step in stored.tool_steps:
        before = text[said:step.at].strip()
        said = max(said, step.at)
        out.append({"role": "assistant", "content": before or None, "tool_calls": [c.as_llm() for c in step.calls]})
        out += [{"role": "tool", "tool_call_id": c.id, "content": step.results.get(c.id, CANCELLED_RESULT)}
                for c in step.calls]
    rest = text[said:].strip()
    if rest:
        out.append({"role": "assistant", "content": rest})
    return out


@dataclass
class _Shown:
    message_id: int
    text: str = ""
    final: bool = False


class TranscriptMessages:
    """Each user turn's growing transcript shown as one user message whose id stays, updated in place."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._shown: dict[Hashable, _Shown] = {}  # by turn (any object that names one turn)
        self._taken: tuple[Hashable, _Shown] | None = None  # the turn taken last, and what it showed

    def show(self, turn: Hashable, text: str, *, final: bool) -> StoredMessage | None:
        """The message to send for this update of ``turn`` (None: nothing new to show)."""
        text, shown = text.strip(), self._shown.get(turn)
        if not text:
            if not (final and shown is not None and not shown.final):
                return None
            text = shown.text  # the final pass heard nothing new: keep what was shown
        if shown is not None and text == shown.text and (shown.final or not final):
            return None
        if shown is None:
            shown = self._shown[turn] = _Shown(self._history.add("user", [m.text_part(text)]).id)
        else:
            self._history[shown.message_id].content = [m.text_part(text)]
        shown.text, shown.final = text, final
        return self._history[shown.message_id]

    def take(self, turn: Hashable) -> str:
        """The text shown for ``turn``, which has ended: it is forgotten here (``reopen`` may bring it back)."""
        shown = self._shown.pop(turn, None)
        if shown is not None:
            self._taken = (turn, shown)
        return shown.text if shown else ""

    def reopen(self, turn: Hashable) -> int | None:
        """``turn`` goes on: its message (the same id) is shown growing again. Returns that id (None: nothing
        was shown for it)."""
        taken, self._taken = self._taken, None
        shown = self._shown.get(turn) or (taken[1] if taken is not None and taken[0] is turn else None)
        if shown is None:
            return None
        shown.final = False
        self._shown[turn] = shown
        return shown.message_id
