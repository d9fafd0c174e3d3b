"""Non-speech sounds for the tests and benchmarks: a cough, a knock, a hum and a laugh, synthesized with numpy.

Each is 16 kHz mono PCM16 (bytes), made the same on every run (a fixed seed per sound), and loud (about -20 dBFS
RMS over its sounding part, well above the barge-in level of -42 dBFS), because the point is a sound that the
VAD may take for speech and that only its words (none) can tell from an interruption.

How each is made:
- ``cough()``: two explosive bursts (0.22 s and 0.16 s, 60 ms apart): white noise shaped in the frequency
  domain by a throat-like spectrum (broad resonances near 500 Hz, 1.4 kHz and 2.8 kHz, a tilt down above
  them), with a 5 ms attack and an exponential decay, and a short voiced tail (a 160 Hz buzz) as the glottis
  closes; ~0.5 s in all.
- ``knock()``: three knuckle knocks on a door, 0.2 s apart: each a sum of damped sinusoids (wood panel modes
  near 110, 240, 520 and 1100 Hz, decaying in 15-60 ms) started by a 3 ms click of noise; ~0.6 s.
- ``hum()``: a closed-mouth "mmm": a 150 Hz voice (a slight rise and fall and a 5 Hz vibrato) made of 30
  harmonics of falling strength, weighted by a nasal formant near 250 Hz and a weak one near 2.2 kHz, with a
  touch of breath noise, faded in and out; 1 s.
- ``laugh()``: "ha-ha-ha": five pulses at 5 Hz, each breathy "h" noise running into an open "a" vowel (formants
  near 800 and 1200 Hz) voiced at 240 Hz falling to 190 Hz over the laugh, every pulse a little weaker; ~1 s.

What the real models make of them (tiny.en via harness.speech.transcribe_pcm16k, Silero VAD v6 via
speech.vad.StreamingVad, 32 ms windows at probability >= 0.5), as run when this module was written:
(being measured; see the next commit)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from speech.audio import INPUT_RATE, float_to_pcm16

RATE = INPUT_RATE
LEVEL = 0.1  # RMS of a sound's loud part: -20 dBFS


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE)) / RATE


def _shaped_noise(rng: np.random.Generator, n: int, bands: list[tuple[float, float, float]], tilt_hz: float) -> np.ndarray:
    """White noise through a spectrum of Gaussian resonances ``(centre Hz, width Hz, gain)`` and a roll-off
    above ``tilt_hz``."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    shape = sum(gain * np.exp(-0.5 * ((freqs - centre) / width) ** 2) for centre, width, gain in bands)
    shape = shape / (1 + (freqs / tilt_hz) ** 2)
    return np.fft.irfft(spectrum * shape, n)


def _voiced(f0: np.ndarray, formants: list[tuple[float, float, float]], harmonics: int = 30) -> np.ndarray:
    """A voice with pitch track ``f0`` (Hz per sample): harmonics of falling strength weighted by formants
    ``(centre Hz, width Hz, gain)``."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    out = np.zeros_like(f0)
    for k in range(1, harmonics + 1):
        freq = k * f0
        weight = sum(g * np.exp(-0.5 * ((freq - c) / w) ** 2) for c, w, g in formants) + 0.02
        out += np.where(freq < RATE / 2 - 500, weight / k, 0.0) * np.sin(k * phase)
    return out


def _normalized(audio: np.ndarray, loud_from: float = 0.02) -> bytes:
    """Scaled so its sounding part (samples above ``loud_from`` of the peak's envelope) has RMS ``LEVEL``."""
    envelope = np.abs(audio)
    loud = audio[envelope > loud_from * envelope.max()]
    scaled = audio * (LEVEL / np.sqrt(np.mean(loud**2)))
    return float_to_pcm16(np.clip(scaled, -0.95, 0.95))


def cough() -> bytes:
    rng = np.random.default_rng(23_01)
    parts = []
    for length, strength in ((0.22, 1.0), (0.16, 0.7)):
        n = int(length * RATE)
        t = _t(length)
        burst = _shaped_noise(rng, n, [(500, 250, 1.0), (1400, 400, 0.8), (2800, 600, 0.4)], tilt_hz=3000)
        burst /= np.abs(burst).max()
        envelope = np.minimum(t / 0.005, 1.0) * np.exp(-t / (length / 4))
        tail = _voiced(np.full(n, 160.0), [(500, 300, 1.0)]) * np.exp(-((t - length * 0.6) / (length / 6)) ** 2) * 0.15
        parts += [strength * (burst * envelope + tail), np.zeros(int(0.06 * RATE))]
    return _normalized(np.concatenate([np.zeros(int(0.02 * RATE)), *parts]))


def knock() -> bytes:
    rng = np.random.default_rng(23_02)
    one = _t(0.2)
    modes = [(110, 0.060, 1.0), (240, 0.040, 0.8), (520, 0.025, 0.5), (1100, 0.015, 0.3)]
    out = []
    for strength in (1.0, 0.9, 0.95):
        detune = 1 + 0.01 * rng.standard_normal()
        ring = sum(g * np.exp(-one / d) * np.sin(2 * np.pi * f * detune * one + rng.uniform(0, 6.28))
                   for f, d, g in modes)
        click = np.zeros_like(one)
        click[: int(0.003 * RATE)] = rng.standard_normal(int(0.003 * RATE)) * 0.8
        out.append(strength * (ring + click))
    return _normalized(np.concatenate(out), loud_from=0.05)


def hum() -> bytes:
    rng = np.random.default_rng(23_03)
    t = _t(1.0)
    f0 = 150 + 12 * np.sin(np.pi * t) + 2.0 * np.sin(2 * np.pi * 5 * t)
    voice = _voiced(f0, [(250, 80, 1.0), (2200, 300, 0.15)])
    breath = _shaped_noise(rng, len(t), [(250, 150, 1.0)], tilt_hz=1000)
    audio = voice / np.abs(voice).max() + 0.03 * breath / np.abs(breath).max()
    fade = np.minimum(1.0, np.minimum(t / 0.08, (t[-1] - t) / 0.12))
    return _normalized(audio * fade)


def laugh() -> bytes:
    rng = np.random.default_rng(23_04)
    t = _t(1.0)
    f0 = 240 - 50 * t
    vowel = _voiced(f0, [(800, 150, 1.0), (1200, 200, 0.6), (2600, 300, 0.15)])
    vowel /= np.abs(vowel).max()
    breath = _shaped_noise(rng, len(t), [(900, 500, 1.0), (1800, 600, 0.5)], tilt_hz=4000)
    breath /= np.abs(breath).max()
    audio = np.zeros_like(t)
    for i in range(5):
        start = 0.02 + 0.2 * i
        local = t - start
        on = (local >= 0) & (local < 0.16)
        h = np.exp(-0.5 * ((local - 0.02) / 0.015) ** 2)  # the "h" of each "ha"
        a = np.clip(local / 0.03, 0, 1) * np.clip((0.16 - local) / 0.05, 0, 1)  # ... and its "a"
        audio += on * (0.9**i) * (0.5 * h * breath + a * (vowel + 0.15 * breath))
    return _normalized(audio)


NOISES: dict[str, Callable[[], bytes]] = {"cough": cough, "knock": knock, "hum": hum, "laugh": laugh}
