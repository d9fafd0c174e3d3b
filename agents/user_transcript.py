"""The user's words as the client sees them: each turn's transcript shown as it grows, and settled when the
turn is answered.

Speech over the agent may still be judged a backchannel or a noise (agents/barge_in.py): its words are not
shown until BargeIn knows. At the turn's end the final Whisper pass settles the words, BargeIn has its last
say (a backchannel or a noise is no turn at all, nor one to go on with) and the words are shown final; the
turn worker answers what ``settle`` returns. Which turn showed which message is ``TranscriptMessages``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.barge_in import BargeIn
from agents.continuation import Continuation
from agents.history import TranscriptMessages
from agents.mode import SessionMode
from agents.services import Emit
from agents.turn_queue import TurnRequest
from agents.user_turn import UserTurn
from protocol import events as ev

log = logging.getLogger("voi.conversation")


@dataclass(kw_only=True, eq=False)
class UserTranscript:
    agent_name: str
    mode: SessionMode
    messages: TranscriptMessages  # which turn showed which message
    barge_in: BargeIn  # whether words over the agent may be shown yet, and a settled turn's last judge
    continuation: Continuation  # told of a turn that was nothing to go on with
    emit: Emit

    async def show(self, turn: UserTurn, text: str, *, final: bool) -> None:
        """Send ``turn``'s growing transcript as one message with a stable id (``final`` once settled)."""
        if self.mode.call and self.barge_in.hides(turn, text):
            return
        stored = self.messages.show(turn, text, final=final)
        if stored is not None:
            await self.emit(ev.Message("user", stored.id, stored.content, final=final))

    async def settle(self, request: TurnRequest) -> str | None:
        """The settled words of ``request``'s turn, shown final ("" when none were heard, or Whisper failed).
        None when the turn is not to be answered: the user went on with it (it is answered when it ends again),
        or it was a backchannel or a noise over the agent."""
        turn, transcript = request.turn, ""
        try:
            transcript = (await turn.settle()).strip()
        except Exception as exc:
            log.warning("transcription failed for agent '%s': %s", self.agent_name, exc)
            await self.emit(ev.Error("speech recognition failed for this turn; please try again", "stt_failed"))
        if request.abandoned:
            return None
        unannounced = not self.barge_in.announced(turn)
        if self.mode.call and await self.barge_in.turn_settled(turn, transcript):
            self.messages.take(turn)
            self.continuation.dropped(request)
            return None
        if unannounced:  # words after all: the client hears of them as of any turn
            await self.emit(ev.UserSpeechStopped())
        await self.show(turn, transcript, final=True)
        return self.messages.take(turn)
