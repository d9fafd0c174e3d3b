"""Tool calls in a streamed chat completion: the deltas of each call put together, and the calls' shapes.

A streaming provider sends a call in pieces (``delta.tool_calls[i]``: first its ``id`` and ``name``, then
the ``arguments`` JSON a few characters at a time), several calls interleaved by ``index``. The reply
writer gets whole calls, once the stream has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    id: str  # the LLM's id of this call; its result must name it
    name: str
    arguments: str  # the JSON text the LLM wrote (not necessarily valid JSON)

    def as_llm(self) -> dict[str, Any]:
        """The call as an assistant message's ``tool_calls`` entry (chat-completions format)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ToolCalls:
    """What a streamed reply yields, after its text, when the LLM asked for tools."""

    calls: tuple[ToolCall, ...]


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Collects ``delta.tool_calls`` pieces of one streamed completion."""

    def __init__(self) -> None:
        self._calls: dict[int, _Partial] = {}

    def feed(self, pieces: Any) -> None:
        for position, piece in enumerate(pieces or []):
            index = _field(piece, "index")
            partial = self._calls.setdefault(index if isinstance(index, int) else position, _Partial())
            partial.id = partial.id or (_field(piece, "id") or "")
            function = _field(piece, "function")
            if function is not None:
                partial.name = partial.name or (_field(function, "name") or "")
                partial.arguments.append(_field(function, "arguments") or "")

    def calls(self, id_prefix: str = "call") -> tuple[ToolCall, ...]:
        """The whole calls, in the LLM's order; a call the provider sent without an id gets one."""
        return tuple(ToolCall(p.id or f"{id_prefix}_{index}", p.name, "".join(p.arguments))
                     for index, p in sorted(self._calls.items()) if p.name)


def _field(obj: Any, name: str) -> Any:
    """A field of a LiteLLM delta object, or of the plain dict some providers' chunks carry."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
