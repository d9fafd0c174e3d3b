"""LocalLLM deployment: the embedded llama.cpp chat model (llm/local_model.py) as a Serve deployment.

Calls take and give OpenAI dicts: ``handle.options(stream=True).stream.remote(request)`` yields
``chat.completion.chunk`` dicts, ``handle.complete.remote(request)`` returns a ``chat.completion``.
LiteLLM reaches it through the ``voi-local`` provider (llm/local_provider.py).

llama.cpp is not re-entrant, so a replica runs one generation at a time in its own worker thread, token by
token as the caller asks for them (common/threads.py), and the other requests wait their turn on an asyncio
lock (FIFO); the event loop only moves chunks. A
caller's ``response.cancel()`` (barge-in) stops generation after the token being computed. Outside a Serve
request (e.g. in a session host) cancelling the task that iterates the response does NOT reach the replica
in Ray 2.60: call ``cancel()`` on the response too (in a ``finally``). The lock is handed on only
when the worker thread has really finished, so two generations never overlap. A stream the caller
abandoned while still waiting for its turn never starts. ``complete`` is not interruptible: once
started it runs to its end (bound it with ``max_tokens``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any

from ray import serve

from common.health import HealthProbe
from common.threads import iterate_in_thread
from llm.local_model import PROBE_REQUEST, LocalChatModel, chat_arguments, check_probe_answer

log = logging.getLogger("ray.serve")


@serve.deployment(name="LocalLLM", max_ongoing_requests=32, ray_actor_options={"num_cpus": 0.5})  # threads may use more
class LocalLLM:
    def __init__(self, model_path: str | None = None, n_ctx: int = 2048, n_threads: int | None = None,
                 n_threads_batch: int | None = None, seed: int | None = None) -> None:
        # Threads: see llm.local_model.default_threads; on a 2-core machine shared with STT and TTS keep
        # n_threads (decoding) at 1, n_threads_batch=2 makes the prompt pass faster when the CPU is free.
        started = time.perf_counter()
        self.model = LocalChatModel(model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads_batch,
                                    seed=seed)
        loaded = time.perf_counter()
        # The first generation pays for buffer allocation and page faults: not a user's.
        self.model.complete({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="llama")
        self._lock = asyncio.Lock()
        self.health = HealthProbe("LocalLLM", self._probe)
        log.info("LocalLLM ready: %s, %d/%d threads (decode/prompt), loaded in %.2f s, warmed up in %.2f s",
                 self.model.path.name, self.model.n_threads, self.model.n_threads_batch, loaded - started,
                 time.perf_counter() - loaded)

    async def stream(self, request: dict) -> AsyncGenerator[dict, None]:
        """Yield ``chat.completion.chunk`` dicts as llama.cpp makes tokens; a bad request raises ValueError."""
        chunks = self.model.stream(request)  # validates now, before waiting for a turn
        await self._lock.acquire()
        # Token by token in the llama thread; the lock is handed on once that thread is done with this generation
        # (no await between acquiring it and iterating: iterate_in_thread releases it only once started).
        async with aclosing(iterate_in_thread(chunks, self._pool, on_finished=self._lock.release)) as pieces:
            async for chunk in pieces:
                self.health.served()
                yield chunk

    async def check_health(self) -> None:
        """llama.cpp made a token lately or answers a one-token probe now (common/health.py). A probe waits its turn
        behind the generations queued before it: a replica busy generating is serving, so it passes on its tokens."""
        await self.health.check()

    async def _probe(self) -> None:
        check_probe_answer(await self.complete(dict(PROBE_REQUEST)))

    async def complete(self, request: dict) -> dict:
        """A whole ``chat.completion`` for ``request``; a bad request raises ValueError."""
        chat_arguments(request)  # validates now, before waiting for a turn
        await self._lock.acquire()
        try:
            done = self._run_then_release(lambda: self.model.complete(request))
        except BaseException:
            self._lock.release()
            raise
        # Shielded: a cancelled caller must not make the lock look free while llama.cpp still runs.
        answer = await asyncio.shield(done)
        self.health.served()
        return answer

    def _run_then_release(self, work: Callable[[], Any]) -> asyncio.Future:
        """Start ``work`` in the llama thread; the lock (held by the caller) is released when it has finished."""
        done = asyncio.get_running_loop().run_in_executor(self._pool, work)
        done.add_done_callback(self._finished)
        return done

    def _finished(self, done: asyncio.Future) -> None:
        self._lock.release()
        if not done.cancelled():
            done.exception()  # seen here, so an abandoned caller's error is not logged as never retrieved
