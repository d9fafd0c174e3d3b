"""One admission path for every transport: who may come in (credentials) and whether there is room (caps).

The Voi websocket, ``/v1/realtime``, the phone's media stream and the HTTP routes all ask here, so a rule is
written once:

- ``authorize``: the server's API_KEY, or one of our tokens (lifetime capped by ``max_token_days``); which of
  the two a route takes is its choice. A single-call token (the phone's, ``call`` claim) is admitted once:
  the same token used again, during or after its call, is refused.
- ``Gate.admit``: the room a socket may take: this replica's session cap (``server_busy``), the handshake
  budget and per-app caps (``protocol/limits.py`` ``Admission``), the session count while it converses.

Refusals are exceptions that carry a code and a close code; each transport writes them in its own shape
(a Voi ``error`` frame, an OpenAI ``error`` event, a closed media stream, an HTTP status).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from protocol.limits import Admission, AdmissionLimits, AdmissionRefused
from protocol.tokens import DEFAULT_MAX_DAYS, SECONDS_PER_DAY, TokenClaims, TokenError, verify_token

API_KEY_APP = "api_key"  # the app name of a caller who presented the server's API_KEY
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013

T = TypeVar("T")


class CredentialsRefused(TokenError):
    """Credentials that must be refused; ``missing``: none were presented (HTTP 401), else they are wrong."""

    def __init__(self, message: str, *, missing: bool = False, api_key: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
        self.api_key = api_key  # the route takes only the API_KEY, and this was not it (HTTP 403)


def authorize(presented: str | None, api_key: str, token_secret: str,
              max_lifetime_s: float = DEFAULT_MAX_DAYS * SECONDS_PER_DAY, *, api_key_ok: bool = True,
              token_ok: bool = True) -> str:
    """The app a caller speaks for: ``api_key`` for the server's API_KEY (where ``api_key_ok``), a token's app
    (where ``token_ok``). TokenError (CredentialsRefused for what no token check could say) otherwise."""
    return claims_of(presented, api_key, token_secret, max_lifetime_s, api_key_ok=api_key_ok, token_ok=token_ok).app


def claims_of(presented: str | None, api_key: str, token_secret: str,
              max_lifetime_s: float = DEFAULT_MAX_DAYS * SECONDS_PER_DAY, *, api_key_ok: bool = True,
              token_ok: bool = True) -> TokenClaims:
    if not presented:
        wanted = " or ".join(w for w, ok in (("the API key", api_key_ok), ("a token", token_ok)) if ok)
        raise CredentialsRefused(f"missing credentials: present {wanted}", missing=True)
    if api_key_ok and api_key and hmac.compare_digest(presented.encode(), api_key.encode()):
        return TokenClaims(app=API_KEY_APP, expires_at=float("inf"))
    if not token_ok:
        raise CredentialsRefused("invalid API key", api_key=True)
    return verify_token(presented, token_secret, max_lifetime_s=max_lifetime_s)


def server_full() -> AdmissionRefused:
    return AdmissionRefused("the server is full; please try again in a moment", "server_busy", CLOSE_TRY_AGAIN_LATER)


@dataclass(frozen=True)
class GateConfig:
    api_key: str = ""
    token_secret: str = ""
    max_token_s: float = DEFAULT_MAX_DAYS * SECONDS_PER_DAY
    max_sessions: int = 256
    limits: AdmissionLimits = AdmissionLimits()


class Gate:
    """One replica's door: credentials, session cap, handshake budget and per-app caps, for every transport."""

    def __init__(self, config: GateConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.admission = Admission(config.limits)
        self.open_sessions = 0  # conversations (sockets past their handshake) on this replica
        self._clock = clock
        self._calls: dict[str, float] = {}  # single-call tokens admitted: call id -> the token's expiry

    @property
    def pending(self) -> int:
        return self.admission.pending

    def authorize(self, presented: str | None, *, api_key_ok: bool = True, token_ok: bool = True,
                  single_call: bool = False, call: str | None = None) -> str:
        """The caller's app (TokenError when refused); a single-call token is admitted once, and where
        ``single_call`` no other credential is (minted for ``call``, when it is given)."""
        claims = claims_of(presented, self.config.api_key, self.config.token_secret, self.config.max_token_s,
                           api_key_ok=api_key_ok and not single_call, token_ok=token_ok)
        if single_call and claims.call is None:
            raise TokenError("this route takes only a single-call token")
        if call is not None and claims.call != call:
            raise TokenError("this token was minted for another call")
        if claims.call is not None:
            self._forget_expired_calls()
            if claims.call in self._calls:
                raise TokenError("this call's token was already used")
            self._calls[claims.call] = claims.expires_at
        return claims.app

    def _forget_expired_calls(self) -> None:
        now = self._clock()
        for call in [c for c, expires in self._calls.items() if expires <= now]:
            del self._calls[call]  # an expired token is refused by its expiry already

    def room(self) -> None:
        """AdmissionRefused (``server_busy``) when this replica holds all the conversations it may."""
        if self.open_sessions >= self.config.max_sessions:
            raise server_full()

    def count(self, change: int) -> None:
        self.open_sessions += change

    async def admit(self, app: str, handshake: Callable[[], Awaitable[T | None]],
                    converse: Callable[[T, Callable[[int], None]], Awaitable[None]]) -> None:
        """A socket of ``app``: room, a handshake slot while ``handshake`` runs (None: it was refused or left),
        room again (sockets that were pending may have filled the replica), then ``converse``, which counts
        its conversation with the callable it is given. AdmissionRefused when there is no room."""
        self.room()
        self.admission.enter(app)
        try:
            try:
                started = await handshake()
            finally:
                self.admission.started(app)
            if started is None:
                return
            self.room()
            await converse(started, self.count)
        finally:
            self.admission.left(app)
