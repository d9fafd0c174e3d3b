"""Smart Turn v3.2: an audio model that says whether the user has finished their turn.

Pipecat's end-of-turn model (a Whisper-tiny encoder and a classifier, 8 M parameters, int8 ONNX, BSD-2)
ships inside the ``pipecat-ai`` wheel. Only its model file is used: scripts/setup.sh installs the wheel
with ``--no-deps`` (its dependencies would pin soxr and protobuf against ours and add numba), the file is
found through the installed package's file list without importing ``pipecat``, and it runs on
onnxruntime, which the project already has. Nothing is downloaded.

Input: the last 8 s of the user's 16 kHz audio (zero-padded at the front when shorter), normalised to
zero mean and unit variance, as 80 Whisper log-mel bins x 800 frames (faster-whisper's own feature
extractor computes the same log-mel as Whisper's). Output: the probability that the turn is complete.
"""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from common.errors import CodedError
from protocol.pcm import INPUT_RATE

PACKAGE = "pipecat-ai"
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
SAMPLE_RATE = INPUT_RATE  # the model hears 16 kHz, as clients send
WINDOW_SECONDS = 8
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE


class TurnModelMissing(CodedError):
    default_code = "turn_model_missing"


def model_path() -> Path:
    """The ONNX file inside the installed ``pipecat-ai`` distribution (its RECORD; no import of pipecat)."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise TurnModelMissing(f"the end-of-turn model needs the {PACKAGE} wheel (scripts/setup.sh installs it "
                               "with --no-deps); turn_detection falls back to the timer") from exc
    for file in files:
        if file.name == MODEL_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise TurnModelMissing(f"{MODEL_FILE} is not in the installed {PACKAGE} package")


@lru_cache(maxsize=1)
def _features():  # type: ignore[no-untyped-def]
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 features of the last 8 s of ``audio`` (float32 16 kHz)."""
    audio = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
    if len(audio) < WINDOW_SAMPLES:
        audio = np.pad(audio, (WINDOW_SAMPLES - len(audio), 0))
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    return _features()(audio, padding=0)[:, : WINDOW_SAMPLES // 160].astype(np.float32)


class SmartTurn:
    """The model on onnxruntime: ``predict_batch`` takes windows of several streams in one run."""

    def __init__(self, path: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 1
        options.log_severity_level = 3
        self.path = path or model_path()
        self.session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                    providers=["CPUExecutionProvider"])

    def predict_batch(self, audios: list[np.ndarray]) -> list[float]:
        """The probability that each turn is complete (each: float32 16 kHz audio ending where it ends)."""
        if not audios:
            return []
        features = np.stack([log_mel(a) for a in audios])
        (probabilities,) = self.session.run(None, {"input_features": features})
        return [float(p) for p in np.asarray(probabilities).reshape(-1)]

    def predict(self, audio: np.ndarray) -> float:
        return self.predict_batch([audio])[0]
