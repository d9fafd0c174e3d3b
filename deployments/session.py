"""SessionActor: one Ray actor per websocket connection, running one Conversation.

The ingress pushes typed client messages in order (``push`` only enqueues) and drains server messages from
the ``events`` streaming generator. The actor reaches the models through the Transcriber and Synthesizer
deployment handles.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import AsyncGenerator, AsyncIterator

import ray
from ray.serve.handle import DeploymentHandle

from agents.config import AgentConfig, VoiceSpec
from agents.conversation import Conversation, Limits, Services
from agents.llm import LlmClient, LlmSettings
from agents.llm_warmup import warm_up_litellm
from protocol import messages as m
from speech.audio import OUTPUT_RATE, float_to_pcm16, read_wav, resample
from speech.stt import Transcript

log = logging.getLogger("voi.session")
_CLOSED = None


RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)  # while Serve replaces a replica that died, calls are tried again


def _replica_lost(exc: BaseException) -> bool:
    """A call that failed because its replica died or is being replaced (not because of its input)."""
    return isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)) or type(
        exc
    ).__name__ in ("DeploymentUnavailableError", "ReplicaUnavailableError", "BackPressureError")


def handle_services(transcriber: DeploymentHandle, synthesizer: DeploymentHandle, llm: LlmClient) -> Services:
    """Services backed by deployment handles (and LiteLLM): the only place where a Conversation meets Ray."""

    async def transcribe(pcm16: bytes, prompt: str | None) -> Transcript:
        for delay in (*RETRY_DELAYS_S, None):
            try:
                return await transcriber.transcribe.remote(pcm16, prompt)
            except Exception as exc:
                if delay is None or not _replica_lost(exc):
                    raise
                log.warning("Transcriber replica lost (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def synthesize(text: str, voice: VoiceSpec, tone: str | None, cached: bool) -> AsyncIterator[bytes]:
        for delay in (*RETRY_DELAYS_S, None):
            stream = synthesizer.options(stream=True).synthesize.remote(
                text, voice.model, voice.voice, voice.speed, tone=tone, cache=cached)
            sent = False
            try:
                async for chunk in stream:
                    sent = True
                    yield chunk
                return
            except Exception as exc:
                if sent or delay is None or not _replica_lost(exc):
                    raise  # after audio went out a retry would repeat it: the speech fails instead
                log.warning("Synthesizer replica lost (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
            finally:
                stream.cancel()  # a barge-in or a closed socket stops synthesis on the replica too

    async def load_greeting_audio(path: Path) -> bytes:
        def load() -> bytes:
            audio, rate = read_wav(path)
            return float_to_pcm16(resample(audio, rate, OUTPUT_RATE))

        return await asyncio.to_thread(load)

    return Services(transcribe=transcribe, synthesize=synthesize, load_greeting_audio=load_greeting_audio,
                    stream_llm=llm.stream, complete_llm=llm.complete)


def register_local_llm(local_llm: DeploymentHandle) -> None:
    """Models named ``voi-local/...`` reach the LocalLLM deployment through a LiteLLM custom provider."""
    from agents.local_provider import register_local_provider

    async def stream(request: dict) -> AsyncIterator[dict]:
        response = local_llm.options(stream=True).stream.remote(request)
        try:
            async for chunk in response:
                yield chunk
        finally:
            response.cancel()  # a barge-in stops generation on the replica too

    async def complete(request: dict) -> dict:
        return await local_llm.complete.remote(request)

    register_local_provider(stream, complete)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class SessionActor:
    def __init__(self, transcriber: DeploymentHandle, synthesizer: DeploymentHandle, local_llm: DeploymentHandle | None,
                 llm_settings: LlmSettings) -> None:
        # One line per turn with its latencies goes to this worker's log (and the driver's console).
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s %(name)s -- %(message)s")
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)
        if local_llm is not None:
            register_local_llm(local_llm)
        self._llm = LlmClient(llm_settings)
        self._services = handle_services(transcriber, synthesizer, self._llm)
        self._outbox: asyncio.Queue[m.ServerMessage | None] = asyncio.Queue()
        self._inbox: asyncio.Queue[m.ClientMessage | None] = asyncio.Queue()
        self._conversation: Conversation | None = None
        self._consumer: asyncio.Task[None] | None = None

    async def ready(self) -> int:
        """Called while the actor waits in the pool: LiteLLM's first-call cost is paid here, not by a turn."""
        await warm_up_litellm(self._llm)
        return os.getpid()

    def describe(self) -> dict[str, object]:
        """What this actor serves (for operators and fault tests): agent, mode, messages so far."""
        conv = self._conversation
        if conv is None:
            return {"started": False, "pid": os.getpid()}
        return {"started": True, "pid": os.getpid(), "agent": conv.agent_name, "mode": conv.options.mode,
                "messages": len(conv.messages)}

    async def start(self, agent_name: str, agent: AgentConfig, init: m.Init, greeting_dir: str | None, limits: Limits) -> None:
        self._conversation = Conversation(
            agent_name=agent_name,
            agent=agent,
            options=init,
            services=self._services,
            emit=self._outbox.put,
            limits=limits,
            greeting_dir=Path(greeting_dir) if greeting_dir else None,
        )
        await self._conversation.start()
        self._consumer = asyncio.create_task(self._consume())

    async def push(self, msg: m.ClientMessage) -> None:
        """Enqueue one client message; the ingress awaits each push, so messages keep their order."""
        self._inbox.put_nowait(msg)

    async def _consume(self) -> None:
        assert self._conversation is not None
        while (msg := await self._inbox.get()) is not _CLOSED:
            try:
                await self._conversation.handle(msg)
            except Exception:
                log.exception("handling %s failed", type(msg).__name__)
                await self._outbox.put(m.error("the server failed to handle that message", "internal"))

    async def events(self) -> AsyncGenerator[m.ServerMessage, None]:
        while (msg := await self._outbox.get()) is not _CLOSED:
            yield msg

    async def close(self) -> None:
        self._inbox.put_nowait(_CLOSED)
        if self._consumer:
            await asyncio.gather(self._consumer, return_exceptions=True)
        if self._conversation:
            await self._conversation.close()
        self._outbox.put_nowait(_CLOSED)
