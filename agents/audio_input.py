"""The user's audio in the session's ``input_audio_format``, turned into the 16 kHz PCM16 the Listener hears.

``pcm16`` and ``pcm_f32le`` are converted frame by frame. Compressed formats (webm, ogg, mp4: what a
browser's MediaRecorder writes) go through a streaming decoder (speech/codecs.py) whose PCM is fed to the
Listener as it is decoded, so partial transcripts stream as with PCM. In chat mode each turn is one file
(a push-to-talk recorder starts afresh): ``end_turn`` ends the file, waits for its last samples and the next
audio frame starts a new decoder. In call mode the whole call is one stream. Bad bytes are reported once
as ``bad_audio`` and the session goes on: the stream is dropped and the next frame starts a new one.
The recorder, if any, is told when compressed bytes arrive and keeps a copy of the PCM the Listener hears.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from agents.recording import Recorder
from speech.codecs import CONTAINERS, BadAudio, StreamDecoder, f32le_to_pcm16

log = logging.getLogger("voi.audio_input")

FLUSH_TIMEOUT_S = 5.0  # the end of a turn waits this long at most for its last decoded samples

FeedPcm = Callable[[bytes], Awaitable[None]]
ReportBadAudio = Callable[[BadAudio], Awaitable[None]]


class AudioInput:
    def __init__(self, audio_format: str, *, feed: FeedPcm, report: ReportBadAudio, stream_per_turn: bool,
                 recorder: Recorder | None = None) -> None:
        self.audio_format = audio_format
        self._to_listener = feed
        self._recorder = recorder
        self._report = report
        self._per_turn = stream_per_turn
        self._decoder: StreamDecoder | None = None
        self._pump: asyncio.Task[None] | None = None
        self._failed = False  # the last stream was reported bad and no audio was decoded since

    @property
    def compressed(self) -> bool:
        return self.audio_format in CONTAINERS

    async def write(self, data: bytes) -> None:
        """One client audio frame."""
        if self._recorder is not None and self.compressed:
            self._recorder.input_arrived()
        if not self.compressed:
            try:
                pcm = f32le_to_pcm16(data) if self.audio_format == "pcm_f32le" else _pcm16(data)
            except BadAudio as exc:
                await self._report(exc)
                return
            await self._feed(pcm)
            return
        if not data:
            return
        if self._decoder is None:
            self._decoder = StreamDecoder(self.audio_format)
            self._pump = asyncio.create_task(self._drain(self._decoder), name=f"decode:{self.audio_format}")
        self._decoder.write(data)
        if self._decoder.silent_too_long:
            self._decoder.abort()
            await self._fail(self._decoder, BadAudio(f"{self._decoder.written} bytes of {self.audio_format} "
                                                     "audio gave no sound: it is not a stream FFmpeg can decode"))

    async def end_turn(self) -> None:
        """The user's turn is over: in chat mode its file ends here, and its last samples reach the Listener
        before this returns."""
        if not self._per_turn or self._decoder is None:
            return
        decoder, pump = self._decoder, self._pump
        decoder.end()
        if pump is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pump), FLUSH_TIMEOUT_S)
            except TimeoutError:
                log.warning("the %s decoder did not finish within %.0f s; its turn goes on without the rest",
                            self.audio_format, FLUSH_TIMEOUT_S)
                decoder.abort()
        self._forget(decoder)

    async def close(self) -> None:
        if self._decoder is not None:
            self._decoder.abort()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)

    async def _drain(self, decoder: StreamDecoder) -> None:
        """The decoder's PCM to the Listener, in order, as it is made."""
        try:
            while (pcm := await decoder.read()) is not None:
                self._failed = False
                await self._feed(pcm)
        except BadAudio as exc:
            await self._fail(decoder, exc)

    async def _fail(self, decoder: StreamDecoder, exc: BadAudio) -> None:
        self._forget(decoder)
        if not self._failed:  # once until audio decodes again, not once per garbage frame
            self._failed = True
            log.info("bad %s audio: %s", self.audio_format, exc)
            await self._report(exc)

    async def _feed(self, pcm: bytes) -> None:
        if self._recorder is not None:
            self._recorder.user_audio(pcm)
        await self._to_listener(pcm)

    def _forget(self, decoder: StreamDecoder) -> None:
        if self._decoder is decoder:
            self._decoder, self._pump = None, None


def _pcm16(data: bytes) -> bytes:
    if len(data) % 2:
        raise BadAudio("audio payload must be 16-bit samples (an even number of bytes)")
    return data
