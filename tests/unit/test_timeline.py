import pytest

from agents.timeline import TurnTimeline


def test_stages_relative_to_the_end_of_speech():
    t = TurnTimeline("a", "call")
    for stage, at in [("speech_end", 10.0), ("transcript_final", 10.2), ("llm_first_token", 10.5),
                      ("first_text_to_tts", 10.55), ("first_tts_chunk", 10.65), ("first_audio_sent", 10.7)]:
        t.mark(stage, at)
    t.mark("speech_end", 99.0)  # the first mark of a stage wins
    assert t.ms()["first_audio_sent"] == 700.0
    report = t.report()
    assert (report.voice_to_voice_ms, report.stt_final_ms, report.llm_first_token_ms, report.tts_first_audio_ms) == (
        700.0, 200.0, 300.0, 100.0)
    assert "voice_to_voice_ms=700" in t.log_line() and "agent=a" in t.log_line()


def test_unknown_stage_and_missing_start():
    t = TurnTimeline("a", "chat")
    with pytest.raises(ValueError):
        t.mark("lunch")
    t.mark("first_audio_sent", 1.0)
    report = t.report()
    assert t.ms() == {} and report.stages_ms == {}
    assert (report.voice_to_voice_ms, report.stt_final_ms, report.llm_first_token_ms, report.tts_first_audio_ms) == (
        None, None, None, None)
