from agents.speech_timeline import SpeechTimeline, truncated
from speech.segmenter import split_sentences


def test_split_sentences():
    assert split_sentences("Hi! How are you? I'm fine.") == ["Hi!", "How are you?", "I'm fine."]
    assert split_sentences("Dr. Smith paid $3.50 today. Thanks") == ["Dr. Smith paid $3.50 today.", "Thanks"]
    assert split_sentences("Line one\nLine two") == ["Line one", "Line two"]
    assert split_sentences('He said "stop." Then left...') == ['He said "stop."', "Then left..."]
    assert split_sentences("   ") == []


def test_heard_text():
    t = SpeechTimeline()
    for text, seconds in [("", 0.5), ("Hello there.", 1.0), ("How are you today?", 2.0)]:
        t.add(text, 0.0)
        t.extend_last(seconds)
    assert t.heard_text(0.2) == ("", False)
    assert t.heard_text(1.5) == ("Hello there.", False)
    assert t.heard_text(2.5) == ("Hello there. How are", False)
    assert t.heard_text(10.0) == ("Hello there. How are you today?", False)  # not complete yet
    t.complete = True
    assert t.heard_text(10.0) == ("Hello there. How are you today?", True)


def test_unsynthesized_text_is_not_heard():
    t = SpeechTimeline()
    t.add("First.", 0.0)
    t.extend_last(0.5)
    t.add("Second sentence.", 0.0)  # synthesis still running
    assert t.heard_text(5.0) == ("First.", False)


def test_truncated():
    assert truncated("Hello") == "Hello... (interrupted)"
    assert truncated("") == "... (interrupted)"
