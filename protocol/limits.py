"""What one client may send and hold: message sizes, message and audio rates, and sockets per app.

Below the websocket's 16 MiB frame nothing else bounded a client: a 10 MB ``text`` was stored and echoed, a
client could flood audio at 50x real time (slowing every other session's transcription), and sockets that
never sent ``init`` held session slots. These are the server's answers, each with its own error code:

- ``text_too_long`` / ``image_too_large``: one message past its size (the message is dropped, the session
  goes on);
- ``too_many_messages``: control messages (and malformed frames) beyond a rate with a burst allowance;
- ``audio_too_fast``: audio beyond a small multiple of real time (after a burst allowance, so a client that
  sends a recording at once still can);
- ``too_many_sessions`` (close 1008): an app already holds its share of this replica's sockets;
- ``server_busy`` (close 1013): too many sockets are still waiting for their ``init``.

Rate refusals drop what did not fit and are reported once per episode (until the client has kept within its
rate long enough to have half its burst back), so the error replies cannot themselves become a flood.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.rate import TokenBucket
from protocol import events as ev
from protocol import messages as m
from protocol.framing import FrameError
from protocol.pcm import INPUT_BYTES_PER_SECOND


@dataclass(frozen=True)
class ClientLimits:
    max_text_chars: int = 8_000  # one typed message
    max_image_url_chars: int = 2_000_000  # one image_url (a data URL of about a 1.5 MB image)
    messages_per_s: float = 10.0  # control messages per second, on average ...
    message_burst: int = 40  # ... and at once (the JS client sends image_url*, text, create_response together)
    audio_speed: float = 2.0  # audio accepted at most this many times faster than real time ...
    audio_burst_s: float = 30.0  # ... after this many seconds of audio at once (a recording sent whole)
    early_audio_s: float = 5.0  # audio kept from before ``init``


def check_message(msg: m.ClientMessage, limits: ClientLimits) -> None:
    """Raise FrameError when one message is larger than the limits allow."""
    if isinstance(msg, m.Text) and len(msg.content) > limits.max_text_chars:
        raise FrameError(f"'text' of {len(msg.content)} characters exceeds the {limits.max_text_chars}-character limit",
                         "text_too_long")
    if isinstance(msg, m.ImageUrl) and len(msg.url) > limits.max_image_url_chars:
        raise FrameError(f"'image_url' of {len(msg.url)} characters exceeds the {limits.max_image_url_chars}-character "
                         "limit", "image_too_large")


class SocketRates:
    """One socket's message and audio budgets. ``admit`` says whether a message may pass and, the first time
    one does not, the error to send."""

    def __init__(self, limits: ClientLimits) -> None:
        self.limits = limits
        self._messages = TokenBucket(limits.messages_per_s, limits.message_burst)
        self._audio = TokenBucket(limits.audio_speed, limits.audio_burst_s)
        self._over: dict[str, bool] = {"messages": False, "audio": False}

    def _admit(self, kind: str, bucket: TokenBucket, amount: float,
               error: ev.Error) -> tuple[bool, ev.Error | None]:
        if bucket.take(amount):
            if self._over[kind] and bucket.level >= 0.5:  # back within its rate for a while: a new episode may come
                self._over[kind] = False
            return True, None
        first = not self._over[kind]
        self._over[kind] = True
        return False, error if first else None

    def admit_audio(self, pcm_bytes: int) -> tuple[bool, ev.Error | None]:
        return self._admit("audio", self._audio, pcm_bytes / INPUT_BYTES_PER_SECOND, ev.Error(
            f"audio arrives faster than {self.limits.audio_speed:g}x real time; frames beyond that are dropped "
            "(send audio at real-time pace)", "audio_too_fast"))

    def admit_message(self) -> tuple[bool, ev.Error | None]:
        """A control message or a malformed frame."""
        return self._admit("messages", self._messages, 1.0, ev.Error(
            f"more than {self.limits.messages_per_s:g} messages per second; messages beyond that are dropped",
            "too_many_messages"))


class AdmissionRefused(Exception):
    def __init__(self, message: str, code: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


@dataclass(frozen=True)
class AdmissionLimits:
    max_sessions_per_app: int = 64  # sockets of one app (token ``app`` claim) on one Ingress replica
    max_pending: int = 128  # sockets that have not sent ``init`` yet, on one Ingress replica ...
    max_pending_per_app: int = 64  # ... and of one app, so one app cannot take every handshake slot


class Admission:
    """Counts a replica's sockets per app and those still waiting for ``init``.

    A socket enters as pending (it holds no session capacity, only a handshake slot, for at most the init
    deadline); ``started`` moves it to the app's sessions; ``left`` forgets it.
    """

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self.pending = 0
        self._pending_by_app: dict[str, int] = {}
        self._by_app: dict[str, int] = {}  # pending and started sockets of each app

    def enter(self, app: str) -> None:
        """Take a handshake slot for a new socket of ``app``, or raise AdmissionRefused."""
        if self._by_app.get(app, 0) >= self.limits.max_sessions_per_app:
            raise AdmissionRefused(f"this app already has {self.limits.max_sessions_per_app} sessions open on this "
                                   "server; close one first", "too_many_sessions", 1008)
        if self.pending >= self.limits.max_pending or self._pending_by_app.get(app, 0) >= self.limits.max_pending_per_app:
            raise AdmissionRefused("too many connections are starting at once; please try again in a moment",
                                   "server_busy", 1013)
        self.pending += 1
        self._pending_by_app[app] = self._pending_by_app.get(app, 0) + 1
        self._by_app[app] = self._by_app.get(app, 0) + 1

    def started(self, app: str) -> None:
        """The socket sent its ``init`` (or gave up): its handshake slot is free again."""
        self.pending -= 1
        self._pending_by_app[app] -= 1
        if not self._pending_by_app[app]:
            del self._pending_by_app[app]

    def left(self, app: str) -> None:
        self._by_app[app] -= 1
        if not self._by_app[app]:
            del self._by_app[app]

    def sessions_of(self, app: str) -> int:
        return self._by_app.get(app, 0)
