"""SessionHost: one Ray async actor running many Conversations, one per websocket, as asyncio tasks.

A process per conversation cost about 365 MB and a process start on the caller's path (a burst of 16 callers
waited a median of 107 s for ``init_done``). A host imports and warms LiteLLM once and then serves up to
``sessions_per_host`` conversations, each with its own Conversation, bounded inbox and outbox, keyed by a
session id the Ingress makes. The Ingress ``open``s a conversation, pushes typed client messages in order
(``push`` only enqueues) and drains server messages from the ``events`` streaming generator. One
conversation's failure ends that conversation alone; the host and its other conversations go on.
The host reaches the models through the Transcriber and Synthesizer deployment handles.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle

from agents.agent import Agent, VoiceSpec
from agents.conversation import Conversation
from agents.recording import Recorder
from agents.services import Services, SessionPolicy
from agents.timeline import TurnReport
from agents.tools.toolbox import McpHub, Toolbox
from agents.turns import TurnConfig
from llm.client import LlmClient, LlmSettings
from llm.warmup import warm_up_litellm
from protocol import events as ev
from protocol import messages as m
from speech.audio import OUTPUT_RATE, float_to_pcm16, read_wav, resample
from speech.stt import Transcript

log = logging.getLogger("voi.session")


RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)  # while Serve replaces a replica that died, calls are tried again


_REPLICA_LOST = (RayActorError, DeploymentUnavailableError, ReplicaUnavailableError, BackPressureError)


def _replica_lost(exc: BaseException) -> bool:
    """A call that failed because its replica died or is being replaced (not because of its input)."""
    return isinstance(exc, _REPLICA_LOST)


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

    async def speak(text: str, voice: VoiceSpec, tone: str | None, cached: bool) -> AsyncIterator[bytes]:
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

    async def predict_end_of_turn(pcm16: bytes) -> float:
        # No retry: a lost answer only means the timer decides this turn's end.
        return await transcriber.end_of_turn.remote(pcm16)

    return Services(transcribe=transcribe, speak=speak, load_greeting_audio=load_greeting_audio,
                    stream_llm=llm.stream, complete_llm=llm.complete, predict_end_of_turn=predict_end_of_turn)


def register_local_llm(local_llm: DeploymentHandle) -> None:
    """Models named ``voi-local/...`` reach the LocalLLM deployment through a LiteLLM custom provider."""
    from llm.local_provider import register_local_provider

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


class _Ended:
    """The end of a conversation's event stream (the Ingress closes the socket when it sees the stream end)."""


_END = _Ended()
FAULT_INJECTION_ENV = "VOI_FAULT_INJECTION"  # "1": a typed text FAULT_TEXT makes the handler raise (fault tests)
FAULT_TEXT = "__voi_raise__"
FAULT_HANG_TEXT = "__voi_hang__"  # with VOI_FAULT_INJECTION=1: the host's event loop blocks (a hung host)
FAULT_HOST_START_ENV = "VOI_FAULT_HOST_START"  # a file path: a host starting while the file exists dies (fault tests)


def _die_if_asked() -> None:
    """Fault tests: the host that takes the file named by VOI_FAULT_HOST_START (a rename: one host per file) is
    SIGKILLed while it starts, as an OOM kill would, after the seconds the file holds (a caller can start to wait)."""
    path = os.environ.get(FAULT_HOST_START_ENV)
    if not path:
        return
    taken = f"{path}.{os.getpid()}"
    try:
        os.rename(path, taken)
        seconds = float(Path(taken).read_text() or 0)
    except (OSError, ValueError):
        return
    time.sleep(seconds)
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Hosted:
    """One conversation on the host: its state, its queues and the task that feeds it."""

    conversation: Conversation
    inbox: asyncio.Queue[m.ClientMessage | None]
    outbox: asyncio.Queue[ev.ConversationEvent | TurnReport | _Ended]
    tools: Toolbox | None = None  # the agent's server-side tools (closed with the conversation)
    task: asyncio.Task[None] | None = None
    flooding: bool = False  # the inbox overflowed and the client was told; reset when it has drained


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class SessionHost:
    def __init__(self, transcriber: DeploymentHandle, synthesizer: DeploymentHandle, local_llm: DeploymentHandle | None,
                 llm_settings: LlmSettings, sessions_per_host: int, inbox_size: int) -> None:
        _die_if_asked()
        # One line per turn with its latencies goes to this worker's log (and the driver's console).
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(asctime)s %(name)s -- %(message)s")
        logging.getLogger("LiteLLM").setLevel(logging.WARNING)
        if local_llm is not None:
            register_local_llm(local_llm)
        self._llm = LlmClient(llm_settings)
        self._services = handle_services(transcriber, synthesizer, self._llm)
        self._capacity = sessions_per_host
        self._inbox_size = inbox_size
        self._sessions: dict[str, _Hosted] = {}
        self._mcp = McpHub()  # MCP servers started (or connected) once per host, shared by its conversations
        self._fault_injection = os.environ.get(FAULT_INJECTION_ENV) == "1"

    async def ready(self) -> dict[str, object]:
        """Called once after start: LiteLLM's first-call cost is paid here, not by a caller's turn."""
        await warm_up_litellm(self._llm)
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    async def ping(self) -> None:
        """Answered on the host's event loop: no answer in time means the loop hangs (deployments/host_pool.py)."""

    def describe(self) -> dict[str, object]:
        """What this host serves, per conversation (for operators and fault tests)."""
        sessions = [{"session_id": sid, "agent": h.conversation.agent_name, "mode": h.conversation.init.mode,
                     "messages": len(h.conversation.messages), "queued": h.inbox.qsize()}
                    for sid, h in self._sessions.items()]
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "capacity": self._capacity,
                "sessions": sessions}

    async def open(self, session_id: str, agent_name: str, agent: Agent, init: m.Init, greeting_dir: str | None,
                   policy: SessionPolicy, listening: TurnConfig, app: str = "") -> None:
        """Start a conversation (``init_done`` and the greeting go to its outbox, read by ``events``)."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id} is already open on this host")
        if len(self._sessions) >= self._capacity:
            raise RuntimeError(f"this host already runs {self._capacity} conversations")
        outbox: asyncio.Queue[ev.ConversationEvent | TurnReport | _Ended] = asyncio.Queue()
        recorder = None
        if agent.recording.enabled:  # files land on this host's node, under the configured directory
            recorder = Recorder(agent.recording, session_id, max_turn_seconds=policy.max_turn_seconds, meta={
                "agent": agent_name, "app": app, "mode": init.mode, "input_audio_format": init.input_audio_format,
                "stream_output_audio": init.stream_output_audio, "node_id": ray.get_runtime_context().get_node_id()})
        tools = await self._mcp.toolbox(agent.tools.http, agent.tools.mcp) if agent.tools else None
        conversation = Conversation(
            tools=tools,
            agent_name=agent_name,
            agent=agent,
            init=init,
            services=self._services,
            emit=outbox.put,
            report_turn=outbox.put,  # to the Ingress, which records it in the metrics (never sent to the client)
            policy=policy,
            listening=listening,
            greeting_dir=Path(greeting_dir) if greeting_dir else None,
            recorder=recorder,
        )
        hosted = _Hosted(conversation, asyncio.Queue(maxsize=self._inbox_size), outbox, tools)
        self._sessions[session_id] = hosted
        hosted.task = asyncio.create_task(self._run(session_id, hosted), name=f"session:{session_id}")

    async def push(self, session_id: str, msg: m.ClientMessage) -> None:
        """Enqueue one client message; the Ingress awaits each push, so messages keep their order."""
        hosted = self._sessions.get(session_id)
        if hosted is None:
            return  # the conversation already ended; the Ingress is closing the socket
        if hosted.flooding and hosted.inbox.qsize() <= self._inbox_size // 2:
            hosted.flooding = False
        try:
            hosted.inbox.put_nowait(msg)
        except asyncio.QueueFull:
            if not hosted.flooding:  # once per flood, not once per dropped frame
                hosted.flooding = True
                await hosted.outbox.put(ev.Error(
                    f"too many messages: the server could not keep up and dropped some (at most {self._inbox_size} "
                    "may wait); send audio at real-time pace", "flood"))

    async def events(self, session_id: str) -> AsyncGenerator[ev.ConversationEvent | TurnReport, None]:
        hosted = self._sessions.get(session_id)
        if hosted is None:
            return
        try:
            while not isinstance(msg := await hosted.outbox.get(), _Ended):
                yield msg
        finally:  # the Ingress stopped reading (the socket closed, or the Ingress died): end the conversation
            self._stop(session_id)

    async def close(self, session_id: str) -> None:
        """End a conversation and wait until it has stopped (the client left)."""
        hosted = self._sessions.get(session_id)
        if hosted is not None and hosted.task is not None:
            self._stop(session_id)
            await asyncio.gather(hosted.task, return_exceptions=True)

    def _stop(self, session_id: str) -> None:
        hosted = self._sessions.get(session_id)
        if hosted is None:
            return
        try:
            hosted.inbox.put_nowait(None)
        except asyncio.QueueFull:  # a flooded inbox: stop without handling what is queued
            if hosted.task is not None:
                hosted.task.cancel()

    async def _run(self, session_id: str, hosted: _Hosted) -> None:
        """Start the conversation and feed it its inbox; any failure ends this conversation alone."""
        conversation = hosted.conversation
        try:
            await conversation.start()
            while (msg := await hosted.inbox.get()) is not None:
                if self._fault_injection and isinstance(msg, m.Text) and msg.content == FAULT_TEXT:
                    raise RuntimeError("fault injected by the client (VOI_FAULT_INJECTION=1)")
                if self._fault_injection and isinstance(msg, m.Text) and msg.content == FAULT_HANG_TEXT:
                    time.sleep(3600)  # blocks the loop, as a model call made on it by mistake would
                await conversation.handle(msg)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("conversation %s (agent %s) failed; ending it", session_id, conversation.agent_name)
            await hosted.outbox.put(ev.Error("the session failed on the server; please reconnect", "internal"))
        finally:
            try:
                await conversation.close()
                if hosted.tools is not None:
                    await hosted.tools.aclose()
            except Exception:
                log.exception("closing conversation %s failed", session_id)
            self._sessions.pop(session_id, None)
            hosted.outbox.put_nowait(_END)
