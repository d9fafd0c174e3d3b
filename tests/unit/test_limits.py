"""What one client may send and hold (protocol/limits.py, common/rate.py), the JSON parser for strangers
(common/safe_json.py) and client strings in log lines (common/log_text.py)."""

import pytest

from common.log_text import has_control_characters, printable
from common.rate import TokenBucket
from common.safe_json import JsonRefused, parse_json
from protocol import messages as m
from protocol.framing import FrameError
from protocol.limits import Admission, AdmissionLimits, AdmissionRefused, ClientLimits, SocketRates, check_message


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spends_its_burst_then_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=4.0, clock=clock)
    assert all(bucket.take() for _ in range(4)) and not bucket.take()
    clock.now = 0.5
    assert bucket.take() and not bucket.take()
    clock.now = 100.0
    assert bucket.level == 1.0  # never more than the burst
    assert not bucket.take(5.0) and bucket.take(4.0)


def test_socket_rates_report_one_error_per_episode():
    clock = Clock()
    rates = SocketRates(ClientLimits(messages_per_s=10, message_burst=4, audio_speed=2.0, audio_burst_s=1.0))
    rates._messages.clock = rates._audio.clock = clock  # noqa: SLF001 (a test clock)
    rates._messages._at = rates._audio._at = 0.0  # noqa: SLF001
    verdicts = [rates.admit_message() for _ in range(10)]
    assert [ok for ok, _ in verdicts] == [True] * 4 + [False] * 6
    errors = [e.code for _, e in verdicts if e is not None]
    assert errors == ["too_many_messages"]
    clock.now = 0.05  # half a message back: still the same episode
    assert rates.admit_message() == (False, None)
    clock.now = 1.0  # the burst is back: a new episode may be reported
    assert rates.admit_message()[0]
    assert all(rates.admit_message()[0] for _ in range(3))
    ok, error = rates.admit_message()
    assert not ok and error is not None and error.code == "too_many_messages"
    # audio: 1 s at once, then 2 s of audio per second
    second = 32_000
    assert rates.admit_audio(second)[0]
    ok, error = rates.admit_audio(8192)
    assert not ok and error.code == "audio_too_fast"
    assert [rates.admit_audio(8192) for _ in range(50)] == [(False, None)] * 50  # a flood: no more errors
    clock.now = 1.2  # 0.4 s of audio back
    assert rates.admit_audio(8192)[0]


def test_message_sizes():
    limits = ClientLimits(max_text_chars=5, max_image_url_chars=30)
    check_message(m.Text("12345"), limits)
    with pytest.raises(FrameError) as info:
        check_message(m.Text("123456"), limits)
    assert info.value.code == "text_too_long" and "123456" not in str(info.value)
    with pytest.raises(FrameError) as info:
        check_message(m.ImageUrl("data:image/png;base64," + "A" * 20), limits)
    assert info.value.code == "image_too_large"
    check_message(m.Audio(b"\x00" * 64_000), limits)


def test_admission_caps_an_app_and_the_handshakes():
    admission = Admission(AdmissionLimits(max_sessions_per_app=3, max_pending=4, max_pending_per_app=2))
    admission.enter("a")
    admission.enter("a")
    with pytest.raises(AdmissionRefused) as info:  # two of a's sockets are in their handshake
        admission.enter("a")
    assert info.value.code == "server_busy" and info.value.close_code == 1013
    admission.started("a")
    admission.enter("a")  # one started, two pending: three in all
    with pytest.raises(AdmissionRefused) as info:
        admission.enter("a")
    assert info.value.code == "too_many_sessions" and info.value.close_code == 1008
    admission.enter("b")
    admission.enter("c")
    assert admission.pending == 4
    with pytest.raises(AdmissionRefused) as info:  # every handshake slot is taken
        admission.enter("d")
    assert info.value.code == "server_busy"
    for app in ("a", "a", "b", "c"):
        admission.started(app)
    for app in ("a", "a", "a", "b", "c"):
        admission.left(app)
    assert admission.pending == 0 and admission.sessions_of("a") == 0 and not admission._by_app  # noqa: SLF001


@pytest.mark.parametrize("text, why", [
    ("[" * 100_000, "deeper"),
    ('{"a":' * 100_000, "deeper"),
    ("[" * 33 + "]" * 33, "deeper"),
    ("9" * 5000, "too long"),
    ("{nope", "not valid JSON"),
    (b"\xff\xfe", "UTF-8"),
])
def test_parse_json_refuses_hostile_input_with_a_plain_reason(text, why):
    with pytest.raises(JsonRefused, match=why):
        parse_json(text)


def test_parse_json_takes_what_is_fine():
    assert parse_json(b'{"a":[1,2,{"b":null}],"n":1e3}') == {"a": [1, 2, {"b": None}], "n": 1000.0}
    assert parse_json("[" * 32 + "]" * 32) is not None


def test_printable_escapes_what_could_forge_a_log_line():
    assert printable("a\nINFO forged") == "a\\nINFO forged"
    assert printable("x\r\x1b[31m\u2028") == "x\\r\\x1b[31m\\u2028"
    assert printable("Zoë 日本") == "Zoë 日本"
    assert printable("y" * 100, limit=10) == "y" * 10 + "..."
    assert "\n" not in printable("\n" * 50)


def test_control_characters_are_found():
    assert has_control_characters("a\nb") and has_control_characters("\x7f") and has_control_characters("\u2028")
    assert not has_control_characters("my-app 2 (prod) ünïcode")
