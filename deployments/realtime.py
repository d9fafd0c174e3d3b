"""``/v1/realtime``: the OpenAI Realtime protocol on the Ingress, over the same session hosts and Conversation.

A second transport, not a second server: ``RealtimeConnection`` is the Voi ``Connection``
(deployments/connection.py) with another codec. Its ``_receive`` reads JSON text frames and hands on the typed Voi messages that
``protocol/realtime.py`` makes of them; its ``send`` turns each Voi server message into OpenAI events. The
placement on a host, the pumps, the failure handling, the socket's limits and the admission caps are the Voi
transport's own.
The conversation opens at the client's first input (audio, an item or ``response.create``), so the
``session.update`` events a client sends first pick the mode, the voice and (where the agent allows it)
the instructions. The model (``?model=``) names the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import replace
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from agents.agent import Agent
from agents.config import AgentRefused
from agents.prompts import Persona, wants_json
from common.safe_json import JsonRefused, parse_json
from deployments.connection import CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, Connection, _SessionClosed
from deployments.openai_http import bearer
from protocol import events as ev
from protocol import messages as m
from protocol.limits import AdmissionRefused
from protocol.realtime import RealtimeAdapter
from protocol.realtime_events import AUDIO_RATE, AudioCodec, Events, SessionConfig, expires_at
from protocol.tokens import SECONDS_PER_DAY, TokenError, issue_token
from speech.audio import INPUT_RATE, OUTPUT_RATE
from speech.g711 import stream_decoder, stream_encoder
from speech.models_config import ModelsConfig

log = logging.getLogger("ray.serve")

SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."  # browsers cannot set headers: the key travels as a subprotocol
CLIENT_SECRET_TTL_S = 600  # OpenAI's default for client secrets
MAX_CLIENT_SECRET_TTL_S = 7200
FIRST_INPUT_S = 120.0  # a client may sit on its session settings this long before the first input (a handshake slot)


def bearer_token(ws: WebSocket) -> str | None:
    """The key or token a client presents: ``Authorization: Bearer`` or the browser's subprotocol form."""
    presented = bearer(ws.headers.get("authorization"))
    if presented is not None:
        return presented
    for protocol in ws.scope.get("subprotocols") or []:
        if protocol.startswith(KEY_SUBPROTOCOL):
            return protocol.removeprefix(KEY_SUBPROTOCOL)
    return None


def agent_voices(agent: Agent, models: ModelsConfig) -> tuple[str, ...]:
    """The voices a client may pick (``session.voice``): those of the agent's character TTS model."""
    model = models.tts.get(agent.character.model)
    if model is None:
        return ()
    names = model.voices if isinstance(model.voices, dict) else {}
    tones = getattr(model, "voice_tone_map", {}) or {}
    return tuple(dict.fromkeys([*names, *tones.values(), *([model.default_voice] if model.default_voice else [])]))


def session_agent(agent: Agent, config: SessionConfig, instructions_allowed: bool) -> Agent:
    """The agent with the session's voice, and its instructions where the server's policy allows overrides."""
    if config.voice:
        agent = replace(agent, voices=agent.voices.model_copy(update={"character": agent.character.model_copy(
            update={"voice": config.voice})}))
    if config.instructions and instructions_allowed:
        agent = replace(agent, persona=Persona(config.instructions, agent.persona.examples, wants_json(config.instructions)))
    return agent


def realtime_audio() -> AudioCodec:
    """The session's audio in its format (24 kHz PCM16 or G.711) to and from the conversation's rates."""
    return AudioCodec(decoder=lambda f: stream_decoder(f, pcm_rate=AUDIO_RATE, to_rate=INPUT_RATE),
                      encoder=lambda f: stream_encoder(f, from_rate=OUTPUT_RATE, pcm_rate=AUDIO_RATE))


def client_secret(raw: bytes, token_secret: str, default_model: str) -> dict[str, Any]:
    """``POST /v1/realtime/client_secrets``: one of our tokens, short-lived, in OpenAI's response shape
    (ValueError for a body it cannot take)."""
    try:
        body = parse_json(raw) if raw.strip() else {}
    except JsonRefused as exc:
        raise ValueError(f"the body is not acceptable JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    after = body.get("expires_after") if isinstance(body.get("expires_after"), dict) else {}
    seconds = after.get("seconds", CLIENT_SECRET_TTL_S)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= MAX_CLIENT_SECRET_TTL_S:
        raise ValueError(f"'expires_after.seconds' must be an integer from 10 to {MAX_CLIENT_SECRET_TTL_S}")
    session = body.get("session") if isinstance(body.get("session"), dict) else {}
    model = session.get("model") if isinstance(session.get("model"), str) else default_model
    token = issue_token(token_secret, "realtime-client", days=seconds / SECONDS_PER_DAY)
    config = SessionConfig(model=model, expires_at=expires_at(seconds))
    return {"value": token, "expires_at": config.expires_at,
            "session": {**Events("ga").session(config, ""), "client_secret": None}}


class RealtimeConnection(Connection):
    """One ``/v1/realtime`` socket; the Voi connection's placement and pumps with the OpenAI codec."""

    def __init__(self, *args: Any, adapter: RealtimeAdapter, agent_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.adapter = adapter
        self.agent_name = agent_name
        self._pending: deque[m.ClientMessage] = deque()

    async def send_events(self, events: list[dict[str, Any]]) -> None:
        async with self._send_lock:
            for event in events:
                if self.ws.client_state != WebSocketState.CONNECTED:
                    return
                await self.ws.send_text(json.dumps(event))

    async def send(self, event: ev.ConversationEvent) -> None:
        if isinstance(event, ev.Error):
            self.metrics.record_error(event.code)
        await self.send_events(self.adapter.outbound(event))

    async def _receive(self, timeout: float | None = None) -> m.ClientMessage:
        """The next Voi message the client's events mean; events answered at once are sent here."""
        while not self._pending:
            raw = await asyncio.wait_for(self.ws.receive(), timeout) if timeout else await self.ws.receive()
            if raw["type"] == "websocket.disconnect":
                raise _SessionClosed()
            translation = self.adapter.inbound(raw["text"] if raw.get("text") is not None else raw.get("bytes") or b"")
            await self.send_events(translation.events)
            self._pending.extend(translation.messages)
        return self._pending.popleft()

    async def _handshake(self) -> tuple[m.Init, list[m.Audio]]:
        """Settings first: the conversation opens when the first input arrives (it stays queued here)."""
        msg = await self._receive(FIRST_INPUT_S)
        self._pending.appendleft(msg)
        return self.adapter.init(self.agent_name), []


async def serve_realtime(ws: WebSocket, ingress: Any) -> None:
    """The ``/v1/realtime`` route: auth, the agent (``?model=``), ``session.created``, then the conversation."""
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    dialect = "beta" if "realtime=v1" in ws.headers.get("openai-beta", "") or any(
        p.startswith("openai-beta.realtime-v1") for p in offered) else "ga"
    events = Events(dialect)

    async def refuse(message: str, code: str, close_code: int, kind: str = "invalid_request_error") -> None:
        ingress.metrics.record_error(code)  # counted like a Voi socket's refusal (ray_voi_errors_total)
        try:
            await ws.send_text(json.dumps(events.error(message, code, kind=kind)))
            await ws.close(close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass

    if ingress.stopping:
        await refuse("the server is shutting down; please reconnect in a moment", "server_shutdown", CLOSE_GOING_AWAY,
                     "server_error")
        return
    try:
        app = ingress.gate.authorize(bearer_token(ws))
    except TokenError as exc:
        await refuse(str(exc), "invalid_api_key", CLOSE_POLICY_VIOLATION, "authentication_error")
        return
    name = ws.query_params.get("model", "")
    try:
        agent, greeting_dir = ingress._find_agent(m.Init(agent_name=name))
    except AgentRefused as exc:
        await refuse(f"unknown model {name[:60]!r}: '?model=' names an agent of this server ({exc})", "model_not_found",
                     CLOSE_POLICY_VIOLATION)
        return
    allowed = ingress.agents.client_agent_config.allow_override
    voices = agent_voices(agent, ingress.models)
    adapter = RealtimeAdapter(SessionConfig(model=name), dialect, realtime_audio(), voices=voices,
                              voice=agent.character.voice or (voices[0] if voices else ""), instructions_allowed=allowed)

    def find_agent(init: m.Init) -> tuple[Agent, str | None]:
        return session_agent(agent, adapter.config, allowed), greeting_dir

    connection = RealtimeConnection(ws, ingress.metrics, ingress.options, ingress.hosts, find_agent, adapter=adapter,
                                    agent_name=name)

    async def handshake() -> tuple[m.Init, list[m.Audio]] | None:
        await connection.send_events([adapter.session_event()])
        return await connection.handshake()

    ingress.connections.add(connection)  # told and closed (1001) when the server stops
    try:
        ingress.hosts.start()
        await ingress.gate.admit(app, handshake, lambda started, count: connection.converse(*started, app, count))
    except AdmissionRefused as exc:
        await refuse(str(exc), exc.code, exc.close_code, "server_error")
    except WebSocketDisconnect:
        pass
    finally:
        ingress.connections.discard(connection)
