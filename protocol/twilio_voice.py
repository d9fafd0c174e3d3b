"""Twilio's voice webhook: a call comes in, we answer with TwiML that connects it to our media stream.

Twilio POSTs the call (form-encoded: ``CallSid``, ``From``, ``To``, ...) to ``/twilio/voice``; the answer is
``<Connect><Stream url="wss://HOST/twilio/stream">`` with two ``<Parameter>``s: the agent (by the number that
was called, else the default) and a token minted for this one call (Twilio sends no headers on the stream,
so the token rides in the ``start`` message). With ``TWILIO_AUTH_TOKEN`` set, the request must carry a valid
``X-Twilio-Signature``: an HMAC of the URL Twilio called (the public one, not the one a proxy forwarded to)
and the form fields, checked with the helper library's ``RequestValidator``. The ``<Connect>``'s ``action`` is
this webhook again: when our side closes the stream (a replica that drains finishes the caller's turn and
closes it: deployments/drain.py), Twilio asks it what next, and the answer connects the same call to a replica
that serves (a *handover*, counted in the action's query; the new stream is told by a third ``<Parameter>``).
See docs/telephony.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

VOICE_PATH = "/twilio/voice"
STREAM_PATH = "/twilio/stream"
PHONE_APP = "phone"  # the app of every call's token (per-app caps count phone calls together)
MAX_FORM_BYTES = 16_384  # Twilio's call webhook is about 1 KB of form fields


@dataclass(frozen=True)
class PhoneOptions:
    public_host: str = ""  # host[:port] Twilio reaches this server at (behind a proxy or tunnel); empty: the request's Host
    trust_forwarded: bool = False  # take the public scheme and host from X-Forwarded-Proto/Host (only behind your own proxy)
    numbers: dict[str, str] = field(default_factory=dict)  # the called number (E.164, "+15551234567") -> the agent that answers
    agent: str = ""  # the agent of any other number (empty: the first agent of agents.yaml)
    dtmf_template: str = "The caller pressed {digits} on the phone keypad."  # what the agent is told of keys pressed
    dtmf_wait_s: float = 1.5  # keys pressed within this of each other are one entry ("#" ends one at once)
    call_token_s: float = 60.0  # the media stream must start this soon after the webhook answered
    max_handovers: int = 5  # a call is handed to another stream at most this many times, then hung up (a loop guard)


@dataclass(frozen=True)
class PublicUrl:
    scheme: str  # "https" | "http"
    host: str

    def of(self, path: str, query: str = "") -> str:
        return f"{self.scheme}://{self.host}{path}" + (f"?{query}" if query else "")

    def stream(self) -> str:
        return f"{'wss' if self.scheme == 'https' else 'ws'}://{self.host}{STREAM_PATH}"


def public_url(options: PhoneOptions, scheme: str, host: str, forwarded_proto: str | None,
               forwarded_host: str | None) -> PublicUrl:
    """Where Twilio reached us: the configured public host (always https), the forwarded headers where the
    operator trusts them, else the request itself (a local test: ``ws://`` on plain HTTP)."""
    if options.public_host:
        return PublicUrl("https", options.public_host)
    if options.trust_forwarded and forwarded_host:
        proto = (forwarded_proto or "https").split(",")[0].strip()
        return PublicUrl("https" if proto == "https" else "http", forwarded_host.split(",")[0].strip())
    return PublicUrl("https" if scheme in ("https", "wss") else "http", host)


def form_fields(body: bytes) -> dict[str, str]:
    """The webhook's form fields (ValueError for a body that is not a small urlencoded form)."""
    if len(body) > MAX_FORM_BYTES:
        raise ValueError(f"the webhook body is larger than {MAX_FORM_BYTES} bytes")
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100))


def signature_valid(auth_token: str, url: str, fields: dict[str, str], signature: str | None) -> bool:
    return bool(signature) and RequestValidator(auth_token).validate(url, fields, signature or "")


def agent_for(called: str, options: PhoneOptions, first_agent: str) -> str:
    return options.numbers.get(called) or options.agent or first_agent


HANDOVER = "handover"  # the action's query field and the stream's parameter: the handovers of this call so far
ENDED_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def handovers_of(query: str) -> int:
    """How many times the call was handed over, from the webhook's query (0: a new call; a bad value counts
    as many, so that it is not handed over again)."""
    value = dict(parse_qsl(query)).get(HANDOVER)
    if value is None:
        return 0
    return int(value) if value.isdigit() and len(value) < 4 else 1_000


def call_key(call_sid: str, handover: int | str) -> str:
    """What a call's single-use token is minted for: the call and its handover (each stream of it has its own)."""
    return f"{call_sid}/{handover or 0}"


def connect_twiml(stream_url: str, agent: str, token: str, action_url: str, handover: int = 0) -> str:
    """TwiML that connects the call to our media stream (bidirectional), naming the agent and the call's token;
    when our side closes the stream, Twilio posts ``action_url`` (the next handover) for what comes next."""
    response = VoiceResponse()
    connect = Connect(action=action_url)
    stream = connect.stream(url=stream_url)
    stream.parameter(name="agent", value=agent)
    stream.parameter(name="token", value=token)
    if handover:
        stream.parameter(name=HANDOVER, value=str(handover))
    response.append(connect)
    return str(response.to_xml())


def end_twiml() -> str:
    """TwiML that ends the call (past ``max_handovers``; also the answer to an action request of a call that is over,
    which Twilio does not play)."""
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())
