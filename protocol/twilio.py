"""Twilio Media Streams: the phone's wire, a codec over the conversation's events (``protocol/events.py``).

Twilio opens a websocket to ``/twilio/stream`` and sends JSON text frames: ``connected``, ``start`` (the
stream and call ids, the ``<Parameter>``s of the TwiML, the media format: ``audio/x-mulaw`` at 8000 Hz),
then ``media`` (base64 mu-law, 20 ms each), ``dtmf`` (a key pressed), ``mark`` (a mark we sent was played)
and ``stop``. We send ``media`` (our audio, base64 mu-law), ``mark`` (Twilio echoes it when the audio before
it has been played to the caller) and ``clear`` (drop the audio not yet played: a barge-in). After a
``clear`` Twilio sends back the marks that were still waiting; those name audio the caller never heard.

The audio conversions (mu-law <-> PCM, 8 kHz <-> 16/24 kHz) are the speech room's (``speech/g711.py``,
``PcmResampler``); the Ingress hands them in, so this module stays a wire format.

The parser turns frames into typed events (``FrameError`` with a code for what it refuses); the encoder
writes the conversation's events (reply audio, the user's interruption) and keeps the marks, so it can say
exactly how much of a speech the caller heard (``take_played``). It never reads another transport's frames.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.safe_json import parse_json
from protocol import events as ev
from protocol import messages as m
from protocol.framing import FrameError

MEDIA_ENCODING = "audio/x-mulaw"
MEDIA_RATE = 8_000
CALLER_PCM_RATE = 16_000  # what the conversation hears (PCM16)
REPLY_PCM_RATE = 24_000  # what the conversation speaks (PCM16)
MAX_FRAME_CHARS = 65_536  # a 20 ms media frame is about 300 characters; a frame past this is refused
MAX_PAYLOAD_BYTES = 16_000  # 2 s of mu-law in one media frame (Twilio sends 20 ms)
MAX_PARAMETERS = 32
OUT_PIECE_S = 0.1  # our media frames carry this much audio, each followed by a mark
# Caller audio is handed on in pieces of this length (a Twilio frame is 20 ms). A piece is one actor call to the
# session host, so not every frame; but the Listener's VAD and barge-in see speech only when its piece arrives:
# 0.1 s pieces started a barge-in 40 ms later on average than 0.06 s ones (scripts/bench_phone.py, docs/benchmarks.md).
IN_BATCH_S = 0.06


@dataclass(frozen=True)
class Connected:
    protocol: str


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    parameters: dict[str, str]
    encoding: str
    sample_rate: int


@dataclass(frozen=True)
class Media:
    payload: bytes = field(repr=False)  # mu-law, 8 kHz


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    pass


TwilioEvent = Connected | Start | Media | Dtmf | Mark | Stop
DTMF_DIGITS = frozenset("0123456789*#ABCD")


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FrameError(f"'{name}' must be an object", "bad_field")
    return value


def _string(value: Any, name: str, max_chars: int = 200) -> str:
    if not isinstance(value, str) or len(value) > max_chars:
        raise FrameError(f"'{name}' must be a string of at most {max_chars} characters", "bad_field")
    return value


def parse_event(raw: str | bytes | None) -> TwilioEvent:
    """One Media Streams frame from Twilio as a typed event; FrameError for anything else."""
    if not isinstance(raw, str):
        raise FrameError("Media Streams frames are JSON text", "text_expected")
    if len(raw) > MAX_FRAME_CHARS:
        raise FrameError(f"a frame of {len(raw)} characters exceeds the {MAX_FRAME_CHARS}-character limit", "frame_too_large")
    try:
        data = _object(parse_json(raw), "frame")
    except ValueError as exc:
        raise FrameError(f"the frame is not acceptable JSON: {exc}", "bad_json") from None
    kind = data.get("event")
    if kind == "media":
        media = _object(data.get("media"), "media")
        payload = _string(media.get("payload"), "media.payload", MAX_PAYLOAD_BYTES * 2)
        try:
            audio = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise FrameError("'media.payload' is not base64", "bad_media") from None
        if len(audio) > MAX_PAYLOAD_BYTES:
            raise FrameError(f"a media payload of {len(audio)} bytes exceeds {MAX_PAYLOAD_BYTES}", "media_too_large")
        return Media(audio)
    if kind == "mark":
        return Mark(_string(_object(data.get("mark"), "mark").get("name"), "mark.name"))
    if kind == "dtmf":
        digit = _string(_object(data.get("dtmf"), "dtmf").get("digit"), "dtmf.digit", 1)
        if digit not in DTMF_DIGITS:
            raise FrameError("'dtmf.digit' is not a keypad digit", "bad_field")
        return Dtmf(digit)
    if kind == "start":
        return _parse_start(data)
    if kind == "connected":
        return Connected(str(data.get("protocol", ""))[:40])
    if kind == "stop":
        return Stop()
    raise FrameError(f"unknown Media Streams event {str(kind)[:40]!r}", "unknown_event")


def _parse_start(data: dict[str, Any]) -> Start:
    start = _object(data.get("start"), "start")
    media_format = _object(start.get("mediaFormat"), "start.mediaFormat")
    parameters = _object(start.get("customParameters", {}), "start.customParameters")
    if len(parameters) > MAX_PARAMETERS:
        raise FrameError(f"more than {MAX_PARAMETERS} custom parameters", "bad_field")
    rate = media_format.get("sampleRate")
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise FrameError("'start.mediaFormat.sampleRate' must be an integer", "bad_field")
    return Start(stream_sid=_string(start.get("streamSid", data.get("streamSid")), "start.streamSid"),
                 call_sid=_string(start.get("callSid"), "start.callSid"),
                 parameters={_string(k, "parameter name"): _string(v, f"parameter {k[:40]}", 2_000)
                             for k, v in parameters.items()},
                 encoding=_string(media_format.get("encoding"), "start.mediaFormat.encoding"), sample_rate=rate)


def check_format(start: Start) -> None:
    """FrameError unless the stream carries what we decode: mu-law at 8 kHz."""
    if start.encoding != MEDIA_ENCODING or start.sample_rate != MEDIA_RATE:
        raise FrameError(f"the media format must be {MEDIA_ENCODING} at {MEDIA_RATE} Hz, not "
                         f"{start.encoding[:40]} at {start.sample_rate} Hz", "bad_format")


Convert = Callable[[bytes], bytes]


def pcm_seconds(pcm: bytes | bytearray, rate: int) -> float:
    return len(pcm) / 2 / rate


class CallerAudio:
    """The caller's mu-law frames as 16 kHz PCM16 for the Listener, handed on every ``IN_BATCH_S``;
    ``to_pcm`` is a streaming mu-law 8 kHz -> PCM16 16 kHz conversion."""

    def __init__(self, to_pcm: Convert) -> None:
        self._to_pcm = to_pcm
        self._kept = bytearray()

    def add(self, mulaw: bytes) -> m.Audio | None:
        self._kept += self._to_pcm(mulaw)
        if pcm_seconds(self._kept, CALLER_PCM_RATE) < IN_BATCH_S:
            return None
        audio = m.Audio(bytes(self._kept))
        self._kept.clear()
        return audio


class TwilioEncoder:
    """What one Twilio stream is sent of the conversation: its reply audio as 8 kHz mu-law ``media`` frames,
    each followed by a ``mark`` naming how far into its speech it reaches, and a ``clear`` when the caller
    interrupts. ``heard`` takes Twilio's mark echoes; ``take_played`` is the position the caller heard of the
    speech just cleared (for the Speaker, ``m.Played``)."""

    def __init__(self, stream_sid: str, to_wire: Callable[[], Convert]) -> None:
        self.stream_sid = stream_sid
        self._to_wire = to_wire  # a new streaming PCM16 24 kHz -> mu-law 8 kHz conversion (one per speech)
        self._converters: dict[str, Convert] = {}
        self._sent_s: dict[str, float] = {}  # per speech: seconds (24 kHz input) sent so far
        self._pending: dict[str, tuple[str, float]] = {}  # marks sent, not yet echoed: name -> (speech, seconds)
        self._heard_s: dict[str, float] = {}  # per speech: seconds the caller has certainly heard
        self._cleared: set[str] = set()  # speeches whose unplayed audio was cleared
        self._speaking: str | None = None  # the speech whose audio went out last
        self._played: m.Played | None = None
        self.marks_sent = 0
        self._turn = False  # the caller's turn or its reply is under way (speech started/response .. its end)
        self._unfinished: set[str] = set()  # speeches whose audio is still being made (first audio .. speech_done)

    @property
    def busy(self) -> bool:
        """A turn is under way: the caller is speaking or being answered, or a reply is still made or played (its
        marks not all echoed): a drained call is closed only between turns (deployments/drain.py)."""
        return self._turn or bool(self._unfinished) or bool(self._pending)

    def encode(self, event: ev.ConversationEvent) -> list[dict[str, Any]]:
        if isinstance(event, ev.UserSpeechStarted | ev.ResponseCreated | ev.ResponseDone | ev.ResponseCancelled):
            self._turn = isinstance(event, ev.UserSpeechStarted | ev.ResponseCreated)
        if isinstance(event, ev.AudioChunk):
            return self._audio(event.speech_id, event.pcm)
        if isinstance(event, ev.SpeechDone):
            self._unfinished.discard(event.speech_id)
            self._converters.pop(event.speech_id, None)
            return self._clear() if event.interrupted else []
        if isinstance(event, ev.UserInterrupt):
            return self._clear()
        return []

    def _audio(self, speech_id: str, pcm: bytes) -> list[dict[str, Any]]:
        if speech_id in self._cleared:
            return []  # audio of a cut speech that was already on its way
        self._speaking = speech_id
        self._unfinished.add(speech_id)
        convert = self._converters.get(speech_id)
        if convert is None:
            convert = self._converters[speech_id] = self._to_wire()
        step = int(OUT_PIECE_S * REPLY_PCM_RATE) * 2
        frames: list[dict[str, Any]] = []
        for offset in range(0, len(pcm), step):
            piece = pcm[offset : offset + step]
            mulaw = convert(piece)
            self._sent_s[speech_id] = self._sent_s.get(speech_id, 0.0) + pcm_seconds(piece, REPLY_PCM_RATE)
            if mulaw:
                frames.append({"event": "media", "streamSid": self.stream_sid,
                               "media": {"payload": base64.b64encode(mulaw).decode("ascii")}})
            name = f"{speech_id}:{self._sent_s[speech_id]:.3f}"
            self._pending[name] = (speech_id, self._sent_s[speech_id])
            frames.append({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
            self.marks_sent += 1
        return frames

    def _clear(self) -> list[dict[str, Any]]:
        speech_id = self._speaking
        if speech_id is None or speech_id in self._cleared:
            return []
        self._cleared.add(speech_id)
        self._pending = {name: mark for name, mark in self._pending.items() if mark[0] != speech_id}
        self._played = m.Played(speech_id, self._heard_s.get(speech_id, 0.0))
        return [{"event": "clear", "streamSid": self.stream_sid}]

    def heard(self, name: str) -> None:
        """Twilio echoed a mark: the caller heard the audio before it (echoes after a ``clear`` are ignored)."""
        mark = self._pending.pop(name, None)
        if mark is not None:
            speech_id, seconds = mark
            self._heard_s[speech_id] = max(self._heard_s.get(speech_id, 0.0), seconds)

    def heard_s(self, speech_id: str) -> float:
        return self._heard_s.get(speech_id, 0.0)

    def take_played(self) -> m.Played | None:
        played, self._played = self._played, None
        return played
