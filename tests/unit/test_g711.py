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


@pytest.mark.parametrize("law,rate", [("pcmu", 16_000), ("pcma", 24_000)])
def test_streams_through_the_converters_in_phone_frames(law, rate):
    """24/16 kHz PCM16 -> G.711 -> back, chunk by chunk in 20 ms frames: the tone and its length survive."""
    encoder, decoder = g711.G711Encoder(law, rate), g711.G711Decoder(law, rate)
    pcm = _tone(1.0, rate)
    frame = rate // 50 * 2
    coded = b"".join(encoder(pcm[i : i + frame]) for i in range(0, len(pcm), frame)) + encoder.flush()
    assert len(coded) == pytest.approx(g711.G711_RATE, abs=8)  # 1 s at 8 kHz, a byte a sample
    back = b"".join(decoder(coded[i : i + 160]) for i in range(0, len(coded), 160)) + decoder.flush()
    assert len(back) == pytest.approx(2 * rate, abs=2 * rate // 500)
    original, heard = pcm16_to_float(pcm)[rate // 10 : -rate // 10], pcm16_to_float(back)[rate // 10 : -rate // 10]
    assert np.max(np.abs(original - heard)) < 0.05  # aligned: the resamplers' delays are taken out by soxr


def test_stream_converters_by_format():
    assert isinstance(g711.stream_decoder("pcmu", pcm_rate=24_000, to_rate=16_000), g711.G711Decoder)
    assert isinstance(g711.stream_encoder("pcma", from_rate=24_000, pcm_rate=24_000), g711.G711Encoder)
    pcm = _tone(0.1, 24_000)
    assert g711.stream_encoder("pcm16", from_rate=24_000, pcm_rate=24_000)(pcm) == pcm  # nothing to convert


def test_the_decoder_hands_each_phone_frame_on_at_once():
    """A caller's 20 ms frame comes out of the 8 -> 16 kHz decoder when it goes in, not a block later: a click in a
    frame is in that frame's output (the Listener hears speech, and a barge-in starts, without waiting ~0.1 s)."""
    decoder = g711.G711Decoder("pcmu", 16_000)
    silence = g711.encode(bytes(320), "pcmu")
    for _ in range(10):
        assert len(decoder(silence)) >= 2 * 300  # about 20 ms of 16 kHz out for every 20 ms in
    click = g711.encode(float_to_pcm16(np.r_[np.zeros(80), 0.9 * np.ones(4), np.zeros(76)]), "pcmu")
    assert np.max(np.abs(pcm16_to_float(decoder(click)))) > 0.5
