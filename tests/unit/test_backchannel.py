from agents.backchannel import (
    DEFAULT_BACKCHANNELS,
    DEFAULT_NOISE_PHRASES,
    backchannel_words,
    could_become_backchannel,
    is_backchannel,
    is_noise,
    noise_phrases,
    words_of,
)

ALLOWED = backchannel_words(DEFAULT_BACKCHANNELS)


def test_backchannels_are_recognized_whatever_their_spelling():
    for text in ("Mhm.", "mhm", "Yeah.", "Okay, okay.", "Uh-huh.", "Right!", "I see.", "Got it."):
        assert is_backchannel(text, ALLOWED, 3), text


def test_real_words_and_long_runs_are_not_backchannels():
    for text in ("Wait, stop, I have a question.", "Yeah, but what about tomorrow?", "No.", "", "okay okay okay okay"):
        assert not is_backchannel(text, ALLOWED, 3), text


def test_so_far_nothing_heard_may_still_be_one():
    assert could_become_backchannel("", ALLOWED, 3) and could_become_backchannel("Yeah", ALLOWED, 3)
    assert not could_become_backchannel("Wait", ALLOWED, 3)


def test_the_list_is_configurable():
    allowed = backchannel_words(["jawohl", "uh-huh"])
    assert is_backchannel("Jawohl.", allowed, 2) and is_backchannel("uh huh", allowed, 2)
    assert not is_backchannel("Yeah.", allowed, 2)


def test_whisper_s_words_for_noise_are_no_words():
    phrases = noise_phrases(DEFAULT_NOISE_PHRASES)
    for heard in ("Thank you.", "you", "Bye.", "Thank you. Thank you.", "Ha ha ha!", "(coughs)", "[Music]", "*laughs*",
                  "...", "You you you", "Eeeeeeee...", "Ehhhhhh.", "Mmmmmm.", "Hmmmmmm?",
                  "Ah, ah, ah, ah, ah, ah,"):  # (the laugh of harness/noises.py, judged alone on the graph)
        assert is_noise(heard, phrases), heard
    for said in ("Wait, stop.", "Thank you, but stop.", "Bye, I have to go now.", "You are wrong.", "Ah, wait.", ""):
        assert not is_noise(said, phrases), said
    assert words_of("Uh-huh, (laughs) okay") == ["uh", "huh", "okay"]
