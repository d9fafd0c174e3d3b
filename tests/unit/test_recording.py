"""Recordings of a Ray-free Conversation: the JSONL and Ogg files, the export, failures, retention, the CLI."""

import json
import logging
import os
import subprocess
import sys
import wave
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agents.agent import AgentConfig, build_agent
from agents.conversation import Conversation
from agents.recording import WRITER, Recorder
from agents.recording_files import expired, export_wav, find_conversations, load_conversation
from agents.recording_settings import RecordingConfig, RecordingSettings, recording_directories, resolve_recording
from agents.services import Services
from common.clock import Clock, VirtualClock
from harness.media import chunks, compress
from protocol import messages as m
from speech.stt import Transcript, Word
from tests.unit.helpers import Sent, ask, idle

ROOT = Path(__file__).resolve().parents[2]
AGENT = build_agent(AgentConfig.model_validate({"llm_model": "echo", "voices": {"character": {"model": "piper-joe", "voice": "joe"}}}),
                    patterns={}, others={}, models=None, source="test", name="echo", base_dir=None)


def sine(seconds: float, rate: int, freq: float = 300.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * 0.4 * 32767).astype("<i2").tobytes()


def conversation(directory: Path, audio: bool = True, clock: Clock | None = None, **init):
    async def transcribe(pcm, prompt):
        return Transcript(text="hello there", words=[Word(" hello", 0.0, 0.3, 0.9), Word(" there", 0.3, 0.6, 0.9)])

    async def speak(text, voice, tone, cached):
        yield sine(0.5, 24_000)

    sent, clock = Sent(), clock or VirtualClock()
    settings = RecordingSettings(enabled=True, audio=audio, directory=str(directory))
    recorder = Recorder(settings, "0123456789abcdef0123", meta={"agent": "echo", "app": "bad\napp/../x"}, clock=clock)
    conv = Conversation(agent_name="echo", agent=AGENT, init=m.Init(agent_name="echo", init_greeting=False, **init),
                        services=Services(transcribe, speak), emit=sent.emit, recorder=recorder,
                        clock=clock)
    return conv, recorder, sent


async def spoken_turn(conv):
    await conv.start()
    await conv.handle(m.Audio(sine(1.0, 16_000)))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    await ask(conv, "and typed")
    await conv.close()
    WRITER.flush()


async def test_a_spoken_turn_and_its_reply_are_recorded(tmp_path):
    conv, recorder, sent = conversation(tmp_path)
    await spoken_turn(conv)
    assert sent[0].header == {"type": "status", "status": "init_done", "agent_name": "echo", "recording_id": recorder.id}
    [c] = find_conversations(tmp_path)
    assert c.id == recorder.id and c.directory.parent == tmp_path  # the id is the server's, not the app's
    assert c.meta["app"] == "bad\napp/../x" and c.meta["audio"] is True
    assert [(x["role"], x["content"][0]["text"]) for x in c.messages] == [
        ("user", "hello there"), ("assistant", "hello there"), ("user", "and typed"), ("assistant", "and typed")]
    events = [line["event"] for line in c.lines]
    assert events[0] == "start" and events[-1] == "end" and events.count("turn") == 2
    files = sorted(p.name for p in c.directory.iterdir())
    assert files == ["assistant-0001.ogg", "assistant-0003.ogg", "conversation.jsonl", "user-0001.ogg"]
    assert all((c.directory / f).read_bytes()[:4] == b"OggS" for f in files if f.endswith(".ogg"))
    out = tmp_path / "both.wav"
    seconds = export_wav(c, out)
    with wave.open(str(out)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 24_000
        stereo = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, 2)
    assert seconds >= 1.0 and np.abs(stereo[:, 0]).max() > 5000 and np.abs(stereo[:, 1]).max() > 5000


async def test_an_uploaded_file_is_placed_when_it_arrived_not_by_its_length(tmp_path):
    """A 3 s webm sent in a burst 0.4 s into the call, decoded at once: the user's audio starts at 0.4 s, not at
    -2.6 s (its length back from the moment it was decoded), so the export does not lay it over the greeting.
    On a virtual clock: decoding takes no time, so the audio is placed at 0.4 s exactly."""
    clock = VirtualClock()
    conv, recorder, sent = conversation(tmp_path, input_audio_format="webm", clock=clock)
    await conv.start()
    await clock.advance(0.4)
    for part in chunks(compress(sine(3.0, 16_000), "webm"), 4000):
        await conv.handle(m.Audio(part))
    await conv.handle(m.CreateResponse())
    await idle(conv)
    await conv.close()
    WRITER.flush()
    [c] = find_conversations(tmp_path)
    [user] = [line for line in c.lines if line["event"] == "audio" and line["role"] == "user"]
    assert user["t"] == 0.4 and abs(user["seconds"] - 3.0) < 0.1, user


async def test_transcript_only_writes_no_audio(tmp_path):
    conv, recorder, _ = conversation(tmp_path, audio=False)
    await spoken_turn(conv)
    assert sorted(p.name for p in (tmp_path / recorder.id).iterdir()) == ["conversation.jsonl"]


async def test_tool_calls_and_their_results_are_recorded(tmp_path):
    from protocol import events as ev

    conv, recorder, _ = conversation(tmp_path, audio=False)
    await conv.start()
    recorder.sent(ev.ToolCallStarted("call_1", "weather", '{"city": "Oslo"}', message_id=1))
    recorder.sent(ev.ToolCallDone("call_1", "weather", True, '{"forecast": "snow"}', 12.5))
    await conv.close()
    WRITER.flush()
    [c] = find_conversations(tmp_path)
    lines = [line for line in c.lines if line["event"] in ("tool_call", "tool_done")]
    assert [(x["event"], x["name"], x["call_id"]) for x in lines] == [("tool_call", "weather", "call_1"),
                                                                      ("tool_done", "weather", "call_1")]
    assert lines[0]["arguments"] == '{"city": "Oslo"}' and lines[1]["output"] == '{"forecast": "snow"}'


async def test_an_unwritable_directory_is_logged_once_and_the_conversation_goes_on(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    conv, recorder, sent = conversation(blocker / "recordings")
    with caplog.at_level(logging.ERROR, logger="voi.recording"):
        await spoken_turn(conv)
    assert [s.header.get("status") for s in sent].count("response_done") == 2
    failures = [r for r in caplog.records if recorder.id in r.getMessage()]
    assert len(failures) == 1 and "goes on" in failures[0].getMessage()


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    d = tmp_path / "20260101T000000Z-0123456789ab"
    d.mkdir()
    (d / "conversation.jsonl").write_text('{"event":"start","at":"2026-01-01T00:00:00+00:00"}\n{"event":"mess')
    c = load_conversation(tmp_path, d.name)
    assert [line["event"] for line in c.lines] == ["start"]


def test_retention(tmp_path):
    d = tmp_path / "20260101T000000Z-0123456789ab"
    d.mkdir()
    (d / "conversation.jsonl").write_text(json.dumps({"event": "start", "at": "2026-01-01T00:00:00+00:00", "retention_days": 7}))
    c = load_conversation(tmp_path, d.name)
    assert not expired(c, datetime(2026, 1, 7, tzinfo=UTC)) and expired(c, datetime(2026, 1, 8, 1, tzinfo=UTC))
    assert expired(c, datetime(2026, 1, 2, 1, tzinfo=UTC), days=1)


def test_settings_resolution(tmp_path):
    server = resolve_recording(RecordingSettings(), RecordingConfig(enabled=True, directory="rec"), tmp_path)
    assert server == RecordingSettings(enabled=True, audio=False, directory=str(tmp_path / "rec"), retention_days=30.0)
    own = resolve_recording(server, RecordingConfig(audio=True, retention_days=2), tmp_path)
    assert own.enabled and own.audio and own.retention_days == 2 and own.directory == server.directory
    agents = tmp_path / "agents.yaml"
    agents.write_text("recording: {directory: /srv/rec}\nagents:\n  a: {llm_model: echo, recording: {directory: other}}\n")
    assert recording_directories(agents) == [Path("/srv/rec"), tmp_path / "other"]


def test_cli_lists_shows_exports_deletes_and_purges(tmp_path):
    for name, at in (("20200101T000000Z-0123456789ab", "2020-01-01T00:00:00+00:00"),
                     ("20990101T000000Z-0123456789ab", datetime.now(UTC).isoformat())):
        (tmp_path / name).mkdir()
        lines = [{"event": "start", "at": at, "retention_days": 30, "agent": "echo", "app": "x"},
                 {"event": "message", "t": 1.5, "id": 0, "role": "user", "content": [{"type": "text", "text": "hi there"}]},
                 {"event": "message", "t": 2.0, "id": 1, "role": "user", "content": [{"type": "text", "text": "x\x1b[2Jy"}]}]
        (tmp_path / name / "conversation.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    def run(*args):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "recordings.py"), "--dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60, env={**os.environ})
        return done.returncode, done.stdout + done.stderr

    code, out = run("list")
    assert code == 0 and out.count("echo") == 2, out
    code, out = run("show", "20990101T000000Z-0123456789ab")
    assert code == 0 and "[   1.50s] #0 user: hi there" in out, out
    assert "\x1b" not in out and "x\\x1b[2Jy" in out  # a typed escape sequence cannot reach the terminal
    assert run("show", "../etc")[0] == 2
    code, out = run("export", "20990101T000000Z-0123456789ab", str(tmp_path / "x.wav"))
    assert code == 0 and (tmp_path / "x.wav").exists(), out
    code, out = run("purge")
    assert code == 0 and "deleted 20200101T000000Z" in out and not (tmp_path / "20200101T000000Z-0123456789ab").exists()
    assert (tmp_path / "20990101T000000Z-0123456789ab").exists()
    code, out = run("delete", "20990101T000000Z-0123456789ab")
    assert code == 0 and not find_conversations(tmp_path)
