"""What the Listener hears and reports: the user's turn (``UserTurn``) and the typed events about it.

The Listener (agents/listener.py) writes a turn; the other rooms read it and key what they keep about a turn
by the turn itself (by identity). The events reach the Conversation through one async callback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from speech.streaming import StreamingTranscriber


@dataclass(eq=False)  # compared and hashed by identity: the rooms key what they keep about a turn by the turn
class UserTurn:
    """What the user said in one turn: its audio, its streaming transcript and when speech ended. Written only
    by the Listener; the other rooms read it."""

    streamer: StreamingTranscriber
    heard: str = ""  # the latest transcript reported for this turn (what the end-of-turn rule reads)
    speech_end_s: float | None = None  # turn audio time where the last utterance's transcript window ends
    origin: int = 0  # the stream position (samples) of the turn's first audio
    speaking: bool = False
    overflow_reported: bool = False
    ended_at: float = 0.0  # clock time when the turn was ended
    speech_ended_at: float = 0.0  # clock time when voice activity last ended
    recent: bytearray = field(default_factory=bytearray)  # the last MODEL_AUDIO_S (agents/listener.py) of the turn's audio
    complete: float | None = None  # the end-of-turn model's answer for the latest utterance end
    predicting: bool = False  # ... still on its way
    utterances: int = 0  # utterance ends so far (a model answer for an older one is stale)
    settled: int = 0  # utterance ends whose transcript has settled into ``heard`` (or failed)
    speech_began_at: float | None = None  # clock time when voice activity first began in this turn
    loud_s: float = 0.0  # speech at barge-in level in this turn (the agent's own echo has none)
    voiced_s: float = 0.0  # speech (voice activity) in this turn, the silences between utterances left out

    async def settle(self) -> str:
        return await self.streamer.finish(None if self.speaking else self.speech_end_s)


@dataclass(frozen=True)
class TranscriptUpdate:
    turn: UserTurn
    text: str
    final: bool  # the settled transcript of an utterance (False: a partial while the user speaks)
    at_silence: bool = False  # a partial up to where a silence began: what the utterance will most likely settle to


@dataclass(frozen=True)
class SpeechStarted:
    """Sustained speech loud enough to be the user (not the agent's own voice leaking back): barge-in."""


@dataclass(frozen=True)
class TurnEnded:
    turn: UserTurn  # call mode only: the user is done


@dataclass(frozen=True)
class AudioOverflow:
    turn: UserTurn  # the turn's audio passed max_turn_s; the rest is ignored (reported once per turn)


ListenerEvent = TranscriptUpdate | SpeechStarted | TurnEnded | AudioOverflow
OnListenerEvent = Callable[[ListenerEvent], Awaitable[None]]
