"""Streaming Silero VAD (the ONNX model bundled with faster-whisper) on 32 ms windows of 16 kHz audio.

One ONNX session per process is shared by every stream; each stream keeps its own recurrent state and the
64-sample context the model expects before each 512-sample window. A window costs well under 1 ms on a CPU.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from protocol.pcm import INPUT_RATE

WINDOW = 512  # samples: 32 ms at 16 kHz
CONTEXT = 64
WINDOW_SECONDS = WINDOW / INPUT_RATE


@lru_cache(maxsize=1)
def _session():  # type: ignore[no-untyped-def]
    import onnxruntime
    from faster_whisper.vad import get_assets_path

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=options)


class StreamingVad:
    """Feed any number of samples; get one speech probability per completed 32 ms window."""

    def __init__(self) -> None:
        self.session = _session()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros((1, CONTEXT), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def process(self, samples: np.ndarray) -> list[float]:
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        full = len(audio) // WINDOW * WINDOW
        self._pending = audio[full:]
        probs: list[float] = []
        for start in range(0, full, WINDOW):
            window = audio[start : start + WINDOW][None, :]
            out, self._h, self._c = self.session.run(
                None, {"input": np.concatenate([self._context, window], axis=1), "h": self._h, "c": self._c}
            )
            self._context = window[:, -CONTEXT:]
            probs.append(float(np.asarray(out).reshape(-1)[0]))
        return probs
