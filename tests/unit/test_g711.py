import numpy as np
import pytest

from speech import g711
from speech.audio import float_to_pcm16, pcm16_to_float


def _tone(seconds: float = 0.2, rate: int = g711.G711_RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return float_to_pcm16(0.5 * np.sin(2 * np.pi * 440 * t))


@pytest.mark.parametrize("law", g711.LAWS)
def test_round_trip_keeps_the_signal(law):
    pcm = _tone()
    coded = g711.encode(pcm, law)
    assert len(coded) == len(pcm) // 2  # one byte per sample
    back = pcm16_to_float(g711.decode(coded, law))
    original = pcm16_to_float(pcm)
    snr = 10 * np.log10(np.sum(original**2) / np.sum((original - back) ** 2))
    assert snr > 30  # G.711 gives about 38 dB on a loud tone


def test_the_two_laws_differ_and_silence_is_their_known_byte():
    silence = bytes(160)
    assert g711.encode(silence, "pcmu") == b"\xff" * 80
    assert g711.encode(silence, "pcma") == b"\xd5" * 80


def test_an_unknown_law_is_refused():
    with pytest.raises(ValueError, match="unknown G.711 law"):
        g711.decode(b"\x00", "g729")  # type: ignore[arg-type]
