"""Recordings on the real graph: a spoken turn and its reply produce the JSONL and Ogg/Opus files on the
session host's node, the exported WAV holds both sides, an unwritable directory does not break the
conversation, and the retention purge deletes what is past its time."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from agents.recording_files import find_conversations
from harness.media import chunks, compress
from harness.server import ROOT
from harness.speech import speech_pcm16k, wer
from tests.integration.helpers import RECORDINGS, ended, ends_response, final_user_text, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

SENTENCE = "Please book a table for two at the corner restaurant tonight."


def recordings(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "recordings.py"), *args], capture_output=True,
                          text=True, timeout=120)


async def test_a_spoken_turn_is_recorded_and_exported_with_both_sides(connect, tmp_path):
    client = await connect()
    await client.init("recorded", init_greeting=True, input_audio_format="webm")
    items = await client.until(lambda r: r.is_status("init_done"), 60)
    conversation_id = items[-1].header["recording_id"]
    items += await client.until(lambda r: r.type == "audio", 60)
    await asyncio.sleep(2.5)  # the user listens to the greeting, then speaks (a webm file, as a browser sends)
    pcm = speech_pcm16k(SENTENCE)
    for part in chunks(compress(pcm, "webm"), 4000):
        await client.send({"type": "audio"}, part)
    await client.send({"type": "create_response"})
    items += await client.until(ends_response, 60)
    items += await client.drain(2.0)
    heard = final_user_text(items)
    await client.close()

    c = await ended(conversation_id)
    assert c.directory.parent == RECORDINGS and c.meta["app"] == "tests" and c.meta["agent"] == "recorded"
    said = [(x["role"], text_of_line(x)) for x in c.messages]
    assert said == [("assistant", "Hello, this call is recorded."), ("user", heard), ("assistant", heard)], said
    assert wer(SENTENCE, heard) <= 0.15
    audio = {line["file"]: line for line in c.lines if line["event"] == "audio"}
    assert sorted(audio) == ["assistant-0000.ogg", "assistant-0002.ogg", "user-0001.ogg"], sorted(audio)
    assert abs(audio["user-0001.ogg"]["seconds"] - len(pcm) / 32_000) < 0.1
    assert audio["assistant-0000.ogg"]["t"] < audio["user-0001.ogg"]["t"] < audio["assistant-0002.ogg"]["t"]
    assert any(line["event"] == "turn" and line["voice_to_voice_ms"] for line in c.lines)
    assert all((c.directory / f).read_bytes()[:4] == b"OggS" for f in audio)

    out = tmp_path / "conversation.wav"
    done = recordings("--agents", str(ROOT / "tests" / "integration" / "agents.yaml"), "export", conversation_id, str(out))
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as wav:
        rate = wav.getframerate()
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2).astype(np.float32) / 32768

    def loud(channel: int, start_s: float, seconds: float) -> float:
        part = stereo[int(start_s * rate) : int((start_s + seconds) * rate), channel]
        return float(np.sqrt(np.mean(part**2))) if part.size else 0.0

    user_at, reply_at = audio["user-0001.ogg"]["t"], audio["assistant-0002.ogg"]["t"]
    assert loud(0, user_at, 1.5) > 0.02 and loud(1, user_at, 0.3) < 0.005  # the user speaks, the agent is silent
    assert loud(1, reply_at, 1.5) > 0.02  # then the agent's reply on its own channel
    assert loud(1, 0.0, 1.0) > 0.02  # and the greeting at the start
    shown = recordings("--dir", str(RECORDINGS), "show", conversation_id)
    assert shown.returncode == 0 and heard in shown.stdout and "voice_to_voice_ms=" in shown.stdout, shown.stdout


def text_of_line(line: dict) -> str:
    return " ".join(p["text"] for p in line["content"] if p.get("type") == "text")


async def test_an_unwritable_directory_does_not_break_the_conversation(connect, server):
    client = await connect()
    items = await start_session(client, "recorded_unwritable")
    conversation_id = items[-1].header["recording_id"]
    await client.send_audio(speech_pcm16k(SENTENCE))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    items += await client.drain(1.5)
    assert items[-1].is_status("response_done") or any(i.is_status("response_done") for i in items)
    assert wer(SENTENCE, final_user_text(items)) <= 0.15
    assert any(i.type == "audio" for i in items) and not any(i.type == "error" for i in items)
    await client.send({"type": "text", "content": "still talking"})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert text_of([i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]) == "still talking"
    deadline = time.monotonic() + 20
    while conversation_id not in server.log_path.read_text(errors="replace") and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    lines = [line for line in server.log_path.read_text(errors="replace").splitlines() if conversation_id in line]
    assert len(lines) == 1 and "goes on" in lines[0] and "Traceback" not in lines[0], lines


async def test_retention_purge(connect):
    client = await connect()
    items = await start_session(client, "recorded")
    conversation_id = items[-1].header["recording_id"]
    await client.close()
    await ended(conversation_id)
    agents = str(ROOT / "tests" / "integration" / "agents.yaml")
    done = recordings("--agents", agents, "purge")  # within its 7 days of retention: kept
    assert done.returncode == 0 and conversation_id not in done.stdout and (RECORDINGS / conversation_id).is_dir()
    await asyncio.sleep(1.0)  # now older than 0.00001 days (0.86 s)
    done = recordings("--agents", agents, "purge", "--days", "0.00001", "--dry-run")
    assert f"would delete {conversation_id}" in done.stdout and (RECORDINGS / conversation_id).is_dir()
    done = recordings("--agents", agents, "purge", "--days", "0.00001")  # older than a second: deleted
    assert done.returncode == 0 and f"deleted {conversation_id}" in done.stdout, done.stdout + done.stderr
    assert not (RECORDINGS / conversation_id).exists()
    assert conversation_id not in [c.id for c in find_conversations(RECORDINGS)]
    assert Path(RECORDINGS).is_dir()
