"""The latency timeline of one turn: when each stage happened, relative to the end of the user's speech."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.clock import MONOTONIC, Clock

STAGES = (
    "speech_end",  # end of the user's speech: VAD end in call mode, create_response in chat mode
    "transcript_final",  # the settled transcript is known
    "llm_first_token",  # the reply's first text (the echo agent: its whole text)
    "first_text_to_tts",  # the first piece of text handed to the synthesizer
    "first_tts_chunk",  # the synthesizer's first audio
    "first_audio_sent",  # the first reply audio frame emitted to the client
    "response_done",  # the reply text is complete
)


@dataclass(frozen=True)
class TurnReport:
    """What one answered turn reports to the operator's metrics (not a client message): the stage times in
    ms after the end of speech, and the derived numbers (None when that stage did not happen)."""

    agent: str
    mode: str
    stages_ms: dict[str, float]
    voice_to_voice_ms: float | None = None  # end of speech -> first reply audio frame sent
    stt_final_ms: float | None = None  # end of speech -> settled transcript
    llm_first_token_ms: float | None = None  # settled transcript -> the reply's first text
    tts_first_audio_ms: float | None = None  # first text handed to TTS -> its first audio
    speech_id: str | None = None  # the reply's speech (its assistant message id), for a client's latency view
    tool_ms: float | None = None  # time spent waiting for server-side tool calls (all rounds), None: no tools
    reopened: bool = False  # the user went on within the resume window: the turn answered is a reopened one
    speculation: str | None = None  # "hit": the reply started before the turn ended was used; "miss"; None: none
    discarded_llm_calls: int = 0  # speculative LLM calls dropped since the previous report (their cost) ...
    discarded_llm_tokens: int = 0  # ... the text pieces (about tokens) they had streamed
    discarded_tts_s: float = 0.0  # ... and the seconds of speech they had synthesized


@dataclass
class TurnTimeline:
    agent: str
    mode: str
    marks: dict[str, float] = field(default_factory=dict)
    tool_ms: float | None = None
    reopened: bool = False
    speculation: str | None = None
    discarded: tuple[int, int, float] = (0, 0, 0.0)  # speculation's cost: LLM calls, tokens, synthesis seconds
    clock: Clock = field(default=MONOTONIC, repr=False, compare=False)

    def add_tool_time(self, ms: float) -> None:
        self.tool_ms = round((self.tool_ms or 0.0) + ms, 1)

    def mark(self, stage: str, at: float | None = None) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.marks.setdefault(stage, self.clock.now() if at is None else at)

    def ms(self) -> dict[str, float]:
        """Milliseconds of each stage after the end of speech (stages that did not happen are absent)."""
        start = self.marks.get("speech_end")
        if start is None:
            return {}
        return {stage: round((self.marks[stage] - start) * 1000, 1) for stage in STAGES[1:] if stage in self.marks}

    def report(self) -> TurnReport:
        """The derived numbers operators look at: voice-to-voice and each stage's own share."""
        ms = self.ms()

        def between(start: str, end: str) -> float | None:
            return round(ms[end] - ms[start], 1) if start in ms and end in ms else None

        return TurnReport(self.agent, self.mode, ms, voice_to_voice_ms=ms.get("first_audio_sent"),
                          stt_final_ms=ms.get("transcript_final"),
                          llm_first_token_ms=between("transcript_final", "llm_first_token"),
                          tts_first_audio_ms=between("first_text_to_tts", "first_tts_chunk"), tool_ms=self.tool_ms,
                          reopened=self.reopened, speculation=self.speculation, discarded_llm_calls=self.discarded[0],
                          discarded_llm_tokens=self.discarded[1], discarded_tts_s=round(self.discarded[2], 2))

    def log_line(self) -> str:
        report = self.report()
        durations = {"voice_to_voice_ms": report.voice_to_voice_ms, "stt_final_ms": report.stt_final_ms,
                     "llm_first_token_ms": report.llm_first_token_ms, "tts_first_audio_ms": report.tts_first_audio_ms,
                     "tool_ms": report.tool_ms}
        parts = [f"agent={self.agent}", f"mode={self.mode}"]
        parts += [f"{k}={v:.0f}" for k, v in durations.items() if v is not None]
        parts += ["reopened"] if self.reopened else []
        parts += [f"speculation={self.speculation}"] if self.speculation else []
        parts += [f"discarded_llm_calls={self.discarded[0]}"] if self.discarded[0] else []
        parts += [f"{k}@{v:.0f}" for k, v in report.stages_ms.items()]
        return " ".join(parts)
