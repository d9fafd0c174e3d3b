"""Rendered speech on disk: greetings and other fixed phrases are synthesized once and then start at once.

An entry is the whole utterance as 24 kHz PCM16, named by a stable hash of everything that shapes the audio:
the text, the model, the resolved voice, the tone, the speed and a fingerprint of the model's files. Change
any of them and the key changes; nothing is ever invalidated in place. Writes go to a temporary file that is
renamed over the entry, so a reader (another replica, another process) sees a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from protocol.pcm import OUTPUT_RATE

AUDIO_FORMAT = f"pcm_s16le/{OUTPUT_RATE}/mono"


class TtsCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.writes = 0

    @staticmethod
    def key(text: str, model: str, voice: str, tone: str | None, speed: float, fingerprint: str) -> str:
        """sha256 of a canonical JSON (sorted keys, no spaces, speed rounded so 1 and 1.0 agree)."""
        fields = {"format": AUDIO_FORMAT, "text": text, "model": model, "voice": voice, "tone": tone,
                  "speed": round(float(speed), 4), "fingerprint": fingerprint}
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.pcm"

    def get(self, key: str) -> bytes | None:
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            data = None
        with self._lock:
            if data is None:
                self.misses += 1
            else:
                self.hits += 1
        return data

    def put(self, key: str, pcm16: bytes) -> Path:
        if len(pcm16) % 2:
            raise ValueError("PCM16 audio must have an even number of bytes")
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pcm16)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)  # atomic on POSIX: readers see the old entry, the new one, or none
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._lock:
            self.writes += 1
        return target

    def stats(self) -> dict:
        with self._lock:
            return {"directory": str(self.directory), "hits": self.hits, "misses": self.misses, "writes": self.writes}
