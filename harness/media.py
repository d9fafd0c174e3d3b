"""Compressed test audio made at test time with PyAV, as a browser's MediaRecorder would send it: a WebM,
Ogg or fragmented MP4 file cut into chunks. Ogg pages are flushed every 100 ms (a recorder with a short
timeslice), so a decoder sees the audio as it is spoken rather than once per second."""

from __future__ import annotations

import io

import av
import numpy as np

from speech.audio import INPUT_RATE

_CODECS = {"webm": "libopus", "ogg": "libopus", "mp4": "aac"}
_MUX_OPTIONS = {"ogg": {"page_duration": "100000"}, "mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                                            "frag_duration": "200000"}}


def compress(pcm16k: bytes, container: str, *, rate: int = 48_000) -> bytes:
    """16 kHz mono PCM16 -> one file of ``container`` (webm/ogg: Opus, mp4: AAC)."""
    out = io.BytesIO()
    with av.open(out, "w", format=container, options=_MUX_OPTIONS.get(container, {})) as file:
        stream = file.add_stream(_CODECS[container], rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate,
                                      frame_size=stream.codec_context.frame_size or None)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm16k, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = INPUT_RATE
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                file.mux(packet)
        for packet in stream.encode(None):
            file.mux(packet)
    return out.getvalue()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
