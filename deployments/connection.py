"""One Voi websocket on the Ingress: the ``init`` handshake, then two pumps (client -> session host,
session host -> client).

A socket that has not sent ``init`` holds only a handshake slot (protocol/limits.py ``Admission``), for at
most ``init_timeout_s``; session capacity is taken once ``init`` has arrived. After ``init`` every frame
passes the socket's limits (sizes, message and audio rates): what does not fit is dropped with an ``error``
and the session goes on. No exception text from the server reaches the client or the log as a traceback
unless it is a bug of ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from agents.agent import Agent
from agents.config import AgentRefused
from agents.services import SessionPolicy
from agents.timeline import TurnReport
from agents.turns import TurnConfig
from common.log_text import printable
from deployments.drain import SHUTDOWN_NOTICE
from deployments.host_pool import HostPool, HostsBusy
from deployments.metrics import VoiMetrics
from deployments.placement import HostOptions
from deployments.playground import turn_metrics_message
from protocol import events as ev
from protocol import messages as m
from protocol.framing import Frame, FrameError, decode_frame, encode_frame
from protocol.limits import AdmissionLimits, AdmissionRefused, ClientLimits, SocketRates, check_message
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.twilio_voice import PhoneOptions
from protocol.voi_codec import VoiEncoder

log = logging.getLogger("ray.serve")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class IngressOptions:
    agents_path: str
    models_path: str
    hosts: HostOptions = HostOptions()
    max_sessions: int = 256  # open conversations on one Ingress replica; more callers get server_busy
    init_timeout_s: float = 10.0  # a socket that sends no init in this time is closed (1008)
    place_timeout_s: float = 30.0  # a caller past init waits this long for a session host (one may be starting)
    policy: SessionPolicy = SessionPolicy()
    listening: TurnConfig = TurnConfig()
    limits: ClientLimits = ClientLimits()
    admission: AdmissionLimits = AdmissionLimits()
    max_token_days: float = 30.0  # tokens that live longer than this are refused
    phone: PhoneOptions = PhoneOptions()  # the Twilio webhook and media stream (deployments/twilio.py)
    openapi: bool = False  # serve /openapi.json
    drain_grace_s: float = 60.0  # a drained replica's calls go on this long after they are told, then close 1001


class _SessionClosed(Exception):
    pass


FindAgent = Callable[[m.Init], "tuple[Agent, str | None]"]  # the agent and its greeting files' directory
Counter = Callable[[int], None]  # +1 when a conversation opens on this replica, -1 when it ends


class Connection:
    """One websocket: the init handshake, then two pumps (client -> host, host -> client)."""

    hands_over = False  # a drained call goes on until its client reconnects or the grace ends (deployments/drain.py)

    def __init__(self, ws: WebSocket, metrics: VoiMetrics, options: IngressOptions, hosts: HostPool,
                 find_agent: FindAgent) -> None:
        self.ws = ws
        self.metrics = metrics
        self.options = options
        self.hosts = hosts
        self.find_agent = find_agent
        self.rates = SocketRates(options.limits)
        self._send_lock = asyncio.Lock()
        self.send_turn_metrics = False  # (ext) set by init
        self._responding = False  # a response has started and not ended (response_created .. done/cancelled)
        self.encoder = VoiEncoder()  # what this client is sent of the conversation's events (set by init)

    async def send(self, event: ev.ConversationEvent) -> None:
        """One conversation event, as this transport writes it (or not at all)."""
        if isinstance(event, ev.Error):
            self.metrics.record_error(event.code)
        frame = self.encoder.encode(event)
        if frame is not None:
            await self.send_frame(frame)

    async def send_frame(self, frame: Frame) -> None:
        async with self._send_lock:
            if self.ws.client_state == WebSocketState.CONNECTED:
                await self.ws.send_bytes(encode_frame(frame.header, frame.payload))

    async def refuse(self, text: str, code: str, close_code: int) -> None:
        try:
            await self.send(ev.Error(text, code))
            await self.ws.close(close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def going_away(self) -> None:
        """A socket that arrives while the server stops: one ``error`` (``server_shutdown``), then close 1001. (The
        live ones are drained: deployments/drain.py.) The client learns why and that it may reconnect to the next
        server, instead of a dropped connection (1006) when Ray goes down."""
        await self.tell_draining(SHUTDOWN_NOTICE)
        await self.close_going_away()

    def turn_under_way(self) -> bool:
        return self._responding

    async def tell_draining(self, text: str) -> None:
        """The ``server_shutdown`` error; a drained replica's call goes on after it (deployments/drain.py)."""
        try:
            await self.send(ev.Error(text, "server_shutdown"))
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def close_going_away(self) -> None:
        try:
            async with self._send_lock:  # no frame of the host -> client pump after the close frame
                await self.close(CLOSE_GOING_AWAY)
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def _receive(self, timeout: float | None = None) -> m.ClientMessage:
        """The next typed message; FrameError for a malformed one, _SessionClosed when the client left."""
        raw = await asyncio.wait_for(self.ws.receive(), timeout) if timeout else await self.ws.receive()
        if raw["type"] == "websocket.disconnect":
            raise _SessionClosed()
        data = raw.get("bytes")
        if data is None:
            raise FrameError("text frames are not part of the protocol: send binary frames", "text_frame")
        return m.parse_client_message(decode_frame(data))

    async def handshake(self) -> tuple[m.Init, list[m.Audio]] | None:
        """Wait for ``init`` (keeping early call-mode audio); None when the socket was refused or left."""
        try:
            return await self._handshake()
        except TimeoutError:
            await self.refuse("no 'init' message arrived in time", "init_timeout", CLOSE_POLICY_VIOLATION)
        except FrameError as exc:
            await self.refuse(str(exc), exc.code, CLOSE_PROTOCOL_ERROR)
        except AdmissionRefused as exc:  # credentials that arrive in the handshake (the phone's token) were refused
            await self.refuse(str(exc), exc.code, exc.close_code)
        except (_SessionClosed, WebSocketDisconnect):
            pass
        except Exception:  # a bug of ours: the client is told, the log has it
            log.exception("a websocket handshake failed")
            await self.refuse("the server could not start the session; please reconnect", "internal",
                              CLOSE_INTERNAL_ERROR)
        return None

    async def _handshake(self) -> tuple[m.Init, list[m.Audio]]:
        early_audio: list[m.Audio] = []
        kept_bytes = 0
        deadline = time.monotonic() + self.options.init_timeout_s
        while True:
            msg = await self._receive(max(deadline - time.monotonic(), 0.001))
            if isinstance(msg, m.Init):
                return msg, early_audio
            if isinstance(msg, m.Audio):  # call-mode clients stream audio before init: keep the first seconds
                if kept_bytes + len(msg.data) <= self.options.limits.early_audio_s * INPUT_BYTES_PER_SECOND:
                    early_audio.append(msg)
                    kept_bytes += len(msg.data)
                continue
            raise FrameError(f"the first message must be 'init', got '{type(msg).__name__}'", "init_expected")

    async def converse(self, init: m.Init, early_audio: list[m.Audio], app_name: str, count: Counter) -> None:
        """Resolve the agent, place the conversation on a host and pump until either side ends it."""
        self.send_turn_metrics = init.send_turn_metrics
        self.encoder = VoiEncoder(tool_events=init.send_tool_events, client_tools=bool(init.tools))
        try:
            agent, greeting_dir = self.find_agent(init)
        except AgentRefused as exc:
            await self.refuse(str(exc), exc.code, CLOSE_POLICY_VIOLATION)
            return
        started = time.monotonic()
        self.metrics.session_opened()
        count(1)
        try:
            await self._converse(init, early_audio, agent, greeting_dir, app_name, started)
        finally:
            count(-1)
            self.metrics.session_closed()

    async def _converse(self, init: m.Init, early_audio: list[m.Audio], agent: Agent, greeting_dir: str | None,
                        app_name: str, started: float) -> None:
        try:
            lease = await self.hosts.place(self.options.place_timeout_s)
        except HostsBusy:
            log.warning("session refused: every session slot of this replica is taken")
            await self.refuse("the server is full; please try again in a moment", "server_busy", CLOSE_TRY_AGAIN_LATER)
            return
        session_id = uuid.uuid4().hex
        log.info("session %s app=%s agent=%s mode=%s host=%s placed_ms=%.0f", session_id[:12], printable(app_name),
                 printable(init.agent_name), init.mode, lease.host_id, (time.monotonic() - started) * 1000)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await lease.host.open.remote(session_id, init.agent_name, agent, init, greeting_dir, self.options.policy,
                                         self.options.listening, app_name)
            events = lease.host.events.options(num_returns="streaming").remote(session_id)
            tasks = [asyncio.create_task(self._pump_events(events)),
                     asyncio.create_task(self._pump_client(lease.host, session_id, early_audio))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            sender, receiver = tasks
            if sender in done and sender.exception() is None:
                # The host ended the conversation without the client leaving: it failed there (the error is sent).
                await self.close(CLOSE_INTERNAL_ERROR)
            for task in done:
                task.result()
        except ray.exceptions.RayActorError:
            self.hosts.lost(lease)
            log.warning("session %s: its host %s died", session_id[:12], lease.host_id)
            await self.refuse("the session ended unexpectedly on the server; please reconnect", "session_lost",
                              CLOSE_INTERNAL_ERROR)
        except Exception:  # a bug must end this session cleanly, with a message, and nothing else
            log.exception("session %s of agent %s failed", session_id[:12], printable(init.agent_name))
            await self.refuse("the session failed on the server; please reconnect", "internal", CLOSE_INTERNAL_ERROR)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:  # the conversation stops on its host (also when it already did: then this returns at once)
                await asyncio.wait_for(lease.host.close.remote(session_id), 2.0)
            except Exception:
                pass
            self.hosts.release(lease)
            await self.close(CLOSE_NORMAL)

    async def close(self, code: int) -> None:
        if self.ws.client_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code)
            except RuntimeError:
                pass

    async def _admit(self, msg: m.ClientMessage) -> bool:
        """Whether ``msg`` is within this socket's limits; the first refusal of an episode is told."""
        if isinstance(msg, m.Audio):
            ok, error = self.rates.admit_audio(len(msg.data))
        else:
            ok, error = self.rates.admit_message()
            if ok:
                try:
                    check_message(msg, self.options.limits)
                except FrameError as exc:
                    ok, error = False, ev.Error(str(exc), exc.code)
        if error is not None:
            await self.send(error)
        return ok

    async def _pump_client(self, host: Any, session_id: str, early_audio: list[m.Audio]) -> None:
        """Client -> host, in order; returns when the client leaves."""
        for audio in early_audio:
            await host.push.remote(session_id, audio)
        while True:
            try:
                msg = await self._receive()
            except FrameError as exc:  # a malformed frame counts as a message: errors cannot be a flood
                ok, error = self.rates.admit_message()
                if ok or error is not None:
                    await self.send(error if error is not None else ev.Error(str(exc), exc.code))
                continue
            except (_SessionClosed, WebSocketDisconnect):
                return
            if await self._admit(msg):
                await host.push.remote(session_id, msg)

    async def _pump_events(self, events: Any) -> None:
        """Host -> client; returns when the host ends the conversation, raises RayActorError when it died."""
        try:
            async for ref in events:
                item = await ref
                if isinstance(item, TurnReport):  # for the operator's metrics, never for the client
                    self.metrics.record_turn(item)
                    if self.send_turn_metrics:  # (ext) the client asked for each turn's timeline
                        await self.send_frame(turn_metrics_message(item))
                else:
                    if isinstance(item, ev.ResponseCreated | ev.ResponseDone | ev.ResponseCancelled):
                        self._responding = isinstance(item, ev.ResponseCreated)  # a stopping server lets it finish
                    await self.send(item)
        except (WebSocketDisconnect, RuntimeError):
            await asyncio.Event().wait()  # the client is gone: the other pump sees it and ends the session
