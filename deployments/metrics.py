"""Ray Serve custom metrics of the voice pipeline (Prometheus through Ray's metrics export).

Recorded in the Ingress replica, which gets every turn's TurnReport from the session hosts (beside, never
among, the client's messages) and sees every error sent to a client. Names get Ray's ``ray_`` prefix in Prometheus, e.g.
``ray_voi_voice_to_voice_ms_bucket``.
"""

from __future__ import annotations

from ray.serve import metrics

from agents.timeline import TurnReport

_MS_BUCKETS = [25, 50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000]


class VoiMetrics:
    def __init__(self) -> None:
        tags = ("agent", "mode")
        self.voice_to_voice = metrics.Histogram(
            "voi_voice_to_voice_ms", "End of user speech to the first reply audio frame sent (ms).", _MS_BUCKETS, tags)
        self.stt_final = metrics.Histogram(
            "voi_stt_final_ms", "End of user speech to the settled transcript (ms).", _MS_BUCKETS, tags)
        self.llm_first_token = metrics.Histogram(
            "voi_llm_first_token_ms", "Settled transcript to the reply's first token (ms).", _MS_BUCKETS, tags)
        self.tts_first_audio = metrics.Histogram(
            "voi_tts_first_audio_ms", "First text sent to TTS to its first audio chunk (ms).", _MS_BUCKETS, tags)
        self.tool = metrics.Histogram(
            "voi_tool_ms", "Time a turn waited for its server-side tool calls, all rounds (ms).", _MS_BUCKETS, tags)
        self.turns = metrics.Counter("voi_turns_total", "Turns answered.", tags)
        self.reopened = metrics.Counter(
            "voi_turns_reopened_total", "Turns answered after the user went on within the resume window.", tags)
        self.speculations = metrics.Counter(
            "voi_speculations_total", "Replies started before the end of the turn, by outcome (hit, miss).",
            (*tags, "outcome"))
        self.discarded_llm_calls = metrics.Counter(
            "voi_speculation_discarded_llm_calls_total", "LLM calls of dropped speculations.", tags)
        self.discarded_tts = metrics.Counter(
            "voi_speculation_discarded_tts_seconds_total", "Seconds of speech synthesized by dropped speculations.", tags)
        self.errors = metrics.Counter("voi_errors_total", "Error messages sent to clients, by kind.", ("kind",))
        self.sessions = metrics.Gauge("voi_active_sessions", "Open websocket sessions on this ingress replica.")
        self._open = 0

    def record_turn(self, report: TurnReport) -> None:
        tags = {"agent": report.agent, "mode": report.mode}
        for histogram, value in ((self.voice_to_voice, report.voice_to_voice_ms), (self.stt_final, report.stt_final_ms),
                                 (self.llm_first_token, report.llm_first_token_ms),
                                 (self.tts_first_audio, report.tts_first_audio_ms), (self.tool, report.tool_ms)):
            if value is not None:
                histogram.observe(value, tags=tags)
        self.turns.inc(tags=tags)
        if report.reopened:
            self.reopened.inc(tags=tags)
        if report.speculation is not None:
            self.speculations.inc(tags={**tags, "outcome": report.speculation})
        if report.discarded_llm_calls:
            self.discarded_llm_calls.inc(report.discarded_llm_calls, tags=tags)
        if report.discarded_tts_s:
            self.discarded_tts.inc(report.discarded_tts_s, tags=tags)

    def record_error(self, kind: str) -> None:
        self.errors.inc(tags={"kind": kind or "unknown"})

    def session_opened(self) -> None:
        self._open += 1
        self.sessions.set(self._open)

    def session_closed(self) -> None:
        self._open = max(0, self._open - 1)
        self.sessions.set(self._open)
