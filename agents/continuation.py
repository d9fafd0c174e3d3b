"""Taking back a cut: the user goes on within ``resume_window_s`` of the end of their turn.

A pause mid-sentence ("I'd like to book a table for ... four people at eight") can end the user's turn too early.
When words (not a noise: agents/backchannel.py) follow within the window, the turn is reopened: the reply to it
stops at once, wherever it is (queued, its transcript settling, streaming, playing), the audio said since goes
on in the same turn, whose user message keeps its id and grows, and the whole is answered when the turn ends
again. What the user heard of the abandoned reply stays in the history only when more than
``resume_keep_heard_s`` of it was played; otherwise the LLM is never shown it.

BargeIn hears the words (it judges any speech that starts in the window, and holds the Speaker's audio
meanwhile); this room knows which turn ended last and does the reopening.
"""

from __future__ import annotations

import logging
import weakref

from agents.history import History, TranscriptMessages
from agents.listener import Listener
from agents.replies import RunningReply
from agents.services import Emit
from agents.speaker import Speaker
from agents.turn_queue import TurnRequest
from agents.turns import TurnConfig
from agents.user_turn import UserTurn
from common.clock import Clock
from protocol import events as ev

log = logging.getLogger("voi.conversation")


class Continuation:
    def __init__(self, *, agent_name: str, config: TurnConfig, listener: Listener, speaker: Speaker,
                 reply: RunningReply, history: History, transcripts: TranscriptMessages, emit: Emit,
                 clock: Clock) -> None:
        self._agent_name = agent_name
        self._config = config
        self._listener = listener
        self._speaker = speaker
        self._reply = reply
        self._history = history
        self._transcripts = transcripts
        self._emit = emit
        self._clock = clock
        self._ended: TurnRequest | None = None  # the call-mode turn that ended last, while it may be reopened
        self._reopened: weakref.WeakSet[UserTurn] = weakref.WeakSet()

    def ended(self, request: TurnRequest) -> None:
        """A call-mode turn ended (its reply is asked for): words soon after reopen it."""
        self._ended = request

    def dropped(self, request: TurnRequest) -> None:
        """``request``'s turn was a backchannel or a noise: nothing to go on with."""
        if self._ended is request:
            self._ended = None

    def forget(self) -> None:
        """No turn may be reopened (a typed message or a client's request came between)."""
        self._ended = None

    def open_at(self, when: float) -> bool:
        """Whether speech that began at ``when`` falls in the resume window of the turn that ended last."""
        request, window = self._ended, self._config.resume_window_s
        return request is not None and window > 0 and 0 <= when - request.turn.ended_at <= window

    def was_reopened(self, turn: UserTurn) -> bool:
        return turn in self._reopened

    async def reopen(self, since: UserTurn) -> bool:
        """The user went on (``since`` is the turn their new words are in): reopen the turn that ended last.
        False when it can no longer be reopened (then ``since`` is a turn of its own)."""
        request = self._ended
        if request is None or since is not self._listener.turn or not self.open_at(since.speech_began_at or 0.0):
            return False
        self._ended, request.abandoned = None, True
        gap = (since.speech_began_at or 0.0) - request.turn.ended_at
        await self._abandon_reply(request)
        self._listener.reopen(request.turn)
        self._reopened.add(request.turn)
        message_id = self._transcripts.reopen(request.turn)
        log.info("agent=%s turn reopened: the user went on %.2f s after its end", self._agent_name, gap)
        await self._emit(ev.UserSpeechStarted())
        if message_id is not None:
            await self._emit(ev.TurnReopened(message_id))
        return True

    async def _abandon_reply(self, request: TurnRequest) -> None:
        """Stop the reply to ``request`` (if it began): its audio stops being sent and, when the client has it,
        played; the history keeps what was heard of it only past ``resume_keep_heard_s``."""
        reply = request.reply
        if reply is None:
            return
        if self._reply.current() is reply:
            await self._reply.stop_and_wait()
        speech, now = reply.speech, self._clock.now()
        heard = speech.played_s(now) if speech is not None and speech.first_audio_at is not None else 0.0
        if speech is not None and speech.playing(now):
            if speech.first_audio_at is not None:
                await self._emit(ev.UserInterrupt())  # the client stops playing what it has
            await self._speaker.barge_in(now)
        if reply.stored is not None and heard <= self._config.resume_keep_heard_s:
            self._history.forget(reply.stored.id)
        log.info("agent=%s abandoned reply: %.2f s of it heard (%s)", self._agent_name, heard,
                 "kept" if heard > self._config.resume_keep_heard_s else "dropped from the history")
