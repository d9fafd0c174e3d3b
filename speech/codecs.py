"""Compressed audio through PyAV (FFmpeg in its wheel, already installed for faster-whisper).

Browsers record with MediaRecorder, which writes WebM/Opus (Chrome, Firefox), Ogg/Opus (Firefox) or
fragmented MP4/AAC (Safari) as a file that grows while the user talks. ``StreamDecoder`` decodes such a file
while it arrives: FFmpeg's demuxers pull bytes, so each stream gets its own thread whose reads block until
the next chunk comes, and the 16 kHz mono PCM16 it decodes is handed back to the event loop as it is made,
so partial transcripts keep streaming. Nothing blocks the caller's loop. ``encode_ogg_opus`` and
``decode_file`` serve whole files (the Ogg replies of ``stream_output_audio: false``, recordings).
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections import deque
from collections.abc import Callable

import av
import numpy as np

from common.errors import CodedError
from speech.audio import INPUT_RATE, float_to_pcm16

log = logging.getLogger("voi.codecs")
av.logging.set_level(None)  # FFmpeg's own messages would go to stderr, once per bad packet: errors are raised instead

CONTAINERS = {"webm": "webm", "ogg": "ogg", "mp4": "mp4"}  # input_audio_format -> FFmpeg demuxer
NO_AUDIO_LIMIT_BYTES = 64 * 1024  # this much of a stream without one decoded sample: it is not audio
_OPEN_OPTIONS = {"probesize": "32", "analyzeduration": "0"}  # start decoding at once, do not wait to analyse


class BadAudio(CodedError, ValueError):
    default_code = "bad_audio"


class _Pipe:
    """A file-like reader for FFmpeg whose ``read`` blocks until the producer writes or ends the stream."""

    def __init__(self, on_starve: Callable[[], None]) -> None:
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._ended = False
        self._on_starve = on_starve  # called before a read waits: all that arrived so far has been decoded

    def write(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify()

    def abort(self) -> None:
        with self._cond:
            self._chunks.clear()
            self._ended = True
            self._cond.notify()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            starving = not self._chunks and not self._ended
        if starving:
            self._on_starve()
        with self._cond:
            while not self._chunks and not self._ended:
                self._cond.wait()
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            if 0 <= size < len(chunk):
                self._chunks.appendleft(chunk[size:])
                chunk = chunk[:size]
            return chunk


class StreamDecoder:
    """One compressed stream (``container``: webm, ogg or mp4) decoded to 16 kHz mono PCM16 as it arrives.

    ``write`` the stream's bytes as they come and ``end`` it; ``read`` returns the next decoded PCM (None once
    the stream is over) and raises BadAudio when the bytes are not a stream FFmpeg can decode. Created on the
    event loop that reads it."""

    def __init__(self, container: str) -> None:
        if container not in CONTAINERS:
            raise ValueError(f"unknown container {container!r}")
        self.container = container
        self.written = 0
        self.decoded = 0  # PCM bytes made so far
        self._loop = asyncio.get_running_loop()
        self._out: asyncio.Queue[bytes | BadAudio | None] = asyncio.Queue()
        self._held: list[BadAudio | None] = []  # the end of the stream (or its error) after PCM, for the next read
        self._decoded: list[bytes] = []  # decoder thread only: PCM not yet handed over
        self._pipe = _Pipe(on_starve=self._hand_over)
        self._thread = threading.Thread(target=self._run, name=f"decode-{container}", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self._pipe.write(data)

    def end(self) -> None:
        self._pipe.end()

    def abort(self) -> None:
        """Stop decoding now (the session closed): the thread sees the end of the stream and exits."""
        self._pipe.abort()

    @property
    def silent_too_long(self) -> bool:
        """So many bytes and not one sample decoded: the stream is not audio (a demuxer may search forever)."""
        return self.decoded == 0 and self.written > NO_AUDIO_LIMIT_BYTES

    async def read(self) -> bytes | None:
        """All PCM decoded since the last read, in one piece (waiting for some); None once the stream is over.
        One piece, not one per 20 ms codec frame: each piece costs the Listener a VAD call in a thread."""
        items = [self._held.pop()] if self._held else [await self._out.get()]
        while isinstance(items[-1], bytes) and not self._out.empty():
            items.append(self._out.get_nowait())
        pcm = b"".join(i for i in items if isinstance(i, bytes))
        end = items[-1]
        if pcm:
            if not isinstance(end, bytes):
                self._held.append(end)  # the end (or the error) is the next read's answer
            self.decoded += len(pcm)
            return pcm
        if isinstance(end, BadAudio):
            raise end
        return None

    def _put(self, item: bytes | BadAudio | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._out.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            pass

    def _run(self) -> None:
        error: BadAudio | None = None
        try:
            with av.open(self._pipe, "r", format=CONTAINERS[self.container], options=_OPEN_OPTIONS) as container:
                if not container.streams.audio:
                    raise BadAudio(f"the {self.container} stream holds no audio track")
                resampler = av.AudioResampler(format="s16", layout="mono", rate=INPUT_RATE)
                for frame in container.decode(audio=0):
                    self._emit(resampler.resample(frame))
                self._emit(resampler.resample(None))
        except BadAudio as exc:
            error = exc
        except Exception as exc:  # FFmpeg's errors (InvalidDataError, EOFError, OSError...): the bytes were bad
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            error = BadAudio(f"the {self.container} audio could not be decoded ({reason})")
        self._hand_over()  # what decoded before an error still counts
        if error is not None:
            self._put(error)
        self._put(None)

    def _emit(self, frames: list[av.AudioFrame]) -> None:
        self._decoded.extend(f.to_ndarray().tobytes() for f in frames)

    def _hand_over(self) -> None:
        """The PCM of everything received so far, in one piece: one Listener call per client chunk, not one
        per 20 ms codec frame."""
        pcm = b"".join(self._decoded)
        self._decoded.clear()
        if pcm:
            self._put(pcm)


def encode_ogg_opus(pcm16: bytes, rate: int, bitrate: int = 32_000) -> bytes:
    """Mono PCM16 at ``rate`` (8, 12, 16, 24 or 48 kHz) -> one Ogg/Opus file in memory."""
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        stream.bit_rate = bitrate
        samples = np.frombuffer(pcm16, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def decode_file(data: bytes, rate: int) -> bytes:
    """A whole compressed file (any container FFmpeg knows) -> mono PCM16 at ``rate``; BadAudio if it is not."""
    try:
        with av.open(io.BytesIO(data), "r") as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            frames = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
            frames += resampler.resample(None)
    except Exception as exc:
        raise BadAudio(f"not a compressed audio file FFmpeg can read ({type(exc).__name__})") from None
    return b"".join(f.to_ndarray().tobytes() for f in frames)


def f32le_to_pcm16(data: bytes) -> bytes:
    """32-bit float little-endian samples -> PCM16 (clipped; NaN and infinities become silence or full scale)."""
    if len(data) % 4:
        raise BadAudio("pcm_f32le audio must be whole 32-bit samples (a multiple of 4 bytes)")
    samples = np.nan_to_num(np.frombuffer(data, dtype="<f4"), nan=0.0, posinf=1.0, neginf=-1.0)
    return float_to_pcm16(samples)
