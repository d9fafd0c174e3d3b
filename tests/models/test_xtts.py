"""The XTTS backend on a tiny XTTS-v2 with random weights (harness/xtts.py): coqui-tts's real tokenizer,
checkpoint loading, GPT streaming and HiFiGAN decoder run; only the weights are made up, so the audio is noise.

The random model never emits its stop token: every sentence is 24 GPT tokens (~1.1 s). The backends here
use 4-token first chunks and 8-token chunks after that, and one torch thread (a busy 2-core machine runs
one thread several times faster than two).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("TTS", reason="scripts/test.sh installs the XTTS backend (scripts/setup.sh --with-xtts)")
import torch

from harness.xtts import MODEL_ARGS, SPEAKERS, cached_random_xtts
from speech.audio import OUTPUT_RATE
from speech.xtts import XttsBackend

TEXT = "The quick brown fox jumps over the lazy dog near the quiet river bank today."  # 15 words
TOKENS = MODEL_ARGS["tiny"]["gpt_max_audio_tokens"] - 3  # what the random model always generates
FIRST, CHUNK = 4, 8
OPTIONS = {"stream_chunk_size": CHUNK, "first_chunk_size": FIRST, "threads": 1}


@pytest.fixture(scope="module")
def files():
    return cached_random_xtts("tiny")


@pytest.fixture(scope="module")
def backend(files):
    threads = torch.get_num_threads()
    yield XttsBackend(**files, language="en", **OPTIONS)
    torch.set_num_threads(threads)  # the setting is process-wide: give other tests theirs back


def render(backend: XttsBackend, text: str = TEXT, voice: str | None = None, speed: float = 1.0, seed: int = 0):
    torch.manual_seed(seed)  # XTTS samples its tokens
    return list(backend.synthesize(text, voice, speed))


@pytest.fixture(scope="module")
def neutral(backend) -> list[np.ndarray]:
    return render(backend)


class GptSteps:
    """Counts the GPT's generation steps (forward calls of coqui-tts's inference model)."""

    def __init__(self, backend: XttsBackend):
        self.count = 0
        self._hook = backend._model.gpt.gpt_inference.register_forward_hook(self._step)

    def _step(self, *_):
        self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self._hook.remove()


def test_fixture_files_have_xtts_formats(files):
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    tokenizer = VoiceBpeTokenizer(vocab_file=files["tokenizer"])
    assert tokenizer.decode(tokenizer.encode("Hello, world", lang="en")) == "[en]hello, world"
    assert json.loads(files["config"].read_text())["model_args"]["gpt_layers"] == 2
    voices = torch.load(files["voices"], weights_only=True)
    assert list(voices) == list(SPEAKERS)
    for latents in voices.values():
        assert latents["gpt_cond_latent"].shape == (1, 32, MODEL_ARGS["tiny"]["gpt_n_model_channels"])
        assert latents["speaker_embedding"].shape == (1, 512, 1)
    assert not torch.equal(voices[SPEAKERS[0]]["gpt_cond_latent"], voices[SPEAKERS[1]]["gpt_cond_latent"])


def test_loads_voices_from_the_files(backend):
    assert backend.voices() == list(SPEAKERS)
    assert backend.default_voice == "neutral_speaker"
    assert backend.output_rate == OUTPUT_RATE


def test_streams_several_float32_chunks_at_24khz(neutral):
    assert len(neutral) == 1 + -(-(TOKENS - FIRST) // CHUNK)  # 4, then 8 at a time: 4 chunks
    for chunk in neutral:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.size > 0
        assert np.isfinite(chunk).all()
    audio = np.concatenate(neutral)
    assert np.abs(audio).max() > 0
    # TOKENS tokens of 1024 samples at 22.05 kHz, rendered at 24 kHz
    assert len(audio) / OUTPUT_RATE == pytest.approx(TOKENS * 1024 / 22050, rel=0.03)
    assert neutral[0].size < neutral[1].size  # the smaller first chunk


def test_chunks_are_yielded_while_the_model_generates(backend):
    with GptSteps(backend) as steps:
        stream = backend.synthesize(TEXT, None, 1.0)
        assert steps.count == 0  # nothing runs before the first chunk is asked for
        next(stream)
        assert steps.count == FIRST
        next(stream)
        assert steps.count == FIRST + CHUNK
        stream.close()


def test_closing_the_stream_stops_generation(backend):
    with GptSteps(backend) as steps:
        stream = backend.synthesize(TEXT, "warm_speaker", 1.0)
        next(stream)
        started = time.perf_counter()
        stream.close()
        closed_in = time.perf_counter() - started
        with pytest.raises(StopIteration):
            next(stream)
        assert steps.count == FIRST  # of TOKENS
    assert closed_in < 0.5


def test_same_chunks_as_coqui_inference_stream(backend):
    backend.first_chunk_size = CHUNK  # one chunk size, as upstream
    try:
        ours = render(backend, voice="excited_speaker")
    finally:
        backend.first_chunk_size = FIRST
    latent, embedding = backend._voices["excited_speaker"]
    torch.manual_seed(0)
    upstream = backend._model.inference_stream(
        TEXT, "en", latent, embedding, stream_chunk_size=CHUNK, **backend._sampling()
    )
    theirs = [chunk.numpy() for chunk in upstream]
    assert len(ours) > 2 and [len(c) for c in ours] == [len(c) for c in theirs]
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


def test_speakers_sound_different(backend, neutral):
    neutral = np.concatenate(neutral)
    again = np.concatenate(render(backend, voice="neutral_speaker"))
    warm = np.concatenate(render(backend, voice="warm_speaker"))
    np.testing.assert_array_equal(neutral, again)  # same voice, same seed: same audio
    assert len(warm) == len(neutral)
    assert np.abs(warm - neutral).mean() > 0.1 * np.abs(neutral).mean()


def test_unknown_voice_raises_key_error_naming_it(backend):
    with pytest.raises(KeyError, match="nobody") as error:
        backend.synthesize(TEXT, "nobody", 1.0)
    assert "neutral_speaker" in str(error.value) and "excited_speaker" in str(error.value)


def test_speed_scales_duration(backend, neutral):
    normal = sum(chunk.size for chunk in neutral)
    fast = sum(chunk.size for chunk in render(backend, speed=2.0))
    slow = sum(chunk.size for chunk in render(backend, speed=0.8))
    assert fast / normal == pytest.approx(1 / 2.0, rel=0.08)
    assert slow / normal == pytest.approx(1 / 0.8, rel=0.08)


def test_empty_text_yields_nothing(backend):
    assert render(backend, text="   ") == []


def test_interleaved_streams_do_not_mix(backend):
    # top_k=1 makes generation deterministic, so each stream's audio can be compared with itself alone.
    top_k, backend.config.top_k = backend.config.top_k, 1
    try:
        requests = [("Hello there.", "warm_speaker"), (TEXT, None)]  # different lengths of text prefix
        alone = [np.concatenate(render(backend, text, voice)) for text, voice in requests]
        streams = {i: backend.synthesize(text, voice, 1.0) for i, (text, voice) in enumerate(requests)}
        mixed: dict[int, list[np.ndarray]] = {i: [] for i in streams}
        while streams:
            for i, stream in list(streams.items()):  # one chunk from each in turn
                chunk = next(stream, None)
                if chunk is None:
                    del streams[i]
                else:
                    mixed[i].append(chunk)
    finally:
        backend.config.top_k = top_k
    for i, expected in enumerate(alone):
        assert len(mixed[i]) > 1
        np.testing.assert_allclose(np.concatenate(mixed[i]), expected, rtol=1e-5, atol=1e-6)


def test_stream_can_be_resumed_from_worker_threads(backend, neutral):
    # The Synthesizer pulls each chunk from whichever worker thread is free.
    torch.manual_seed(0)
    stream = backend.synthesize(TEXT, None, 1.0)
    got = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        while (chunk := pool.submit(next, stream, None).result()) is not None:
            got.append(chunk)
            assert not torch.is_inference_mode_enabled()  # nothing leaks into the caller's thread
    assert len(got) == len(neutral)
    np.testing.assert_array_equal(np.concatenate(got), np.concatenate(neutral))


def test_missing_file_is_named(files, tmp_path):
    with pytest.raises(FileNotFoundError, match="voices"):
        XttsBackend(**{**files, "voices": tmp_path / "missing.pth"})
