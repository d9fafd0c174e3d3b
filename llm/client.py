"""The LLM, through LiteLLM: streamed chat completions for replies, plain ones for classifiers and invoke_llm.

Model names are routed as the original server did: a name with a LiteLLM provider prefix
(``openai/gpt-4o-mini``, ``gemini/...``, ``voi-local/...``) goes to that provider with its own credentials;
a bare name (``gpt-4o-mini``, ``llama-3.1-8b``) goes to the LiteLLM proxy at ``LITELLM_API_BASE`` (with
``LITELLM_API_KEY``) in the OpenAI format. Errors become ``LlmError`` with a message that is safe to show
a client (no provider response bodies, no keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from common.errors import CodedError
from llm.names import LOCAL_PROVIDER
from llm.tool_calls import ToolCallAssembler, ToolCalls

log = logging.getLogger("voi.llm")


class LlmError(CodedError):
    default_code = "llm_failed"


@dataclass(frozen=True)
class LlmRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    timeout_s: float = 30.0  # until the first token, and between tokens
    tools: tuple[dict[str, Any], ...] = ()  # function tools the LLM may call (chat-completions format)
    tool_choice: str | None = None  # "auto" (the default with tools), "none", "required"


@dataclass(frozen=True)
class LlmSettings:
    api_base: str | None = None  # LITELLM_API_BASE: a LiteLLM proxy (or any OpenAI-compatible server)
    api_key: str | None = None  # LITELLM_API_KEY
    max_retries: int = 0  # a voice reply is better failed fast than late: the user can just ask again


def import_litellm() -> Any:
    import litellm  # offline: importing llm/ chose the bundled cost map (llm.use_bundled_cost_map)

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def _providers(litellm: Any) -> set[str]:
    return {str(getattr(p, "value", p)) for p in litellm.provider_list} | {LOCAL_PROVIDER}


class LlmClient:
    def __init__(self, settings: LlmSettings) -> None:
        self.settings = settings
        self._litellm = import_litellm()
        self._known_providers = _providers(self._litellm)

    def route(self, model: str) -> dict[str, Any]:
        """The LiteLLM arguments that reach ``model``."""
        prefix = model.split("/", 1)[0] if "/" in model else None
        if prefix in self._known_providers:
            return {"model": model}
        if self.settings.api_base is None:
            return {"model": model}  # LiteLLM infers the provider (e.g. gpt-4o-mini -> OpenAI)
        return {"model": f"openai/{model}", "api_base": self.settings.api_base, "api_key": self.settings.api_key or "none"}

    def _arguments(self, request: LlmRequest, stream: bool) -> dict[str, Any]:
        args = self.route(request.model)
        args.update(messages=request.messages, stream=stream, timeout=request.timeout_s, max_retries=self.settings.max_retries)
        if request.temperature is not None:
            args["temperature"] = request.temperature
        if request.max_tokens is not None:
            args["max_tokens"] = request.max_tokens
        if request.tools:
            args["tools"] = list(request.tools)
            if request.tool_choice is not None:
                args["tool_choice"] = request.tool_choice
        return args

    async def stream(self, request: LlmRequest) -> AsyncIterator[str | ToolCalls]:
        """The reply's text as it is generated, then the tool calls it asked for, if any (``ToolCalls``);
        closing the iterator closes the provider's stream."""
        response = None
        calls = ToolCallAssembler()
        try:
            response = await asyncio.wait_for(self._litellm.acompletion(**self._arguments(request, True)), request.timeout_s)
            chunks = response.__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), request.timeout_s)
                except StopAsyncIteration:
                    break
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                calls.feed(getattr(choices[0].delta, "tool_calls", None))
                delta = getattr(choices[0].delta, "content", None)
                if delta:
                    yield delta
            whole = calls.calls()
            if whole:
                yield ToolCalls(whole)
        except TimeoutError:
            raise _timeout_error(request.timeout_s) from None
        except (asyncio.CancelledError, GeneratorExit, LlmError):
            raise
        except Exception as exc:
            raise _safe_error(request.model, exc, request.timeout_s) from None
        finally:
            if response is not None:
                await _close(response)

    async def complete(self, request: LlmRequest) -> str:
        try:
            response = await asyncio.wait_for(self._litellm.acompletion(**self._arguments(request, False)), request.timeout_s)
        except TimeoutError:
            raise _timeout_error(request.timeout_s) from None
        except Exception as exc:
            raise _safe_error(request.model, exc, request.timeout_s) from None
        return response.choices[0].message.content or ""


def _timeout_error(timeout_s: float) -> LlmError:
    return LlmError(f"the language model did not answer within {timeout_s:g} s", "llm_timeout")


def _safe_error(model: str, exc: Exception, timeout_s: float) -> LlmError:
    if "Timeout" in type(exc).__name__:  # litellm.Timeout / openai.APITimeoutError
        return _timeout_error(timeout_s)
    status = getattr(exc, "status_code", None)
    log.warning("LLM %s failed: %s: %s", model, type(exc).__name__, str(exc)[:300])
    detail = f"{type(exc).__name__}" + (f", HTTP {status}" if status else "")
    return LlmError(f"the language model {model[:60]!r} failed ({detail})")


async def _close(response: Any) -> None:
    """Stop a LiteLLM stream early (a barge-in, a refused first sentence): close the HTTP response."""
    for target in (response, getattr(response, "completion_stream", None)):
        close = getattr(target, "aclose", None)
        if close is None:
            continue
        try:
            await close()
        except Exception as exc:  # closing is best effort: the request is over either way
            log.debug("closing an LLM stream: %s", exc)
        return
