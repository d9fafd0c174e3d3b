"""The session's turn-taking mode, held in one place.

``chat``: the client ends each turn (``create_response``); ``call``: the server hears when the user is done
and the user may speak over the agent. A transport whose clients switch it mid-session (OpenAI's
``turn_detection``) switches it here, and every room that behaves by the mode reads it from this one object.
Only the framing of a compressed input stream (agents/audio_input.py: a file per turn in chat mode) is chosen
once, at ``init``: a container cannot change its framing mid-stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Mode


@dataclass
class SessionMode:
    value: Mode = "chat"

    @property
    def call(self) -> bool:
        return self.value == "call"
