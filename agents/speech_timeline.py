"""What the listener heard of a speech: maps seconds played back to the text spoken up to then."""

from __future__ import annotations

from dataclasses import dataclass, field

INTERRUPTED_SUFFIX = "... (interrupted)"


@dataclass
class SpeechTimeline:
    """Pieces of text in the order spoken, each with the seconds of audio it took (silences have no text)."""

    pieces: list[tuple[str, float]] = field(default_factory=list)
    complete: bool = False  # all the text was synthesized

    def add(self, text: str, seconds: float) -> None:
        self.pieces.append((text, seconds))

    def extend_last(self, seconds: float) -> None:
        text, so_far = self.pieces[-1]
        self.pieces[-1] = (text, so_far + seconds)

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.pieces)

    def heard_text(self, played_seconds: float) -> tuple[str, bool]:
        """The text heard after ``played_seconds`` of playback, and whether that was all of it."""
        heard: list[str] = []
        remaining = max(played_seconds, 0.0)
        for text, seconds in self.pieces:
            if text and seconds == 0:
                break  # not synthesized yet, so not heard
            if remaining >= seconds:
                if text:
                    heard.append(text)
                remaining -= seconds
                continue
            if text and seconds > 0:
                partial = _cut_at_word(text, remaining / seconds)
                if partial:
                    heard.append(partial)
            return " ".join(heard), False
        else:
            return " ".join(heard), self.complete
        return " ".join(heard), False


def _cut_at_word(text: str, fraction: float) -> str:
    """The words of ``text`` fully inside the first ``fraction`` of it (by characters)."""
    limit = int(len(text) * fraction)
    if limit >= len(text):
        return text
    cut = text[:limit]
    if limit < len(text) and not text[limit].isspace():
        cut = cut.rsplit(None, 1)[0] if " " in cut.strip() else ""
    return cut.rstrip(" ,;:")


def truncated(text_heard: str) -> str:
    return f"{text_heard}{INTERRUPTED_SUFFIX}" if text_heard else INTERRUPTED_SUFFIX
