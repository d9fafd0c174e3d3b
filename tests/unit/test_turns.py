from agents.turns import TurnConfig, VoiceActivity, end_of_turn, ends_sentence
from speech.vad import WINDOW_SECONDS

CFG = TurnConfig()


def feed(activity: VoiceActivity, probability: float, seconds: float) -> list[str]:
    events = []
    for _ in range(round(seconds / WINDOW_SECONDS)):
        event = activity.update(probability)
        if event:
            events.append(event)
    return events


def test_one_noisy_window_does_not_start_an_utterance():
    activity = VoiceActivity(CFG)
    assert feed(activity, 0.9, WINDOW_SECONDS) == []
    assert feed(activity, 0.1, 0.5) == []
    assert not activity.heard_speech


def test_utterance_start_and_end_with_hysteresis():
    activity = VoiceActivity(CFG)
    assert feed(activity, 0.9, 0.5) == ["start"]
    assert feed(activity, 0.4, 1.0) == []  # between the thresholds: still speaking
    assert feed(activity, 0.1, 0.1) == []
    assert feed(activity, 0.1, 0.15) == ["end"]
    assert activity.heard_speech and not activity.speaking


def test_end_of_turn_waits_longer_without_a_complete_sentence():
    activity = VoiceActivity(CFG)
    feed(activity, 0.9, 1.0)
    feed(activity, 0.0, 0.35)
    assert not end_of_turn(activity, "I would like to", CFG)
    assert end_of_turn(activity, "I would like a coffee.", CFG)
    feed(activity, 0.0, 0.4)
    assert end_of_turn(activity, "I would like to", CFG)


def test_no_turn_without_speech():
    activity = VoiceActivity(CFG)
    feed(activity, 0.0, 5.0)
    assert not end_of_turn(activity, "", CFG)


def test_ends_sentence():
    assert ends_sentence("Really?") and ends_sentence("Yes. ") and not ends_sentence("well,")


def test_model_decides_the_end_of_turn():
    cfg = TurnConfig(turn_detection="model", turn_complete_threshold=0.5, turn_punctuation_threshold=0.3,
                     turn_max_wait_s=2.0)
    activity = VoiceActivity(cfg)
    feed(activity, 0.9, 1.0)
    feed(activity, 0.0, 0.25)  # the utterance just ended
    assert end_of_turn(activity, "I would like a coffee", cfg, complete=0.9)  # confident: at once
    assert not end_of_turn(activity, "I would like a coffee", cfg, complete=0.4)
    assert end_of_turn(activity, "I would like a coffee.", cfg, complete=0.4)  # punctuation lowers the bar
    assert not end_of_turn(activity, "I would like a coffee,", cfg, complete=0.9)  # ... a comma holds it
    assert not end_of_turn(activity, "I would like a coffee.", cfg, complete=None, pending=True)  # answer on its way
    # The model answered before the utterance's last words were transcribed: its words decide, once settled.
    assert not end_of_turn(activity, "She said that", cfg, complete=0.93, settled=False)
    assert not end_of_turn(activity, "She said that the", cfg, complete=0.93, settled=True)
    feed(activity, 0.0, 1.0)  # the timer alone would have ended it by now
    assert not end_of_turn(activity, "I would like a coffee", cfg, complete=0.1)
    feed(activity, 0.0, 0.8)
    assert end_of_turn(activity, "I would like a coffee", cfg, complete=0.1)  # the maximum wait
    assert not end_of_turn(VoiceActivity(cfg), "", cfg, complete=0.99)  # nobody spoke


def test_timer_decides_without_a_model_answer():
    cfg = TurnConfig(turn_detection="model")
    activity = VoiceActivity(cfg)
    feed(activity, 0.9, 1.0)
    feed(activity, 0.0, 0.75)
    assert end_of_turn(activity, "I would like to", cfg, complete=None, pending=False)
    timer = TurnConfig(turn_detection="timer")
    assert end_of_turn(activity, "I would like to", timer, complete=0.0)  # the model's answer is not asked for


def test_a_transcript_ending_on_a_dangling_word_is_unfinished():
    cfg = TurnConfig(turn_detection="model")
    activity = VoiceActivity(cfg)
    feed(activity, 0.9, 1.0)
    feed(activity, 0.0, 0.25)
    for unfinished in ("I would like to book a table for.", "My name is John and", "Could you tell me the way to the..."):
        assert not end_of_turn(activity, unfinished, cfg, complete=0.95), unfinished
    assert end_of_turn(activity, "I would like to book a table for four.", cfg, complete=0.95)
    assert end_of_turn(activity, "Who is it for?", cfg, complete=0.95)  # a question is a question


def test_the_phone_profile_goes_over_the_server_settings_and_under_an_agent_s():
    from agents.turns import PHONE_PROFILE

    server = TurnConfig(turn_max_wait_s=3.0)
    phone = server.for_phone()
    assert phone.turn_max_wait_s == 3.0 and PHONE_PROFILE
    assert all(getattr(phone, key) == value for key, value in PHONE_PROFILE.items())
    assert phone.turn_complete_threshold > server.turn_complete_threshold  # narrowband audio sounds finished sooner
    assert phone.with_agent({"turn_complete_threshold": 0.6}).turn_complete_threshold == 0.6


def test_a_phone_line_listens_with_the_phone_profile():
    """A transport whose caller audio is narrowband (Twilio, /v1/realtime with G.711 input) sets Init.narrowband;
    the conversation's Listener and barge-in then judge turns with TurnConfig.for_phone()."""
    from agents.turns import PHONE_PROFILE
    from protocol import messages as m
    from tests.unit.helpers import make

    phone, _ = make(init=m.Init(agent_name="echo", init_greeting=False, mode="call", narrowband=True))
    wide, _ = make(init=m.Init(agent_name="echo", init_greeting=False, mode="call"))
    assert phone._listener.config.turn_complete_threshold == PHONE_PROFILE["turn_complete_threshold"]
    assert wide._listener.config.turn_complete_threshold == TurnConfig().turn_complete_threshold != PHONE_PROFILE["turn_complete_threshold"]


def test_a_finished_sentence_ends_the_turn_after_sentence_max_wait_whatever_the_model_says():
    cfg = TurnConfig(sentence_max_wait_s=0.6, turn_max_wait_s=2.0)
    activity = VoiceActivity(cfg, heard_speech=True, silence_s=0.64)
    assert end_of_turn(activity, "I would like a table for four.", cfg, complete=0.1)  # the model hesitates
    assert end_of_turn(activity, "I would like a table for four.", cfg, pending=True)  # ... or has not answered
    assert not end_of_turn(activity, "I would like a table for", cfg, complete=0.1)  # not a sentence: it waits
    assert not end_of_turn(activity, "My name is John and.", cfg, complete=0.1)  # a dangling word: it waits
    assert not end_of_turn(activity, "I would like a table for four.", cfg, complete=0.1, settled=False)
    early = VoiceActivity(cfg, heard_speech=True, silence_s=0.32)
    assert not end_of_turn(early, "I would like a table for four.", cfg, complete=0.1)
