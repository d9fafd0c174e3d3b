"""The on-disk cache of rendered speech: stable keys, one key per input, atomic whole-entry writes."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from speech.tts_cache import TtsCache

ROOT = Path(__file__).resolve().parents[2]
BASE = {"text": "Hi! Nice to meet you.", "model": "piper-joe", "voice": "joe_warm", "tone": "warm", "speed": 1.0,
        "fingerprint": "en_US-joe-medium.onnx:63201294:1700000000"}


def test_key_is_stable_across_processes_and_number_spellings():
    key = TtsCache.key(**BASE)
    assert len(key) == 64 and int(key, 16) >= 0
    assert TtsCache.key(**{**BASE, "speed": 1}) == key
    code = "from speech.tts_cache import TtsCache; print(TtsCache.key({!r}, {!r}, {!r}, {!r}, {!r}, {!r}))".format(*tuple(BASE.values()))
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == key


@pytest.mark.parametrize("field, value", [
    ("text", "Hi! Nice to meet you"), ("model", "xtts"), ("voice", "joe"), ("tone", None), ("tone", "excited"),
    ("speed", 1.1), ("fingerprint", "en_US-joe-medium.onnx:63201294:1700000001"),
])
def test_every_field_changes_the_key(field, value):
    assert TtsCache.key(**{**BASE, field: value}) != TtsCache.key(**BASE)


def test_put_get_and_counters(tmp_path):
    cache = TtsCache(tmp_path / "tts")
    key = TtsCache.key(**BASE)
    assert cache.get(key) is None
    audio = bytes(range(256)) * 10
    path = cache.put(key, audio)
    assert path.is_file() and path.parent.parent == tmp_path / "tts"
    assert cache.get(key) == audio and cache.get(key) == audio
    assert TtsCache(tmp_path / "tts").get(key) == audio  # another replica reading the same directory
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 1 and cache.stats()["writes"] == 1
    with pytest.raises(ValueError, match="even"):
        cache.put(key, b"abc")
    assert cache.get(key) == audio  # a refused write leaves the entry alone
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_concurrent_writers_leave_one_whole_entry(tmp_path):
    """Writers race on one key while a reader polls: the reader only ever sees a complete entry."""
    cache = TtsCache(tmp_path)
    key = TtsCache.key(**BASE)
    entries = [bytes([i]) * 400_000 for i in range(1, 7)]
    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            data = cache.get(key)
            if data is not None:
                seen.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=cache.put, args=(key, entry)) for entry in entries]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert cache.get(key) in entries
    assert seen and all(data in entries for data in seen)
    assert not list(tmp_path.rglob("*.tmp"))


def test_failed_write_keeps_the_old_entry(tmp_path, monkeypatch):
    cache = TtsCache(tmp_path)
    key = TtsCache.key(**BASE)
    cache.put(key, b"\x01\x00" * 100)

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key, b"\x02\x00" * 100)
    monkeypatch.undo()
    assert cache.get(key) == b"\x01\x00" * 100
    assert not list(tmp_path.rglob("*.tmp"))
