"""The latency timeline of one turn: when each stage happened, relative to the end of the user's speech."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STAGES = (
    "speech_end",  # end of the user's speech: VAD end in call mode, create_response in chat mode
    "transcript_final",  # the settled transcript is known
    "llm_first_token",  # the reply's first text (the echo agent: its whole text)
    "first_text_to_tts",  # the first piece of text handed to the synthesizer
    "first_tts_chunk",  # the synthesizer's first audio
    "first_audio_sent",  # the first reply audio frame emitted to the client
    "response_done",  # the reply text is complete
)
INTERNAL_METRICS_TYPE = "_turn_timeline"  # an internal message: the ingress records it, never sends it


@dataclass
class TurnTimeline:
    agent: str
    mode: str
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.marks.setdefault(stage, time.monotonic() if at is None else at)

    def ms(self) -> dict[str, float]:
        """Milliseconds of each stage after the end of speech (stages that did not happen are absent)."""
        start = self.marks.get("speech_end")
        if start is None:
            return {}
        return {stage: round((self.marks[stage] - start) * 1000, 1) for stage in STAGES[1:] if stage in self.marks}

    def durations(self) -> dict[str, float]:
        """The derived numbers operators look at: voice-to-voice and each stage's own share."""
        ms = self.ms()
        out: dict[str, float] = {}
        if "first_audio_sent" in ms:
            out["voice_to_voice_ms"] = ms["first_audio_sent"]
        if "transcript_final" in ms:
            out["stt_final_ms"] = ms["transcript_final"]
        if "llm_first_token" in ms and "transcript_final" in ms:
            out["llm_first_token_ms"] = round(ms["llm_first_token"] - ms["transcript_final"], 1)
        if "first_tts_chunk" in ms and "first_text_to_tts" in ms:
            out["tts_first_audio_ms"] = round(ms["first_tts_chunk"] - ms["first_text_to_tts"], 1)
        return out

    def log_line(self) -> str:
        parts = [f"agent={self.agent}", f"mode={self.mode}"]
        parts += [f"{k}={v:.0f}" for k, v in self.durations().items()]
        parts += [f"{k}@{v:.0f}" for k, v in self.ms().items()]
        return " ".join(parts)
