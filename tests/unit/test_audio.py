import numpy as np

from speech.audio import float_to_pcm16, pcm16_to_float, resample, silence_pcm16, split_pcm


def test_float_to_pcm16_clips_instead_of_wrapping():
    pcm = np.frombuffer(float_to_pcm16(np.array([1.7, -3.0, 0.5], dtype=np.float32)), dtype="<i2")
    assert pcm.tolist() == [32767, -32767, 16384]


def test_round_trip():
    x = np.array([0.0, 0.25, -0.5], dtype=np.float32)
    assert np.allclose(pcm16_to_float(float_to_pcm16(x)), x, atol=1e-4)


def test_resample_22050_to_24000_keeps_duration_and_pitch():
    t = np.arange(22050) / 22050
    y = resample(np.sin(2 * np.pi * 440 * t).astype(np.float32), 22050, 24000)
    assert len(y) == 24000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) - 440) <= 1


def test_split_and_silence():
    assert [len(f) for f in split_pcm(b"\x00" * 10, 4)] == [4, 4, 2]
    assert [len(f) for f in split_pcm(b"\x00" * 10, 5)] == [4, 4, 2]
    assert len(silence_pcm16(0.5, 24000)) == 24000
