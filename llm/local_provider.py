"""The local model as a LiteLLM provider: `litellm.acompletion(model="voi-local/smollm2-135m", ...)`.

Everything LLM goes through LiteLLM, so the local model is registered as a LiteLLM custom provider
whose calls go to two injected async functions that speak OpenAI request / response dicts. Inside
the graph they call the LocalLLM deployment; in tests they can wrap a `LocalChatModel` or a script.
Ray-free. Only the async paths exist (`acompletion`, with or without `stream=True`): the voice
pipeline never blocks on an LLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import litellm  # offline: importing llm/ chose the bundled cost map (llm.use_bundled_cost_map)
from litellm import CustomLLM
from litellm.llms.custom_llm import CustomLLMError
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from llm.names import LOCAL_PROVIDER

StreamFn = Callable[[dict], AsyncIterator[dict]]
CompleteFn = Callable[[dict], Awaitable[dict]]

# LiteLLM's own switches, not parts of the OpenAI request the model should see.
_NOT_FORWARDED = {"stream", "stream_options", "extra_body"}


class LocalProvider(CustomLLM):
    """A LiteLLM handler that forwards OpenAI-shaped requests to the injected functions."""

    def __init__(self, stream_fn: StreamFn, complete_fn: CompleteFn) -> None:
        super().__init__()
        self.stream_fn = stream_fn
        self.complete_fn = complete_fn

    async def astreaming(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                         model_response: ModelResponse, print_verbose: Callable, encoding: Any, api_key: Any,
                         logging_obj: Any, optional_params: dict, acompletion: Any = None, litellm_params: Any = None,
                         logger_fn: Any = None, headers: dict | None = None, timeout: Any = None,
                         client: Any = None) -> AsyncIterator[GenericStreamingChunk]:
        chunks = self.stream_fn(openai_request(model, messages, optional_params))
        try:
            async for chunk in chunks:
                piece = generic_chunk(chunk)
                if piece is not None:
                    yield piece
        finally:
            # LiteLLM closes this generator when its stream is closed (or collected): pass that on at once,
            # so the model stops generating for a consumer that has gone.
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    async def acompletion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                          model_response: ModelResponse, print_verbose: Callable, encoding: Any, api_key: Any,
                          logging_obj: Any, optional_params: dict, acompletion: Any = None, litellm_params: Any = None,
                          logger_fn: Any = None, headers: dict | None = None, timeout: Any = None,
                          client: Any = None) -> ModelResponse:
        result = await self.complete_fn(openai_request(model, messages, optional_params))
        return ModelResponse(**result)

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        raise CustomLLMError(status_code=400, message=f"{LOCAL_PROVIDER}: use litellm.acompletion (async only)")

    def streaming(self, *args: Any, **kwargs: Any) -> Any:
        raise CustomLLMError(status_code=400, message=f"{LOCAL_PROVIDER}: use litellm.acompletion (async only)")


def register_local_provider(stream_fn: StreamFn, complete_fn: CompleteFn) -> None:
    """Make `voi-local/<name>` models reach these functions; calling it again replaces them."""
    for entry in litellm.custom_provider_map:
        if entry["provider"] == LOCAL_PROVIDER and isinstance(entry["custom_handler"], LocalProvider):
            entry["custom_handler"].stream_fn = stream_fn
            entry["custom_handler"].complete_fn = complete_fn
            return
    litellm.custom_provider_map = [entry for entry in litellm.custom_provider_map if entry["provider"] != LOCAL_PROVIDER]
    litellm.custom_provider_map.append({"provider": LOCAL_PROVIDER, "custom_handler": LocalProvider(stream_fn, complete_fn)})


def openai_request(model: str, messages: list, optional_params: dict) -> dict:
    """The OpenAI chat request body LiteLLM was asked for (sampling options, stop, seed ... included)."""
    request = {"model": model, "messages": messages}
    request.update((key, value) for key, value in optional_params.items() if key not in _NOT_FORWARDED)
    request.update(optional_params.get("extra_body") or {})
    return request


def generic_chunk(chunk: dict) -> GenericStreamingChunk | None:
    """One OpenAI `chat.completion.chunk` as LiteLLM's provider-neutral chunk (None if it says nothing)."""
    choices = chunk.get("choices") or []
    choice = choices[0] if choices else {}
    text = (choice.get("delta") or {}).get("content") or ""
    finish_reason = choice.get("finish_reason")
    usage = chunk.get("usage")
    if not text and finish_reason is None and usage is None:
        return None
    return GenericStreamingChunk(text=text, is_finished=finish_reason is not None, finish_reason=finish_reason or "",
                                 usage=usage, index=0, tool_use=None)
