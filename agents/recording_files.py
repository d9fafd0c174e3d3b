"""The recordings on disk: one directory per conversation, read and written only here.

    {directory}/{YYYYmmddTHHMMSSZ}-{12 hex}/      the id: UTC start time and part of the server's session id
        conversation.jsonl                          one JSON object a line: start, message, status, error,
                                                    turn (latencies), audio (a file and when it started), cut, end
        user-0001.ogg, assistant-0002.ogg           Ogg/Opus: each user turn (16 kHz), each assistant speech (24 kHz)

Crash safety: an audio file is written under a temporary name, synced and renamed, so it is whole or absent;
each JSONL line is one ``write`` on an append-only file, and readers skip a last line cut short by a crash.
Write errors (a full disk, a read-only directory) are logged once per conversation, never raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from speech.audio import OUTPUT_RATE, pcm16_seconds
from speech.codecs import decode_file, encode_ogg_opus

log = logging.getLogger("voi.recording")

JSONL = "conversation.jsonl"
ID_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}$")


def audio_file_name(role: str, number: int) -> str:
    """A user turn's or an assistant speech's file: ``user-0001.ogg``, ``assistant-0002.ogg``."""
    return f"{role}-{number:04d}.ogg"


def conversation_id(started: datetime, session_id: str) -> str:
    """Sortable by time; the rest is the server's own random session id (a client never names a path)."""
    suffix = re.sub(r"[^0-9a-f]", "", session_id.lower())[:12].rjust(12, "0")
    return f"{started.strftime('%Y%m%dT%H%M%SZ')}-{suffix}"


class RecordingFiles:
    """One conversation's directory, written from the recording writer thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._failed = False

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: people's words and voices

    def _failure(self, what: str, exc: OSError) -> None:
        if not self._failed:  # once per conversation: a full disk must not flood the log
            self._failed = True
            log.error("recording %s: %s failed (%s); the conversation goes on, this recording is incomplete",
                      self.directory.name, what, exc)

    def append(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        try:
            self._ensure_dir()
            fd = os.open(self.directory / JSONL, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            self._failure(f"writing {JSONL}", exc)

    def write_audio(self, name: str, pcm16: bytes, rate: int, ogg: bytes | None = None) -> float | None:
        """Write one audio file atomically; returns its length in seconds (None when it could not be written)."""
        data = ogg if ogg is not None else encode_ogg_opus(pcm16, rate)
        seconds = pcm16_seconds(decode_file(ogg, OUTPUT_RATE), OUTPUT_RATE) if ogg is not None else pcm16_seconds(pcm16, rate)
        path = self.directory / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            self._ensure_dir()
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            self._failure(f"writing {name}", exc)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return None
        return round(seconds, 3)


# ---- reading (scripts/recordings.py) -------------------------------------------------------------------


def read_lines(directory: Path) -> list[dict[str, Any]]:
    """The JSONL records of one conversation; a last line cut short by a crash is skipped."""
    lines = []
    try:
        text = (directory / JSONL).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    for raw in text.splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            lines.append(record)
    return lines


@dataclass(frozen=True)
class Conversation:
    id: str
    directory: Path
    started: datetime | None
    meta: dict[str, Any]
    lines: list[dict[str, Any]]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The settled messages, the latest version of each id (a cut reply replaces the full one)."""
        latest: dict[int, dict[str, Any]] = {}
        for line in self.lines:
            if line.get("event") == "message":
                first = latest.get(line["id"], line)
                latest[line["id"]] = {**line, "t": first["t"]}
        return [latest[i] for i in sorted(latest)]

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.directory.iterdir() if f.is_file())


def find_conversations(root: Path) -> list[Conversation]:
    if not root.is_dir():
        return []
    return [load_conversation(root, d.name) for d in sorted(root.iterdir()) if d.is_dir() and ID_PATTERN.match(d.name)]


def load_conversation(root: Path, conversation: str) -> Conversation:
    if not ID_PATTERN.match(conversation):
        raise ValueError(f"not a recording id: {conversation[:40]!r}")
    directory = root / conversation
    if not directory.is_dir():
        raise FileNotFoundError(f"no recording {conversation} in {root}")
    lines = read_lines(directory)
    meta = next((line for line in lines if line.get("event") == "start"), {})
    try:
        started = datetime.fromisoformat(meta["at"])
    except (KeyError, ValueError):
        started = datetime.strptime(conversation[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return Conversation(conversation, directory, started, meta, lines)


def export_wav(conversation: Conversation, out: Path, rate: int = OUTPUT_RATE) -> float:
    """One stereo WAV of the whole conversation, each audio file at the time it started: the user on the left,
    the assistant on the right (an interrupted speech ends where the client stopped playing it). Returns its
    length in seconds."""
    import wave

    cuts = {line["speech_id"]: line["played_s"] for line in conversation.lines if line.get("event") == "cut"}
    placed: list[tuple[int, int, np.ndarray]] = []
    for line in conversation.lines:
        if line.get("event") != "audio" or not (conversation.directory / line["file"]).is_file():
            continue
        pcm = decode_file((conversation.directory / line["file"]).read_bytes(), rate)
        samples = np.frombuffer(pcm, dtype="<i2")
        if line.get("role") == "assistant" and line.get("speech_id") in cuts:
            samples = samples[: int(cuts[line["speech_id"]] * rate)]
        placed.append((0 if line.get("role") == "user" else 1, int(max(line.get("t") or 0.0, 0.0) * rate), samples))
    length = max((start + len(s) for _, start, s in placed), default=0)
    mix = np.zeros((length, 2), dtype=np.int32)
    for channel, start, samples in placed:
        mix[start : start + len(samples), channel] += samples
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.clip(mix, -32768, 32767).astype("<i2").tobytes())
    return length / rate


def delete_conversation(conversation: Conversation) -> None:
    shutil.rmtree(conversation.directory)


def expired(conversation: Conversation, now: datetime, days: float | None = None) -> bool:
    """Older than ``days`` (default: the retention it was recorded with)."""
    keep = days if days is not None else conversation.meta.get("retention_days")
    if keep is None or conversation.started is None:
        return False
    return (now - conversation.started).total_seconds() > float(keep) * 86400
