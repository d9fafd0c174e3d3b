"""Barge-in: the user speaking over the agent in call mode, a backchannel to let pass or an interruption.

Without backchannels configured, sustained speech over the agent's reply stops it at once. With them
(agents/backchannel.py) it is judged first, so an "uh-huh" does not cost the user the reply: what was said so
far is transcribed as it grows, and a word that is no backchannel, too many words or too long an utterance
interrupts the agent; an utterance that ends as a backchannel is dropped (no user message, no turn). The
Conversation asks at three points: when sustained speech starts (``speech_started``), when a transcript would
be shown (``hides``) and when the turn's transcript is settled (``turn_settled``); ``interrupt`` stops the
running reply (``RunningReply.stop``) and has the Speaker cut its speech where the client is estimated to be
(``Speaker.barge_in``). Barge-in writes no other room's state: which turns it is judging is its own.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from agents.backchannel import backchannel_words, could_become_backchannel, is_backchannel, is_noise, noise_phrases
from agents.continuation import Continuation
from agents.listener import Listener
from agents.replies import RunningReply
from agents.services import Emit
from agents.speaker import Speaker
from agents.turns import TurnConfig
from agents.user_turn import UserTurn
from common.clock import Clock
from protocol import events as ev
from protocol import messages as m
from protocol.pcm import INPUT_BYTES_PER_SECOND
from speech.stt import Transcript

log = logging.getLogger("voi.conversation")
JUDGE_EVERY_S = 0.15  # new speech over the agent between two looks at what was said
WORD_S = 0.15  # loud speech in a turn that makes it the user's, not the agent's echo


class BargeIn:
    def __init__(self, *, agent_name: str, config: TurnConfig, listener: Listener, speaker: Speaker, emit: Emit,
                 transcribe: Callable[[bytes, str | None], Awaitable[Transcript]],
                 reply: RunningReply, continuation: Continuation, clock: Clock) -> None:
        self._clock = clock
        self._continuation = continuation
        self._agent_name = agent_name
        self._config = config
        self._words = backchannel_words(config.backchannels)
        self._noise = noise_phrases(config.noise_phrases)
        self._listener = listener
        self._speaker = speaker
        self._emit = emit
        self._transcribe = transcribe
        self._reply = reply
        # Turns that began over the agent: backchannels until heard otherwise (held weakly: a turn's life is the Listener's).
        self._judged: weakref.WeakSet[UserTurn] = weakref.WeakSet()
        # ... whose user_speech_started is held back until they are heard to be words (a client that stops its
        # playback on it, as OpenAI Realtime clients do, must not stop for a cough).
        self._unannounced: weakref.WeakSet[UserTurn] = weakref.WeakSet()

    def agent_speaking(self, now: float) -> bool:
        return self._reply.running() or self._speaker.speaking(now)

    async def speech_started(self, spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        """Sustained, loud speech began: over the agent, or in the resume window of the turn that ended last, it
        is judged by its words (``spawn`` runs the judgement beside the conversation), else announced at once."""
        turn, now = self._listener.turn, self._clock.now()
        resuming = self._continuation.open_at(turn.speech_began_at or now)
        if not resuming and not self.agent_speaking(now):
            await self._emit(ev.UserSpeechStarted())
            return
        self._unannounced.add(turn)
        self._listener.hold_partials(turn)  # the judge's passes are the only Whisper work on this speech until it acts
        if resuming:
            self._speaker.hold()  # until the words are known: what is not sent of the reply is not heard
            self._listener.hold_end(turn)  # ... and the words may not be a turn of their own before that
        spawn(self._judge(turn, resuming), "resume" if resuming else "backchannel")

    def judging(self, turn: UserTurn) -> bool:
        """Whether ``turn`` began over the agent and may still be a backchannel or a noise."""
        return turn in self._judged

    def announced(self, turn: UserTurn) -> bool:
        """Whether the client was told the user speaks in ``turn`` (a sound over the agent never is)."""
        return turn not in self._unannounced

    async def announce(self, turn: UserTurn) -> None:
        """Tell the client now, if it was held back, that the user speaks in ``turn``."""
        if turn in self._unannounced:
            self._unannounced.discard(turn)
            await self._emit(ev.UserSpeechStarted())

    async def interrupt(self, heard: str = "") -> None:
        now = self._clock.now()
        if not self.agent_speaking(now):
            return
        log.info("agent=%s barge-in: the user speaks over the reply (heard %r)", self._agent_name, heard[:60])
        await self.announce(self._listener.turn)
        await self._emit(ev.UserInterrupt())
        self._reply.stop()
        await self._speaker.barge_in(now)

    async def client_interrupt(self, msg: m.Interrupt) -> None:
        """The client's ``interrupt``: it stops the reply still being written for that speech, and cuts the speech
        where the client says it stopped playing it."""
        speech = self._speaker.get(msg.speech_id)
        reply = self._reply.current()
        if reply is not None and (msg.speech_id is None or reply.speech is speech):
            # The text is still streaming (a null speech_id names the running reply, also before it speaks):
            # stop the LLM too.
            self._reply.stop()
            if reply.speech is None:
                return
        if speech is None:
            await self._emit(ev.Error(f"interrupt names no speech of this session ({str(msg.speech_id)[:20]!r})",
                                     "unknown_speech"))
            return
        await self._speaker.client_cut(speech, msg.interrupted_at)

    def _over_agent(self, turn: UserTurn) -> bool:
        """The turn's speech began while the agent spoke, or the agent speaks now. A short "uh-huh" that never
        reached barge-in level and that the end-of-turn model kept open until after the reply's end is still
        one said over it."""
        if turn in self._judged or self.agent_speaking(self._clock.now()):
            return True
        began = turn.speech_began_at
        return began is not None and self._speaker.was_playing_at(began)

    def _is(self, text: str, *, so_far: bool = False) -> bool:
        """A backchannel or a noise (so far: or nothing heard yet)."""
        judge = could_become_backchannel if so_far else is_backchannel
        return judge(text, self._words, self._config.backchannel_max_words) or is_noise(text, self._noise)

    def is_noise(self, text: str) -> bool:
        return is_noise(text, self._noise)

    def hides(self, turn: UserTurn, text: str) -> bool:
        """Speech being judged (over the agent, or in the resume window: it may become part of the turn before)
        and speech over the agent that may still be a backchannel or a noise are not shown yet."""
        return turn in self._unannounced or (self._is(text, so_far=True) and self._over_agent(turn))

    async def turn_settled(self, turn: UserTurn, transcript: str) -> bool:
        """A call-mode turn's settled transcript: True when it said only a backchannel over the agent's speech
        (no turn at all). A turn said over the agent that was too short to barge in ("Wait.") interrupts now
        (not the agent's own voice leaking back: that is never at barge-in level)."""
        if (self._is(transcript) or not transcript.strip()) and self._over_agent(turn):
            log.info("agent=%s backchannel or noise %r: no turn of its own", self._agent_name, transcript)
            return True
        if transcript and turn.loud_s >= WORD_S:
            await self.interrupt(transcript)
        await self.announce(turn)
        return False

    async def _judge(self, turn: UserTurn, resuming: bool) -> None:
        try:
            await self._judge_words(turn, resuming)
        finally:
            self._listener.release_partials(turn)
            if resuming:
                self._speaker.release()
                await self._listener.release_end(turn)

    def _nothing_yet(self, text: str, resuming: bool) -> bool:
        """No reason to act on ``text`` yet: in the resume window any word reopens the turn, over the agent only
        a word that is no backchannel interrupts it; a noise never does."""
        return (not text.strip() or self.is_noise(text)) if resuming else self._is(text, so_far=True)

    async def _judge_words(self, turn: UserTurn, resuming: bool) -> None:
        self._judged.add(turn)
        utterances, judged_bytes, text = turn.utterances, 0, ""
        # Until the turn ends: then the turn worker judges its settled transcript (turn_settled).
        while turn is self._listener.turn and turn in self._judged:
            audio = turn.streamer.window_audio()
            ended = not turn.speaking or turn.utterances > utterances  # (a slow pass may miss the silence)
            if ended or len(audio) - judged_bytes >= JUDGE_EVERY_S * INPUT_BYTES_PER_SECOND:
                judged_bytes = len(audio)
                try:
                    text = (await self._transcribe(audio, None)).text
                except Exception as exc:  # without the words the timing decides
                    log.warning("backchannel check failed: %s", exc)
                    text = ""
                if turn is not self._listener.turn:
                    return
                if not self._nothing_yet(text, resuming):
                    break
                if ended:
                    log.info("agent=%s backchannel or noise %r: not an interruption, not a turn", self._agent_name, text)
                    self._listener.take_turn()  # dropped: it is neither shown nor answered
                    return
            # Voiced time, not wall time: neither a slow Whisper pass nor the silence before a second "uh-huh"
            # makes a backchannel long. Words are needed: a long laugh or hum Whisper writes nothing for is no
            # interruption, however long it goes on.
            long = turn.speaking and turn.voiced_s >= self._config.backchannel_max_s
            if not resuming and long and text.strip() and not self.is_noise(text):
                break
            await self._clock.sleep(0.03)
        else:
            return
        self._judged.discard(turn)
        if resuming:
            if await self._continuation.reopen(turn):  # (which announces the reopened turn)
                self._unannounced.discard(turn)
                return
            await self.announce(turn)
        if self.agent_speaking(self._clock.now()):
            await self.interrupt(text)  # a real interruption: shown and answered as usual
        else:
            await self.announce(turn)
