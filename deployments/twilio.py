"""The phone on the Ingress: Twilio's voice webhook and its Media Streams websocket, over the same session
hosts and Conversation (call mode) as the Voi websocket.

``POST /twilio/voice`` answers a call with TwiML (protocol/twilio_voice.py) that connects it to
``/twilio/stream`` with a single-call token. ``TwilioConnection`` is the Voi ``Connection`` with the Twilio
codec (protocol/twilio.py): its ``_receive`` turns Twilio's frames into typed messages (caller audio, keys
pressed as text for the agent, the marks' confirmed playback position after a barge-in), its ``send``
writes the conversation's events as ``media``/``mark``/``clear``. Admission is the one path every
transport takes (protocol/admission.py); the token arrives in ``start``, inside the handshake slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import Request, WebSocket
from fastapi.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.log_text import printable
from deployments.connection import CLOSE_GOING_AWAY, CLOSE_POLICY_VIOLATION, Connection, _SessionClosed
from protocol import events as ev
from protocol import messages as m
from protocol import twilio as tw
from protocol.framing import FrameError
from protocol.limits import AdmissionRefused
from protocol.tokens import SECONDS_PER_DAY, TokenError, issue_token
from protocol.twilio_voice import (
    ENDED_CALL_STATUSES,
    HANDOVER,
    PHONE_APP,
    PhoneOptions,
    agent_for,
    call_key,
    connect_twiml,
    end_twiml,
    form_fields,
    handovers_of,
    public_url,
    signature_valid,
)
from speech.audio import INPUT_RATE, OUTPUT_RATE
from speech.g711 import G711Decoder, G711Encoder

log = logging.getLogger("ray.serve")


class TwilioConnection(Connection):
    """One ``/twilio/stream`` socket: ``start`` (with the call's token) is its handshake, then the two pumps. A
    drain closes it between turns: Twilio then asks the webhook (the ``<Connect>``'s action), whose answer
    connects the call to a replica that serves (protocol/twilio_voice.py)."""

    hands_over = True

    def __init__(self, *args: Any, phone: PhoneOptions, authorize: Callable[[str | None, str], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phone = phone
        self._authorize = authorize  # the admission path's check of the call's token (TokenError)
        self.codec = tw.TwilioEncoder("", lambda: G711Encoder("pcmu", OUTPUT_RATE))
        self.caller = tw.CallerAudio(G711Decoder("pcmu", INPUT_RATE))
        self._pending: deque[m.ClientMessage] = deque()
        self._digits = ""
        self._last_digit_at = 0.0
        self.start: tw.Start | None = None

    async def send(self, event: ev.ConversationEvent) -> None:
        if isinstance(event, ev.Error):
            self.metrics.record_error(event.code)
        async with self._send_lock:
            for frame in self.codec.encode(event):
                if self.ws.client_state != WebSocketState.CONNECTED:
                    return
                await self.ws.send_text(json.dumps(frame))
        played = self.codec.take_played()
        if played is not None:  # the Speaker cuts the reply where the marks say the caller stopped hearing it
            self._pending.append(played)

    def turn_under_way(self) -> bool:
        return self.codec.busy

    async def _next_event(self, timeout: float | None = None) -> tw.TwilioEvent:
        raw = await asyncio.wait_for(self.ws.receive(), timeout) if timeout else await self.ws.receive()
        if raw["type"] == "websocket.disconnect":
            raise _SessionClosed()
        return tw.parse_event(raw.get("text"))

    async def _handshake(self) -> tuple[m.Init, list[m.Audio]]:
        """``connected``, then ``start``: its format, its token (single-call, for this call) and its agent."""
        deadline = time.monotonic() + self.options.init_timeout_s
        while True:
            event = await self._next_event(max(deadline - time.monotonic(), 0.001))
            if isinstance(event, tw.Stop):
                raise _SessionClosed()
            if not isinstance(event, tw.Start):
                continue  # connected; media or marks before start mean nothing yet
            tw.check_format(event)
            handover = event.parameters.get(HANDOVER, "")
            try:
                self._authorize(event.parameters.get("token"), call_key(event.call_sid, handover))
            except TokenError as exc:
                log.warning("a media stream was refused: %s", exc)
                raise AdmissionRefused(str(exc), "bad_token", CLOSE_POLICY_VIOLATION) from None
            self.start = event
            self.codec.stream_sid = event.stream_sid
            if handover:
                log.info("call %s handed over (%s): it goes on here", printable(event.call_sid[:40]), printable(handover[:4]))
            # A call handed over from a drained replica goes on: the caller was greeted already.
            return m.Init(agent_name=event.parameters.get("agent", ""), mode="call", narrowband=True,
                          init_greeting=not handover), []

    async def _receive(self, timeout: float | None = None) -> m.ClientMessage:
        """The next typed message: caller audio (in ``tw.IN_BATCH_S`` pieces), keys pressed (as text for the agent, then a
        reply), the played position after a barge-in; ``stop`` ends the session."""
        while not self._pending:
            self._digits_due()
            if self._pending:
                break
            event = await self._next_event(timeout)
            if isinstance(event, tw.Media):
                audio = self.caller.add(event.payload)
                if audio is not None:
                    self._pending.append(audio)
            elif isinstance(event, tw.Mark):
                self.codec.heard(event.name)
            elif isinstance(event, tw.Dtmf):
                self._digits += event.digit
                self._last_digit_at = time.monotonic()
                self._digits_due(ended=event.digit == "#")
            elif isinstance(event, tw.Stop):
                raise _SessionClosed()
            else:
                raise FrameError(f"'{type(event).__name__.lower()}' came after the stream started", "out_of_order")
        return self._pending.popleft()

    def _digits_due(self, ended: bool = False) -> None:
        """Keys pressed become one text for the agent, and a reply: after '#' or a pause of ``dtmf_wait_s``
        (checked as frames arrive: Twilio sends the caller's audio every 20 ms, silence too)."""
        if not self._digits or not (ended or time.monotonic() - self._last_digit_at >= self.phone.dtmf_wait_s):
            return
        digits, self._digits = " ".join(self._digits), ""
        self._pending.extend([m.Text(self.phone.dtmf_template.format(digits=digits)), m.CreateResponse()])

    async def going_away(self) -> None:
        await self.close(CLOSE_GOING_AWAY)


async def twilio_webhook(request: Request, ingress: Any) -> Response:
    """``POST /twilio/voice``: the call's TwiML, or 403 when the signature is required and not right."""
    options: PhoneOptions = ingress.options.phone
    try:
        fields = form_fields(await request.body())
    except (ValueError, UnicodeDecodeError):
        return Response("the webhook body must be a small urlencoded form", status_code=400, media_type="text/plain")
    url = public_url(options, request.url.scheme, request.headers.get("host", request.url.netloc),
                     request.headers.get("x-forwarded-proto"), request.headers.get("x-forwarded-host"))
    auth_token = ingress.secrets.twilio_auth_token
    if auth_token and not signature_valid(auth_token, url.of(request.url.path, request.url.query), fields,
                                          request.headers.get("x-twilio-signature")):
        log.warning("a voice webhook was refused: its X-Twilio-Signature does not match")
        return Response("invalid X-Twilio-Signature", status_code=403, media_type="text/plain")
    call_sid = fields.get("CallSid") or f"local-{uuid.uuid4().hex}"
    handover = handovers_of(request.url.query)  # (the action of a stream our side closed: the call goes on)
    if fields.get("CallStatus") in ENDED_CALL_STATUSES:
        return Response(end_twiml(), media_type="application/xml")  # the caller hung up: nothing to connect
    if handover > options.max_handovers:
        log.warning("call %s: its stream was closed %d times; hanging up", printable(call_sid[:40]), handover)
        return Response(end_twiml(), media_type="application/xml")
    agent = agent_for(fields.get("To", ""), options, next(iter(ingress.agents.agents), ""))
    token = issue_token(ingress.secrets.token_secret_key, PHONE_APP, days=options.call_token_s / SECONDS_PER_DAY,
                        call=call_key(call_sid, handover))
    log.info("call %s to %s: agent %s", printable(call_sid[:40]), printable(fields.get("To", "")[:20]), printable(agent))
    action = url.of(request.url.path, f"{HANDOVER}={handover + 1}")
    return Response(connect_twiml(url.stream(), agent, token, action, handover), media_type="application/xml")


async def serve_twilio(ws: WebSocket, ingress: Any) -> None:
    """``/twilio/stream``: a call's media stream, admitted like every socket (its token comes in ``start``)."""
    await ws.accept()

    def authorize(token: str | None, call: str) -> None:
        ingress.gate.authorize(token, single_call=True, call=call)

    connection = TwilioConnection(ws, ingress.metrics, ingress.options, ingress.hosts, ingress._find_agent,
                                  phone=ingress.options.phone, authorize=authorize)
    if ingress.stopping:
        await connection.going_away()
        return
    ingress.connections.add(connection)
    try:
        ingress.hosts.start()
        await ingress.gate.admit(PHONE_APP, connection.handshake,
                                 lambda started, count: connection.converse(*started, PHONE_APP, count))
    except AdmissionRefused as exc:
        await connection.refuse(str(exc), exc.code, exc.close_code)
    except WebSocketDisconnect:
        pass
    finally:
        ingress.connections.discard(connection)
        if connection.start is not None:
            log.info("call %s ended", printable(connection.start.call_sid[:40]))

