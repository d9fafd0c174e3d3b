"""Reading an LLM reply while it streams: voice tone, text, and the pieces to hand to the synthesizer.

A persona that asks for the JSON format answers ``{"voice_tone": "...", "text": "..."}``; the tone comes
first, so it is known before the text starts and speech can begin in the right voice. The text value is
decoded as it arrives (escapes included). A reply that is not JSON is plain text.

The text is cut into segments at sentence ends (the first one sooner, at a clause boundary, so the first
audio comes early) and at narrator markers: ``@she smiles@`` is spoken by the narrator voice.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Literal

from agents.prompts import NARRATOR_MARKER
from llm.text import strip_code_fence
from speech.segmenter import first_clause_end, split_sentences

log = logging.getLogger("voi.reply")

Role = Literal["character", "narrator"]
FALLBACK_TEXT = "Sorry, I was lost in thought. Can you repeat that?"

_TONE = re.compile(r'"voice_tone"\s*:\s*"([^"\\]{0,40})"')
_TEXT_KEY = re.compile(r'"text"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "", "f": "", "n": "\n", "r": "", "t": " "}
_UNSPOKEN = re.compile(r"[*_~#`\"\u201c\u201d\u00ab\u00bb]")


def speakable(text: str) -> str:
    """Text as the synthesizer should get it: markdown emphasis and quotes removed, spaces collapsed."""
    text = _UNSPOKEN.sub("", text.replace("\u2019", "'").replace("\u2018", "'"))
    return " ".join(text.split())


@dataclass(frozen=True)
class Segment:
    text: str  # as shown to the user (a narrator aside keeps its markers)
    spoken: str  # as synthesized
    role: Role
    tone: str | None


class ReplyDecoder:
    """Raw streamed reply -> voice tone and text, incrementally."""

    def __init__(self, plain: bool = False) -> None:
        self.raw = ""
        self.mode: Literal["undecided", "json", "plain"] = "plain" if plain else "undecided"
        self.tone: str | None = None
        self.text = ""
        self._pos: int | None = None  # where undecoded text of the JSON "text" value starts in raw
        self._text_closed = False

    def feed(self, delta: str) -> str:
        """Add raw model output; returns the text it completed."""
        self.raw += delta
        if self.mode == "undecided":
            start = self.raw.lstrip()
            if not start:
                return ""
            self.mode = "json" if start.startswith(("{", "```")) else "plain"
        if self.mode == "plain":
            return self._append(delta)
        if self.tone is None and (tone := _TONE.search(self.raw)):
            self.tone = tone.group(1).strip().lower() or None
        if self._pos is None:
            key = _TEXT_KEY.search(self.raw)
            if key is None:
                return ""
            self._pos = key.end()
        return self._decode_string()

    def _append(self, text: str) -> str:
        self.text += text
        return text

    def _decode_string(self) -> str:
        assert self._pos is not None
        out: list[str] = []
        raw, i = self.raw, self._pos
        while i < len(raw) and not self._text_closed:
            char = raw[i]
            if char == '"':
                self._text_closed = True
                i += 1
                break
            if char != "\\":
                out.append(char)
                i += 1
                continue
            if i + 1 >= len(raw):
                break  # an escape cut in two by the stream: wait for the rest
            code = raw[i + 1]
            if code == "u":
                if i + 6 > len(raw):
                    break
                try:
                    out.append(chr(int(raw[i + 2 : i + 6], 16)))
                except ValueError:
                    pass
                i += 6
                continue
            out.append(_ESCAPES.get(code, code))
            i += 2
        self._pos = i
        return self._append("".join(out))

    def finish(self) -> str:
        """The end of the stream: recover what a malformed JSON reply said; returns text added now."""
        if self.mode != "json" or self._pos is not None:
            return ""
        body = strip_code_fence(self.raw)
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("text"), str):
            if isinstance(data.get("voice_tone"), str):
                self.tone = data["voice_tone"].strip().lower() or self.tone
            return self._append(data["text"])
        log.warning("the reply was neither the JSON format asked for nor text; answering with a fallback")
        return self._append(FALLBACK_TEXT)


class SpeechSplitter:
    """Text as it streams -> speakable segments, cut at sentence ends, narrator markers and (first) clauses."""

    def __init__(self, *, first_clause_chars: int = 24, max_chars: int = 220) -> None:
        self.first_clause_chars = first_clause_chars
        self.max_chars = max_chars
        self.role: Role = "character"
        self._buffer = ""
        self._emitted = 0

    def feed(self, text: str, tone: str | None) -> list[Segment]:
        out: list[Segment] = []
        parts = text.split(NARRATOR_MARKER)
        for index, part in enumerate(parts):
            if index > 0:  # a marker: what came before it belongs to the other role
                out += self._flush(tone)
                self.role = "narrator" if self.role == "character" else "character"
            self._buffer += part
            out += self._complete_pieces(tone)
        return out

    def finish(self, tone: str | None) -> list[Segment]:
        return self._flush(tone)

    def _complete_pieces(self, tone: str | None) -> list[Segment]:
        out: list[Segment] = []
        sentences = split_sentences(self._buffer)
        if len(sentences) > 1:
            last = sentences[-1]
            cut = self._buffer.rfind(last)
            for sentence in sentences[:-1]:
                out += self._segment(sentence, tone)
            self._buffer = self._buffer[cut:] if cut >= 0 else last
        if self._emitted == 0 and not out and self.role == "character":
            end = first_clause_end(self._buffer, self.first_clause_chars)
            if end is not None:
                out += self._segment(self._buffer[:end], tone)
                self._buffer = self._buffer[end:]
        if len(self._buffer) > self.max_chars:
            cut = self._buffer.rfind(" ", 0, self.max_chars)
            cut = cut if cut > 0 else self.max_chars
            out += self._segment(self._buffer[:cut], tone)
            self._buffer = self._buffer[cut:]
        return out

    def _flush(self, tone: str | None) -> list[Segment]:
        text, self._buffer = self._buffer, ""
        return [piece for sentence in split_sentences(text) for piece in self._segment(sentence, tone)]

    def _segment(self, text: str, tone: str | None) -> list[Segment]:
        text = text.strip()
        spoken = speakable(text)
        if not any(c.isalnum() for c in spoken):
            return []  # punctuation or markup only: nothing to say
        self._emitted += 1
        shown = f"{NARRATOR_MARKER}{text}{NARRATOR_MARKER}" if self.role == "narrator" else text
        return [Segment(text=shown, spoken=spoken, role=self.role, tone=tone)]


class ReplyParser:
    """A whole streamed reply: ``feed`` model output, get segments to speak; ``text`` is what to show."""

    def __init__(self, default_tone: str | None = None, *, plain: bool = False) -> None:
        """``plain``: the text is not a model's reply (echo, greetings): never read it as JSON."""
        self.decoder = ReplyDecoder(plain)
        self.splitter = SpeechSplitter()
        self.default_tone = default_tone

    @property
    def text(self) -> str:
        return self.decoder.text.strip()

    @property
    def tone(self) -> str | None:
        return self.decoder.tone or self.default_tone

    def feed(self, delta: str) -> list[Segment]:
        new_text = self.decoder.feed(delta)
        return self.splitter.feed(new_text, self.tone) if new_text else []

    def parse(self, text: str) -> list[Segment]:
        """A whole text at once (echo, greetings, a give-up response): all its segments."""
        return self.feed(text) + self.finish()

    def finish(self) -> list[Segment]:
        tail = self.decoder.finish()
        segments = self.splitter.feed(tail, self.tone) if tail else []
        return segments + self.splitter.finish(self.tone)
