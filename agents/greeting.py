"""The greeting: one of the agent's greeting choices, as text, segments to speak and an optional recording.

A choice with a ``file`` plays that server-side recording instead of synthesizing the text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.agent import Agent, GreetingChoice
from agents.history import History
from agents.reply_parser import ReplyParser, Segment
from agents.services import Emit
from agents.speaker import Speaker
from protocol import events as ev
from protocol import messages as m


@dataclass(frozen=True)
class Greeting:
    text: str
    tone: str | None
    segments: list[Segment]
    file: Path | None  # a recording to play instead of synthesized speech


def choose_greeting(choices: tuple[GreetingChoice, ...], tone: str | None, rng: random.Random,
                    greeting_dir: Path | None) -> Greeting | None:
    if not choices:
        return None
    choice = rng.choice(choices)
    parser = ReplyParser(tone, plain=True)
    segments = parser.parse(choice.content)
    file = (greeting_dir / choice.file).resolve() if choice.file and greeting_dir is not None else None
    return Greeting(parser.text or choice.content, tone, segments, file)


async def speak_greeting(greeting: Greeting, history: History, speaker: Speaker, emit: Emit) -> None:
    """Show the greeting as an assistant message and start speaking it (or playing its recording)."""
    stored = history.add("assistant", [m.text_part(greeting.text)], tone=greeting.tone)
    await emit(ev.Message("assistant", stored.id, stored.content))
    speech = speaker.start(stored, None, file=greeting.file, cached=True)
    for segment in greeting.segments:
        speech.say(segment)
    speech.end()


def greeting_renders(agents: dict[str, Agent]) -> list[dict[str, Any]]:
    """Every greeting text segment of ``agents``, for the Synthesizer to render into its cache (at start, and
    for the agents an update adds or changes)."""
    renders: list[dict[str, Any]] = []
    for agent in agents.values():
        for choice in agent.greetings:
            if choice.file:
                continue  # a recording is played, not synthesized
            for segment in ReplyParser(agent.greeting_tone, plain=True).parse(choice.content):
                voice = agent.voices.for_role(segment.role)
                if voice is not None:
                    renders.append({"text": segment.spoken, "model": voice.model, "voice": voice.voice,
                                    "tone": segment.tone, "speed": voice.speed})
    return renders
