"""Opt-in conversation recordings: what to keep (settings) and the Recorder a conversation writes through.

The original Voi saved every conversation, always, under a path made from the token's ``app`` claim. Here
recording is off unless the operator turns it on (``recording:`` in agents.yaml, server-wide and per agent),
each conversation gets one directory named by a server-made id (never by a client string), and what is kept
is either the transcript (a JSONL of every message, status, error and turn timeline) or that plus audio:
each user turn and each assistant speech as an Ogg/Opus file. The Recorder only queues: files are written by
one writer thread per process (agents/recording_files.py), so a slow or full disk never blocks a session's
loop, and a write that fails is logged once per conversation while the conversation goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.recording_files import RecordingFiles, audio_file_name, conversation_id
from agents.recording_settings import RecordingSettings
from agents.services import SessionPolicy
from agents.timeline import TurnReport
from common.clock import MONOTONIC, Clock
from protocol import events as ev
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.voi_codec import to_frame
from speech.audio import INPUT_RATE, OUTPUT_RATE

log = logging.getLogger("voi.recording")

QUEUE_SIZE = 2000  # jobs waiting for the writer thread; beyond it records are dropped (and that is logged)


class _Writer:
    """The process's one writer thread: record jobs run in order, off every session's event loop."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._dropped = 0

    def put(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
                self._thread.start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning("recording writer is behind: %d records dropped so far", self._dropped)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until what was queued is written (tests, and a host shutting down)."""
        done = threading.Event()
        self.put(done.set)
        done.wait(timeout)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:  # a job's own errors are handled in it; this is a bug, not a disk problem
                log.exception("recording job failed")


WRITER = _Writer()


@dataclass
class _Audio:
    started_t: float | None = None
    arrived_t: float | None = None  # when the first compressed bytes of a user turn came in
    pcm: bytearray = field(default_factory=bytearray)
    ogg: bytes | None = None  # whole-file mode: the speech as the client got it


class Recorder:
    """One conversation's recording. It is told what happens, by plain calls (the Conversation tells it what is
    sent, the turns and the user's audio; the Speaker its speeches' ends and cuts); every call returns at once:
    files are written by the writer thread."""

    def __init__(self, settings: RecordingSettings, session_id: str, meta: dict[str, Any],
                 max_turn_seconds: float = SessionPolicy.max_turn_seconds, clock: Clock = MONOTONIC) -> None:
        self._clock = clock
        self.settings = settings
        self.id = conversation_id(datetime.now(UTC), session_id)
        self._files = RecordingFiles(Path(settings.directory) / self.id)
        self._started = self._clock.now()
        self._max_user_bytes = int(max_turn_seconds * INPUT_BYTES_PER_SECOND)
        self._user = _Audio()
        self._user_turns = 0
        self._speeches: dict[str, _Audio] = {}
        self._growing: dict[int, dict[str, Any]] = {}  # assistant messages still streaming, by id
        self._record({"event": "start", "id": self.id, "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                      "audio": settings.audio, "retention_days": settings.retention_days, **meta})

    def _t(self) -> float:
        return round(self._clock.now() - self._started, 3)

    def _record(self, line: dict[str, Any]) -> None:
        WRITER.put(lambda: self._files.append(line))

    def turn_reported(self, report: TurnReport) -> None:
        """An answered turn's timeline."""
        self._record({"event": "turn", "t": self._t(), **asdict(report)})

    def input_arrived(self) -> None:
        """Compressed audio bytes came in: an uploaded file may be decoded in one burst, so its length says
        nothing about when the user spoke; the turn's audio starts no earlier than its first bytes."""
        if self.settings.audio and self._user.arrived_t is None:
            self._user.arrived_t = self._t()

    def sent(self, event: ev.ConversationEvent) -> None:
        """What the client is sent: settled messages, statuses, errors, tool calls, audio."""
        msg = to_frame(event)  # recordings keep the Voi vocabulary, whatever the transport
        header = msg.header
        kind = header["type"]
        if kind == "audio":
            if self.settings.audio:
                self._speech_audio(str(header["speech_id"]), msg.payload, header.get("format"))
        elif kind == "message":
            # Partial transcripts are skipped; a growing reply is kept until its response ends (its last
            # version may stay ``final: false`` when the text did not change after it).
            line = {"event": "message", "t": self._t(), **{k: v for k, v in header.items() if k != "type"}}
            if header.get("final", True):
                self._growing.pop(header["id"], None)
                self._record(line)
            elif header.get("role") == "assistant":
                self._growing[header["id"]] = self._growing.get(header["id"], line) | {"content": header["content"]}
        elif kind in ("status", "error", "tool_call", "tool_done"):
            if header.get("status") in ("response_done", "response_cancelled"):
                self._settle_growing()
            self._record({"event": kind, "t": self._t(), **{k: v for k, v in header.items() if k != "type"}})

    def _settle_growing(self) -> None:
        for line in self._growing.values():
            self._record({**line, "final": True})
        self._growing.clear()

    def user_audio(self, pcm16k: bytes) -> None:
        """Audio the user sent (decoded to 16 kHz PCM16), in order; it belongs to the current turn."""
        if not self.settings.audio:
            return
        if len(self._user.pcm) >= self._max_user_bytes:  # a long call-mode silence: a file per max_turn_seconds
            self.end_user_turn()
        if self._user.started_t is None:
            spoken_t = round(self._t() - len(pcm16k) / INPUT_BYTES_PER_SECOND, 3)
            self._user.started_t = max(spoken_t, self._user.arrived_t or 0.0)
        self._user.pcm += pcm16k

    def end_user_turn(self) -> None:
        audio, self._user = self._user, _Audio()
        if not audio.pcm:
            return
        self._user_turns += 1
        self._write_audio(audio_file_name("user", self._user_turns), "user", audio, INPUT_RATE, {"turn": self._user_turns})

    def _speech_audio(self, speech_id: str, payload: bytes, audio_format: str | None) -> None:
        audio = self._speeches.setdefault(speech_id, _Audio())
        if audio.started_t is None:
            audio.started_t = self._t()
        if audio_format == "ogg_opus":
            audio.ogg = payload
        else:
            audio.pcm += payload

    def end_speech(self, speech_id: str) -> None:
        audio = self._speeches.pop(speech_id, None)
        if audio is not None and (audio.pcm or audio.ogg):
            self._write_audio(audio_file_name("assistant", int(speech_id)), "assistant", audio, OUTPUT_RATE,
                              {"speech_id": speech_id})

    def cut(self, speech_id: str, played_s: float) -> None:
        self._record({"event": "cut", "t": self._t(), "speech_id": speech_id, "played_s": round(played_s, 3)})

    def _write_audio(self, name: str, role: str, audio: _Audio, rate: int, extra: dict[str, Any]) -> None:
        pcm, ogg, files = bytes(audio.pcm), audio.ogg, self._files
        line = {"event": "audio", "t": audio.started_t, "role": role, "file": name, **extra}

        def job() -> None:
            seconds = files.write_audio(name, pcm, rate, ogg)
            if seconds is not None:
                files.append({**line, "seconds": seconds})

        WRITER.put(job)

    def close(self) -> None:
        self._settle_growing()
        self.end_user_turn()
        for speech_id in list(self._speeches):
            self.end_speech(speech_id)
        self._record({"event": "end", "t": self._t()})
