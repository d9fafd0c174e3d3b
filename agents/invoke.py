"""``invoke_llm``: a one-off completion a client asks for beside the conversation (``llm_response``).

The request is checked here: the model must be the agent's own or one the session policy allows, and the
messages must be plain chat messages. A refusal carries the error code the client gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from agents.agent import Agent
from agents.services import Emit
from common.errors import CodedError
from llm.client import LlmError, LlmRequest
from protocol import events as ev
from protocol import messages as m


class InvokeRefused(CodedError):
    """An invoke_llm request that is not allowed or not well formed."""


def invoke_request(msg: m.InvokeLlm, agent_name: str, agent: Agent, allowed_models: tuple[str, ...],
                   has_llm: bool) -> LlmRequest:
    """The LLM request for ``msg``; InvokeRefused when the agent, the model or the messages do not allow it."""
    model = msg.model or agent.llm_model
    if agent.is_echo and msg.model is None or not has_llm:
        raise InvokeRefused(f"agent '{agent_name}' has no LLM to invoke", "unsupported")
    if model != agent.llm_model and model not in allowed_models:
        raise InvokeRefused(f"invoke_llm: model {model[:60]!r} is not allowed", "model_not_allowed")
    messages: list[dict[str, Any]] = [{"role": "system", "content": msg.prompt}] if msg.prompt else []
    for index, item in enumerate(msg.messages):
        role, content = item.get("role"), item.get("content")
        if role not in ("system", "user", "assistant") or not isinstance(content, (str, list)):
            raise InvokeRefused(f"invoke_llm: messages[{index}] needs a role and a string or list content", "bad_field")
        messages.append({"role": role, "content": content})
    if not messages:
        raise InvokeRefused("invoke_llm: no prompt and no messages", "bad_field")
    return LlmRequest(model, messages, agent.temperature, agent.max_tokens, agent.llm_timeout_s)


async def answer_invoke(complete: Callable[[LlmRequest], Awaitable[str]], request: LlmRequest, emit: Emit) -> None:
    """Run the completion and send ``llm_response``, or the LLM's error."""
    try:
        await emit(ev.LlmResponse(await complete(request)))
    except LlmError as exc:
        await emit(ev.Error(f"invoke_llm: {exc}", exc.code))


async def prepare_invoke(msg: m.InvokeLlm, agent_name: str, agent: Agent, allowed_models: tuple[str, ...],
                         complete: Callable[[LlmRequest], Awaitable[Any]] | None,
                         emit: Emit) -> Coroutine[Any, Any, None] | None:
    """The answer to ``msg``, to run beside the conversation; None when it is refused (the client is told)."""
    try:
        request = invoke_request(msg, agent_name, agent, allowed_models, complete is not None)
    except InvokeRefused as exc:
        await emit(ev.Error(str(exc), exc.code))
        return None
    assert complete is not None
    return answer_invoke(complete, request, emit)
