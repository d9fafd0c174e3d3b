"""Turn-taking benchmark: the rules of issue 23 (take back a cut, answer early, quicker on finished sentences)
off and on, side by side in one run on one graph.

    .venv/bin/python scripts/bench_turns.py                 # off and on: 10 complete + 10 paused clips, ...
    .venv/bin/python scripts/bench_turns.py --clips 2       # a smoke run (every section, fewer clips)
    .venv/bin/python scripts/bench_turns.py --settings timer,off   # the silence timer beside the model
    .venv/bin/python scripts/bench_turns.py --phone         # 16 kHz against a phone line, in-process

One real graph is started with an agents file of its own: for each setting an echo agent (``echo_<setting>``)
and an agent on the scripted OpenAI-compatible LLM (``llm_<setting>``, 400 ms to its first token:
harness/scripted_llm.py), each with the setting's ``turn_taking`` (SETTINGS below: "off" is the rules off,
``resume_window_s`` 0, ``speculate`` false, ``sentence_max_wait_s`` 2.0 = ``turn_max_wait_s``; "on" is the
defaults; "timer" is "off" with ``turn_detection: timer``), plus ``llm_on_nospec`` ("on" without speculation:
what speculation alone buys). Clients stream Piper-made clips at real-time pace over a websocket, each
followed by silence, as a microphone would. For each setting, one after the other (one client at a time):
- complete utterances (call mode, echo): end of speech -> turn ended (``response_created``) and
  voice-to-voice (first reply audio), p50/p95; turns split, turns reopened (``turn_metrics.reopened``);
- paused clips (the same kind of sentence spoken in one go with 0.6-1.2 s of silence put between two
  words): cut at the pause (more than one reply, or one before the sentence ended); answered whole (one user
  message id with the whole sentence, and the last reply not stopped says it: ``answered_whole``), and of
  those, answered once (no reply to the first part played out unstopped); the audio of an abandoned reply
  that played before the user went on (its first audio frame -> the speech resuming, by the clip timeline;
  0 when it came later) and in all (its first audio frame -> ``user_interrupt``);
- backchannels ("Yeah.", ...), non-speech sounds (harness/noises.py: cough, knock, hum, laugh) and real
  interruptions ("Wait, stop, ...") over the echo's reply to a long statement, at least 0.5 s into it and past
  the resume window (1.8 s after the turn ended: inside it any words reopen the turn, by design): the rate
  that stopped it (``user_interrupt``) or made a turn; for interruptions, ``user_interrupt`` after the speech's
  onset, p50/p95;
- the scripted LLM (call mode): end of speech -> first reply audio, p50/p95, and the speculation's cost
  (``turn_metrics``: hits, misses, discarded LLM calls per turn);
- chat mode (echo): the clip, then ``create_response`` 300 ms after the speech ends (a person letting go of
  the button): ``create_response`` -> first reply audio, p50/p95.
After each reply the client sends ``interrupt`` (as a client that stops playback), so the next clip is
not spoken over the agent. Prints a table (target and met judged on the "on" setting), writes JSON
(default bench_results/turns.json) and a PNG.

``--phone`` starts no graph: the complete clips and the unfinished first parts of the paused ones, as recorded
(16 kHz) and as a caller is heard (harness.speech.phone_line: 8 kHz mu-law, back to 16 kHz), are put to the
end-of-turn model alone (what it answers at the utterance's end) and streamed through the real call-mode
Listener with Whisper and the model on a virtual clock (harness/paced_listening.py: turns cut at the pause,
end of speech -> turn ended), with the default turn settings and with ``TurnConfig().for_phone()``; writes
bench_results/turns_phone.json and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from _repo_path import ROOT

from harness.noises import NOISES
from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import TEST_SECRET, start_server
from harness.speech import phone_line, speech_pcm16k, speech_with_pause, trim_trailing_silence, unfinished_part, wer
from protocol.client import Received, VoiClient
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.tokens import issue_token
from speech.audio import pcm16_to_float

QUESTIONS = [
    "What will the weather be like in Lisbon tomorrow afternoon?", "Could you tell me the way to the train station?",
    "How long does it take to get to the airport?", "Do you know a good restaurant near the harbour?",
    "What time does the museum close on Sundays?", "Can I pay with a credit card here?",
    "Where can I buy a ticket for the concert?", "Is there a pharmacy open late tonight?",
    "How much does a return ticket to Porto cost?", "Would you recommend the fish or the pasta?",
]
STATEMENTS = [
    "Hello there.", "I would like to book a table for four people tonight.", "My sister lives in Berlin.",
    "The meeting was moved to Thursday morning.", "I forgot my umbrella at the office.",
    "We are going to the beach this weekend.", "The train was twenty minutes late again.",
    "I really enjoyed the film we saw yesterday.", "Please send me the report before lunch.",
    "My phone battery is almost empty.",
]
COMPLETE = [s for pair in zip(QUESTIONS, STATEMENTS) for s in pair]  # alternating: a short run has both kinds
PAUSED = [  # (sentence, words before the pause)
    ("I would like to book a table for four people tonight.", 8), ("My name is John and I live in Berlin.", 5),
    ("Could you tell me the way to the train station please?", 7), ("We should leave at eight because the traffic is bad.", 4),
    ("I was thinking that we could go to the cinema.", 4), ("Tomorrow I have to go to the dentist at ten.", 7),
    ("The best thing about this city is the food.", 6), ("I need a room with two beds for three nights.", 6),
    ("Can you remind me to call my mother this evening?", 6), ("She said that the shop opens at nine.", 3),
]
PAUSES_S = [0.6, 0.8, 1.0, 1.2]
LEADS = [  # what the user says before a clip is played over the echo's reply to it: long, so the reply still plays
    "I would like to book a table for four people tonight at the little restaurant down by the harbour.",
    "The meeting with the new clients was moved from Wednesday afternoon to Thursday morning at nine.",
    "We are going to drive down to the beach with the children this weekend if the weather stays nice.",
]
OVER_REPLY_AFTER_TURN_S = 1.8  # past the default resume_window_s (1.5 s) after the end of the lead's turn
BACKCHANNELS = ["Yeah.", "Okay.", "Right.", "Sure.", "Uh-huh."]
INTERRUPTIONS = ["Wait, stop, I have a question.", "Sorry, can I ask something?", "No, that is not what I meant."]
TAIL_S = 2.6  # silence after each clip: more than the model's maximum wait (2 s)
RELEASE_S = 0.3  # chat mode: create_response this long after the speech ends (a person letting go of the button)
LLM_FIRST_TOKEN_S = 0.4  # the scripted LLM's time to first token
WHOLE_WER = 0.25  # a reply (or user message) is "the whole sentence" at this word error rate or below

RULES_OFF = {"resume_window_s": 0.0, "speculate": False, "sentence_max_wait_s": 2.0}
SETTINGS: dict[str, dict[str, Any]] = {  # each setting's turn_taking (over the server's defaults)
    "off": RULES_OFF,
    "on": {},
    "timer": {**RULES_OFF, "turn_detection": "timer"},
}
NO_SPECULATION = "on_nospec"  # the LLM clips only: "on" without speculation
NO_SPECULATION_SETTING = {"speculate": False}


def agents_file(directory: Path, settings: list[str]) -> Path:
    voice = {"character": {"model": "piper-joe", "voice": "joe"}}
    agents: dict[str, dict[str, Any]] = {}
    overrides = {name: SETTINGS[name] for name in settings}
    if "on" in settings:
        overrides[NO_SPECULATION] = NO_SPECULATION_SETTING
    for name, turn_taking in overrides.items():
        block = {"turn_taking": turn_taking} if turn_taking else {}
        agents[f"echo_{name}"] = {"llm_model": "echo", "voices": voice, **block}
        agents[f"llm_{name}"] = {"llm_model": "scripted-model", "system_prompt": "You are Joe.", "voices": voice, **block}
    path = directory / "agents.yaml"
    path.write_text(yaml.safe_dump({"agents": agents}))
    return path


def speech_onset_s(pcm: bytes, threshold: float = 0.02) -> float:
    loud = np.flatnonzero(np.abs(pcm16_to_float(pcm)) > threshold)
    return float(loud[0]) / 16_000 if loud.size else 0.0


async def connect(url: str, agent: str, mode: str) -> VoiClient:
    client = await VoiClient.connect(url, issue_token(TEST_SECRET, "bench"))
    await client.init(agent, mode=mode, init_greeting=False, send_turn_metrics=True)
    got = await client.until(lambda r: r.is_status("init_done") or r.type == "error", 60)
    if not got[-1].is_status("init_done"):
        raise RuntimeError(f"init of agent {agent!r} failed: {got[-1].header}")
    return client


async def stop_reply(client: VoiClient, items: list[Received]) -> list[Received]:
    """Stop the reply's playback as a client would (``interrupt``), and let the server settle; returns what came."""
    replies = [i for i in items if i.type == "audio"]
    if replies:
        await client.send({"type": "interrupt", "speech_id": replies[-1].header["speech_id"], "interrupted_at": 0.2})
    return await client.drain(0.6)


async def one_clip(client: VoiClient, pcm: bytes, tail_s: float = TAIL_S) -> tuple[list[Received], float]:
    """Streams ``pcm`` and ``tail_s`` of silence; returns what came back and when the clip started."""
    started = time.monotonic()
    sender = asyncio.create_task(client.send_audio(pcm + b"\x00\x00" * int(16_000 * tail_s), realtime=True))
    items: list[Received] = []
    while not sender.done():
        try:
            items.append(await client.recv(0.2))
        except TimeoutError:
            continue
    items += await client.drain(0.5)
    return items, started


def created(items: list[Received]) -> list[Received]:
    return [i for i in items if i.is_status("response_created")]


def metrics(items: list[Received]) -> list[dict[str, Any]]:
    return [i.header for i in items if i.type == "turn_metrics"]


def text_of(item: Received) -> str:
    return " ".join(p.get("text", "") for p in item.header.get("content", []) if p.get("type") == "text")


@dataclass
class Reply:
    """One reply as the client saw it: from its ``response_created`` to the next."""

    created_at: float
    message_id: Any = None
    text: str = ""
    first_audio_at: float | None = None
    stopped: bool = False  # user_interrupt or response_cancelled while it was the current reply, or cut text
    stopped_at: float | None = None  # when the client was told (user_interrupt, response_cancelled)


def replies(items: list[Received]) -> list[Reply]:
    out: list[Reply] = []
    for item in items:
        if item.is_status("response_created"):
            out.append(Reply(item.at))
        elif not out:
            continue
        elif item.type == "message" and item.header.get("role") == "assistant":
            if out[-1].message_id in (None, item.header.get("id")):
                out[-1].message_id, out[-1].text = item.header.get("id"), text_of(item)
                out[-1].stopped |= out[-1].text.rstrip().endswith("(interrupted)")
        elif item.type == "audio" and out[-1].first_audio_at is None and item.header.get("speech_id") == str(out[-1].message_id):
            out[-1].first_audio_at = item.at
        elif item.is_status("user_interrupt") or item.is_status("response_cancelled"):
            out[-1].stopped = True
            out[-1].stopped_at = out[-1].stopped_at or item.at
    return out


def user_ids(items: list[Received]) -> set[Any]:
    return {i.header.get("id") for i in items if i.type == "message" and i.header.get("role") == "user"}


def last_user_text(items: list[Received]) -> str:
    """The user's last settled transcript (the last user message re-sent, when none is final)."""
    users = [i for i in items if i.type == "message" and i.header.get("role") == "user"]
    users = [i for i in users if i.header.get("final")] or users
    return text_of(users[-1]) if users else ""


async def complete_clips(client: VoiClient, clips: list[str]) -> list[dict]:
    out = []
    for text in clips:
        pcm = trim_trailing_silence(speech_pcm16k(text))
        items, started = await one_clip(client, pcm)
        speech_end = started + len(pcm) / INPUT_BYTES_PER_SECOND
        after = await stop_reply(client, items)
        starts = created(items)
        audio = [i for i in items if i.type == "audio" and starts and i.at >= starts[0].at]
        turn = metrics(items + after)
        out.append({"text": text, "turns": len(starts), "reopened": any(m.get("reopened") for m in turn),
                    "speculation": [m.get("speculation") for m in turn],
                    "discarded_llm_calls": sum(m.get("discarded_llm_calls") or 0 for m in turn),
                    "discarded_llm_tokens": sum(m.get("discarded_llm_tokens") or 0 for m in turn),
                    "discarded_tts_s": sum(m.get("discarded_tts_s") or 0.0 for m in turn),
                    "turn_ended_ms": (starts[0].at - speech_end) * 1000 if starts else None,
                    "voice_to_voice_ms": (audio[0].at - speech_end) * 1000 if audio else None})
    return out


async def paused_clips(client: VoiClient, clips: list[tuple[str, int]]) -> list[dict]:
    out = []
    for n, (text, after) in enumerate(clips):
        pause = PAUSES_S[n % len(PAUSES_S)]
        pcm = trim_trailing_silence(speech_with_pause(text, after, pause))
        first_part = len(unfinished_part(text, after)) + int(16_000 * pause) * 2
        resume_s = (first_part / INPUT_BYTES_PER_SECOND) + speech_onset_s(pcm[first_part:])
        items, started = await one_clip(client, pcm)
        speech_end = started + len(pcm) / INPUT_BYTES_PER_SECOND
        after_stop = await stop_reply(client, items)
        got = replies(items)
        answered = [r for r in got if not r.stopped]
        abandoned = [r for r in got if r.stopped]
        resumed = started + resume_s
        # of each abandoned reply: its audio before the speech resumed (none: 0), and all of it the client played
        # (its first audio frame -> the stop; none: 0); a clip's number is its largest
        heard = [max(0.0, resumed - r.first_audio_at) * 1000 if r.first_audio_at is not None else 0.0 for r in abandoned]
        played = [max(0.0, (r.stopped_at or r.first_audio_at) - r.first_audio_at) * 1000 if r.first_audio_at is not None
                  else 0.0 for r in abandoned]
        said = last_user_text(items)
        turn = metrics(items + after_stop)
        out.append({"text": text, "pause_s": pause, "turns": len(got), "answered": len(answered),
                    "answer": answered[-1].text if answered else None, "user_text": said,
                    "user_message_ids": len(user_ids(items)),
                    "cut": len(got) > 1 or (bool(got) and got[0].created_at < speech_end),
                    "abandoned": len(abandoned), "abandoned_heard_ms": max(heard) if heard else None,
                    "abandoned_played_ms": max(played) if played else None,
                    "reopened": any(m.get("reopened") for m in turn)})
    return out


async def over_reply(client: VoiClient, clips: list[tuple[str, bytes]]) -> list[dict]:
    """Each clip (a label and its audio) played into the echo's reply to a long statement: 0.5 s after its first
    audio, and past the resume window (OVER_REPLY_AFTER_TURN_S after response_created), so that what is measured
    is speech over the agent, not a continuation of the user's turn (where any words reopen it)."""
    out = []
    for n, (label, pcm) in enumerate(clips):
        lead = trim_trailing_silence(speech_pcm16k(LEADS[n % len(LEADS)]))
        sender = asyncio.create_task(client.send_audio(lead + b"\x00\x00" * 16_000 * 12, realtime=True))
        items = await client.until(lambda r: r.type == "audio", 30)
        turn_ended = next((i.at for i in items if i.is_status("response_created")), items[-1].at)
        await asyncio.sleep(max(0.0, max(items[-1].at + 0.5, turn_ended + OVER_REPLY_AFTER_TURN_S) - time.monotonic()))
        sender.cancel()
        got, started = await one_clip(client, pcm)
        onset = started + speech_onset_s(pcm)
        items += got
        interrupts = [i for i in got if i.is_status("user_interrupt")]
        out.append({"text": label, "interrupted": bool(interrupts), "turns": len(created(got)),
                    "heard": [text_of(i) for i in got if i.type == "message" and i.header.get("role") == "user"][-1:],
                    "stopped": bool(interrupts) or bool(created(got)),
                    "interrupt_ms": (interrupts[0].at - onset) * 1000 if interrupts else None})
        await stop_reply(client, items)
    return out


async def chat_clips(client: VoiClient, clips: list[str]) -> list[dict]:
    """Each clip held on the button: its audio, RELEASE_S of silence, then ``create_response``."""
    out = []
    for text in clips:
        pcm = trim_trailing_silence(speech_pcm16k(text))
        started = time.monotonic()
        await client.send_audio(pcm + b"\x00\x00" * int(16_000 * RELEASE_S), realtime=True)
        await asyncio.sleep(max(0.0, started + len(pcm) / INPUT_BYTES_PER_SECOND + RELEASE_S - time.monotonic()))
        sent = time.monotonic()
        await client.send({"type": "create_response"})
        items = await client.until(lambda r: r.type == "audio" or r.is_status("response_cancelled"), 30)
        items += await client.drain(0.5)
        first = next((i for i in items if i.type == "audio"), None)
        after = await stop_reply(client, items)
        out.append({"text": text, "first_audio_ms": (first.at - sent) * 1000 if first else None,
                    "speculation": [m.get("speculation") for m in metrics(items + after)]})
    return out


SECTIONS = ("complete", "paused", "backchannels", "noises", "interruptions", "llm", "chat")  # a setting's raw clips


def answered_whole(paused: dict) -> bool:
    """A paused clip's final answer is to the whole sentence: one user message (one id), the whole sentence, and
    the last reply not stopped says it (the echo). A reply to the first part may have played out before the
    user went on (then it was not stopped, and the clip is not ``answered_once``)."""
    return (paused["answer"] is not None and paused["user_message_ids"] == 1
            and wer(paused["text"], paused["answer"]) <= WHOLE_WER and wer(paused["text"], paused["user_text"]) <= WHOLE_WER)


def rate(rows: list[dict], key: str) -> float | None:
    return sum(bool(r[key]) for r in rows) / len(rows) if rows else None


def summarize(raw: dict[str, list[dict]]) -> dict[str, Any]:
    complete, paused, llm = raw["complete"], raw["paused"], raw["llm"]
    for p in paused:
        p["whole"] = answered_whole(p)
        p["whole_once"] = p["whole"] and p["answered"] == 1
    ended = [c["turn_ended_ms"] for c in complete]
    v2v = [c["voice_to_voice_ms"] for c in complete]
    llm_v2v = [c["voice_to_voice_ms"] for c in llm]
    speculation = [s for c in llm for s in c["speculation"]]
    echo_speculation = [s for c in complete for s in c["speculation"]]
    chat_speculation = [s for c in raw["chat"] for s in c["speculation"]]
    return {
        "turn_ended_p50_ms": pct(ended, 50), "turn_ended_p95_ms": pct(ended, 95),
        "voice_to_voice_p50_ms": pct(v2v, 50), "voice_to_voice_p95_ms": pct(v2v, 95),
        "complete_split_rate": sum(c["turns"] != 1 for c in complete) / max(1, len(complete)),
        "complete_reopened": sum(c["reopened"] for c in complete),
        "complete_speculation_hits": echo_speculation.count("hit"), "complete_speculation_misses": echo_speculation.count("miss"),
        "chat_speculation_hits": chat_speculation.count("hit"), "chat_speculation_misses": chat_speculation.count("miss"),
        "paused_cut_rate": rate(paused, "cut"), "paused_whole_rate": rate(paused, "whole"),
        "paused_whole_once_rate": rate(paused, "whole_once"),
        "paused_reopened": sum(p["reopened"] for p in paused),
        "abandoned_heard_p50_ms": pct([p["abandoned_heard_ms"] for p in paused], 50),
        "abandoned_heard_n": sum(p["abandoned_heard_ms"] is not None for p in paused),
        "abandoned_played_p50_ms": pct([p["abandoned_played_ms"] for p in paused], 50),
        "backchannel_interrupt_rate": rate(raw["backchannels"], "stopped"),
        "noise_stop_rate": rate(raw["noises"], "stopped"),
        "interruption_stop_rate": rate(raw["interruptions"], "interrupted"),
        "interrupt_p50_ms": pct([i["interrupt_ms"] for i in raw["interruptions"]], 50),
        "interrupt_p95_ms": pct([i["interrupt_ms"] for i in raw["interruptions"]], 95),
        "llm_voice_to_voice_p50_ms": pct(llm_v2v, 50), "llm_voice_to_voice_p95_ms": pct(llm_v2v, 95),
        "llm_speculation_hits": speculation.count("hit"), "llm_speculation_misses": speculation.count("miss"),
        "llm_discarded_calls_per_turn": sum(c["discarded_llm_calls"] for c in llm) / len(llm) if llm else None,
        "llm_discarded_tokens_per_turn": sum(c["discarded_llm_tokens"] for c in llm) / len(llm) if llm else None,
        "llm_discarded_tts_s_per_turn": sum(c["discarded_tts_s"] for c in llm) / len(llm) if llm else None,
        "chat_first_audio_p50_ms": pct([c["first_audio_ms"] for c in raw["chat"]], 50),
        "chat_first_audio_p95_ms": pct([c["first_audio_ms"] for c in raw["chat"]], 95),
    }


async def run_setting(url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.clips
    raw: dict[str, list[dict]] = {}
    client = await connect(url, f"echo_{name}", "call")
    started = time.monotonic()
    raw["complete"] = await complete_clips(client, [COMPLETE[i % len(COMPLETE)] for i in range(n)])
    raw["paused"] = await paused_clips(client, [PAUSED[i % len(PAUSED)] for i in range(n)])
    raw["backchannels"] = await over_reply(client, [(t, speech_pcm16k(t)) for t in
                                                    (BACKCHANNELS[i % len(BACKCHANNELS)] for i in range(args.backchannels))])
    raw["noises"] = await over_reply(client, [(k, NOISES[k]()) for k in
                                              (list(NOISES)[i % len(NOISES)] for i in range(args.noises))])
    raw["interruptions"] = await over_reply(client, [(t, speech_pcm16k(t)) for t in
                                                     (INTERRUPTIONS[i % len(INTERRUPTIONS)] for i in range(args.interruptions))])
    await client.close()
    raw["llm"] = await llm_clips(url, f"llm_{name}", args.llm_clips)
    client = await connect(url, f"echo_{name}", "chat")
    raw["chat"] = await chat_clips(client, [COMPLETE[i % len(COMPLETE)] for i in range(args.chat_clips)])
    await client.close()
    print(f"setting {name}: measured in {time.monotonic() - started:.0f} s", flush=True)
    return {**summarize(raw), "turn_taking": SETTINGS[name], **raw}


async def llm_clips(url: str, agent: str, count: int) -> list[dict]:
    client = await connect(url, agent, "call")
    await complete_clips(client, [COMPLETE[-1]])  # warm-up: the first LLM turn pays LiteLLM's one-off costs
    out = await complete_clips(client, [COMPLETE[i % len(COMPLETE)] for i in range(count)])
    await client.close()
    return out


Row = tuple[str, Callable[[dict], str], str, Callable[[dict, dict], bool | None]]


def _p(report: dict, key50: str, key95: str | None = None) -> str:
    return f"{report[key50] or 0:.0f}" + (f" / {report[key95] or 0:.0f} ms" if key95 else " ms")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _below(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


ROWS: list[Row] = [
    ("complete: end of speech -> turn ended, p50 / p95", lambda r: _p(r, "turn_ended_p50_ms", "turn_ended_p95_ms"),
     "<= 300 / 800 ms", lambda r, _: None if r["turn_ended_p50_ms"] is None else
     r["turn_ended_p50_ms"] <= 300 and (r["turn_ended_p95_ms"] or 0) <= 800),
    ("complete: voice-to-voice (echo), p50 / p95", lambda r: _p(r, "voice_to_voice_p50_ms", "voice_to_voice_p95_ms"), "", lambda r, _: None),
    ("complete: split / reopened", lambda r: f"{_pct(r['complete_split_rate'])} / {r['complete_reopened']}", "reported",
     lambda r, _: None),
    ("complete: speculation hit / miss (echo: first synthesis)",
     lambda r: f"{r['complete_speculation_hits']} / {r['complete_speculation_misses']}", "reported", lambda r, _: None),
    ("paused: cut at the pause", lambda r: _pct(r["paused_cut_rate"]), "", lambda r, _: None),
    ("paused: final answer to the whole sentence, one message", lambda r: _pct(r["paused_whole_rate"]), ">= 90 %",
     lambda r, _: None if r["paused_whole_rate"] is None else r["paused_whole_rate"] >= 0.9),
    ("paused: ... and no reply to the first part answered", lambda r: _pct(r["paused_whole_once_rate"]), "reported",
     lambda r, _: None),
    ("paused: abandoned reply heard before going on, p50 (n)",
     lambda r: f"{r['abandoned_heard_p50_ms'] or 0:.0f} ms ({r['abandoned_heard_n']})", "<= 300 ms",
     lambda r, _: True if r["abandoned_heard_n"] == 0 else _below(r["abandoned_heard_p50_ms"], 300)),
    ("paused: abandoned reply played in all (first audio -> stop), p50",
     lambda r: f"{r['abandoned_played_p50_ms'] or 0:.0f} ms", "reported", lambda r, _: None),
    ("LLM 400 ms TTFT: end of speech -> first audio, p50 / p95",
     lambda r: _p(r, "llm_voice_to_voice_p50_ms", "llm_voice_to_voice_p95_ms"), "speculation: -200 ms",
     lambda r, nospec: None if not nospec or r["llm_voice_to_voice_p50_ms"] is None or nospec["llm_voice_to_voice_p50_ms"] is None
     else nospec["llm_voice_to_voice_p50_ms"] - r["llm_voice_to_voice_p50_ms"] >= 200),
    ("LLM: speculation hit / miss; discarded LLM calls per turn",
     lambda r: f"{r['llm_speculation_hits']} / {r['llm_speculation_misses']}; {r['llm_discarded_calls_per_turn'] or 0:.2f}",
     "reported", lambda r, _: None),
    ("chat: create_response -> first audio, p50 / p95", lambda r: _p(r, "chat_first_audio_p50_ms", "chat_first_audio_p95_ms"),
     "<= 120 ms (p50)", lambda r, _: _below(r["chat_first_audio_p50_ms"], 120)),
    ("chat: speculation hit / miss", lambda r: f"{r['chat_speculation_hits']} / {r['chat_speculation_misses']}", "reported",
     lambda r, _: None),
    ("noises over a reply that stopped it", lambda r: _pct(r["noise_stop_rate"]), "0 %",
     lambda r, _: _below(r["noise_stop_rate"], 0.0)),
    ("backchannels that interrupted or made a turn", lambda r: _pct(r["backchannel_interrupt_rate"]), "<= 10 %",
     lambda r, _: _below(r["backchannel_interrupt_rate"], 0.1)),
    ("interruptions stopped; user_interrupt after onset p50 / p95",
     lambda r: f"{_pct(r['interruption_stop_rate'])}; {_p(r, 'interrupt_p50_ms', 'interrupt_p95_ms')}", "100 %, <= 300 ms",
     lambda r, _: None if r["interruption_stop_rate"] is None else
     r["interruption_stop_rate"] == 1.0 and (r["interrupt_p95_ms"] or 0) <= 300),
]


def print_table(report: dict) -> dict[str, bool | None]:
    """The table (one column per setting, target and met judged on "on", else the last setting); returns the mets."""
    settings = report["settings"]
    judged = "on" if "on" in settings else list(settings)[-1]
    nospec = report.get("llm_on_nospec")
    head = f"{'':58}" + "".join(f"{name:>20}" for name in settings) + f"{'target':>22}{'met':>6}"
    print(head)
    mets: dict[str, bool | None] = {}
    for label, cell, target, judge in ROWS:
        met = judge(settings[judged], nospec) if target and target != "reported" else None
        mets[label] = met
        print(f"{label:58}" + "".join(f"{cell(settings[name]):>20}" for name in settings)
              + f"{target:>22}{'' if met is None else ('yes' if met else 'NO'):>6}")
    if nospec:
        print(f"LLM clips, 'on' without speculation: end of speech -> first audio p50 "
              f"{ms(nospec['llm_voice_to_voice_p50_ms'], 6)} p95 {ms(nospec['llm_voice_to_voice_p95_ms'], 6)}")
    return mets


async def measure(url: str, settings: list[str], args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"settings": {}}
    for name in settings:
        report["settings"][name] = await run_setting(url, name, args)
    if "on" in settings and args.llm_clips:
        llm = await llm_clips(url, f"llm_{NO_SPECULATION}", args.llm_clips)
        report["llm_on_nospec"] = {"llm_voice_to_voice_p50_ms": pct([c["voice_to_voice_ms"] for c in llm], 50),
                                   "llm_voice_to_voice_p95_ms": pct([c["voice_to_voice_ms"] for c in llm], 95), "llm": llm}
    return report


PHONE_FRAME = 640  # 20 ms of 16 kHz PCM16: a phone frame
UTTERANCE_END = b"\x00\x00" * 3_200  # the 0.2 s of silence after which an utterance ends and the model is asked


async def phone_turns(args: argparse.Namespace) -> dict:
    from agents.turns import TurnConfig
    from harness.paced_listening import Pacing, listen_paced
    from speech.models_config import load_models_config, resolve_files
    from speech.stt import FasterWhisperBackend
    from speech.turn_model import SmartTurn

    models = load_models_config(ROOT / "models.yaml")
    spec = models.stt.models[models.stt.default]
    whisper = FasterWhisperBackend(resolve_files(spec, base_dir=ROOT), spec)
    model = SmartTurn()
    pacing = Pacing(PHONE_FRAME, 15)  # a Whisper pass (and a model answer) lasts 0.3 s of audio
    profiles = {"default": TurnConfig(), "phone": TurnConfig().for_phone()}
    complete = [trim_trailing_silence(speech_pcm16k((QUESTIONS + STATEMENTS)[i % 20])) for i in range(args.clips)]
    paused = [PAUSED[i % len(PAUSED)] for i in range(args.clips)]
    report: dict = {"lines": {}}
    for line in ("wideband", "phone"):
        heard = (lambda pcm: pcm) if line == "wideband" else phone_line
        finished = [model.predict(pcm16_to_float(heard(pcm) + UTTERANCE_END)) for pcm in complete]
        unfinished = [model.predict(pcm16_to_float(heard(unfinished_part(t, n)) + UTTERANCE_END)) for t, n in paused]
        out: dict = {"finished_p": finished, "unfinished_p": unfinished, "profiles": {}}
        for name, config in profiles.items():
            threshold = config.turn_complete_threshold
            result: dict = {"finished_judged_unfinished": sum(p < threshold for p in finished) / len(finished),
                            "unfinished_judged_finished": sum(p >= threshold for p in unfinished) / len(unfinished)}
            ended, cuts, splits = [], 0, 0
            for pcm in complete:
                run = await listen_paced(whisper, heard(pcm) + b"\x00\x00" * int(16_000 * TAIL_S), pacing, call_mode=True,
                                         config=config, turn_model=model)
                splits += run.turns != 1
                if run.turn_ended_at_frame is not None:
                    ended.append((run.turn_ended_at_frame + 1) * 20 - len(pcm) / 32)
            for n, (text, after) in enumerate(paused):
                pcm = trim_trailing_silence(speech_with_pause(text, after, PAUSES_S[n % len(PAUSES_S)]))
                run = await listen_paced(whisper, heard(pcm) + b"\x00\x00" * int(16_000 * TAIL_S), pacing, call_mode=True,
                                         config=config, turn_model=model)
                cuts += run.turns > 1 or (run.turn_ended_at_frame is not None and (run.turn_ended_at_frame + 1) * 20 < len(pcm) / 32)
            result.update({"turn_ended_p50_ms": pct(ended, 50), "turn_ended_p95_ms": pct(ended, 95),
                           "complete_split_rate": splits / len(complete), "paused_cut_rate": cuts / len(paused)})
            out["profiles"][name] = result
            print(f"{line:<9} {name:<8} model alone: unfinished->finished {result['unfinished_judged_finished']:.0%}, "
                  f"finished->unfinished {result['finished_judged_unfinished']:.0%}; listener: cut at pause "
                  f"{result['paused_cut_rate']:.0%}, split {result['complete_split_rate']:.0%}, turn ended p50 "
                  f"{ms(result['turn_ended_p50_ms'], 6)} p95 {ms(result['turn_ended_p95_ms'], 6)}", flush=True)
        report["lines"][line] = out
    report["profiles"] = {name: config.model_dump(exclude={"backchannels"}) for name, config in profiles.items()}
    return report


def plot_phone(report: dict, png: Path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for n, line in enumerate(report["lines"]):
        data = report["lines"][line]
        left.scatter([n - 0.1] * len(data["finished_p"]), data["finished_p"], alpha=0.6, label="finished" if not n else None,
                     color="tab:green")
        left.scatter([n + 0.1] * len(data["unfinished_p"]), data["unfinished_p"], alpha=0.6,
                     label="unfinished" if not n else None, color="tab:red")
    left.axhline(0.5, color="grey", linestyle=":")
    left.set_xticks(range(len(report["lines"])), list(report["lines"]))
    left.set_ylabel("Smart Turn P(complete) at the utterance's end")
    left.legend()
    bars = [(line, name) for line in report["lines"] for name in report["lines"][line]["profiles"]]
    rates = ["paused_cut_rate", "unfinished_judged_finished", "finished_judged_unfinished"]
    width = 0.8 / len(bars)
    for n, (line, name) in enumerate(bars):
        result = report["lines"][line]["profiles"][name]
        right.bar([r + n * width for r in range(len(rates))], [result[k] * 100 for k in rates], width, label=f"{line}, {name}")
    right.set_xticks([r + width * (len(bars) - 1) / 2 for r in range(len(rates))],
                     ["listener:\ncut at the pause", "model alone:\nunfinished -> finished", "model alone:\nfinished -> unfinished"])
    right.set_ylabel("%")
    right.legend()
    save_figure(fig, png)


def plot(report: dict, png: Path) -> None:
    plt = pyplot()
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    settings = list(report["settings"])
    for n, name in enumerate(settings):
        data = report["settings"][name]
        ended = [c["turn_ended_ms"] for c in data["complete"] if c["turn_ended_ms"] is not None]
        left.scatter([n] * len(ended), ended, alpha=0.6)
        v2v = [c["voice_to_voice_ms"] for c in data["llm"] if c["voice_to_voice_ms"] is not None]
        middle.scatter([n] * len(v2v), v2v, alpha=0.6)
    labels = list(settings)
    if report.get("llm_on_nospec"):
        v2v = [c["voice_to_voice_ms"] for c in report["llm_on_nospec"]["llm"] if c["voice_to_voice_ms"] is not None]
        middle.scatter([len(settings)] * len(v2v), v2v, alpha=0.6)
        labels.append("on, no speculation")
    left.set_xticks(range(len(settings)), settings)
    left.set_ylabel("end of speech -> turn ended (ms)")
    left.set_title("complete utterances (echo)")
    middle.set_xticks(range(len(labels)), labels)
    middle.set_ylabel("end of speech -> first reply audio (ms)")
    middle.set_title(f"scripted LLM, {LLM_FIRST_TOKEN_S * 1000:.0f} ms to first token")
    rates = ["paused_cut_rate", "paused_whole_rate", "noise_stop_rate", "backchannel_interrupt_rate", "interruption_stop_rate"]
    width = 0.8 / len(settings)
    for n, name in enumerate(settings):
        right.bar([r + n * width for r in range(len(rates))], [(report["settings"][name][k] or 0) * 100 for k in rates],
                  width, label=name)
    right.set_xticks([r + width * (len(settings) - 1) / 2 for r in range(len(rates))],
                     ["cut at\nthe pause", "paused:\nanswered whole", "noise\nstopped it", "backchannel\ninterrupted",
                      "interruption\nstopped it"])
    right.tick_params(axis="x", labelsize=7)
    right.set_ylabel("%")
    right.legend()
    save_figure(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=10, help="complete clips, and as many paused clips, per setting")
    parser.add_argument("--backchannels", type=int, default=None, help="per setting (default: as many as --clips)")
    parser.add_argument("--noises", type=int, default=None, help="per setting (default: 8, or --clips if fewer)")
    parser.add_argument("--interruptions", type=int, default=None, help="per setting (default: --clips / 2)")
    parser.add_argument("--llm-clips", type=int, default=None, help="per setting (default: 8, or --clips if fewer)")
    parser.add_argument("--chat-clips", type=int, default=None, help="per setting (default: 8, or --clips if fewer)")
    parser.add_argument("--settings", default="off,on", help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--phone", action="store_true", help="16 kHz against a phone line, in-process (no graph)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "turns.json")
    parser.add_argument("--table-of", type=Path, default=None,
                        help="no run: summarize the raw clips of this report again (as this script now does) and "
                             "write it to --out with its table and plot")
    args = parser.parse_args()
    if args.table_of:
        report = json.loads(args.table_of.read_text())
        for data in report["settings"].values():
            data.update(summarize({k: data[k] for k in SECTIONS}))
        report["met"] = print_table(report)
        write_report(report, args.out, plot)
        return
    args.backchannels = args.clips if args.backchannels is None else args.backchannels
    args.noises = min(8, args.clips) if args.noises is None else args.noises
    args.interruptions = max(1, args.clips // 2) if args.interruptions is None else args.interruptions
    args.llm_clips = min(8, args.clips) if args.llm_clips is None else args.llm_clips
    args.chat_clips = min(8, args.clips) if args.chat_clips is None else args.chat_clips
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.phone:
        report = {**machine_and_date(), "clips": args.clips, **asyncio.run(phone_turns(args))}
        write_report(report, args.out.with_name("turns_phone.json"), plot_phone)
        return
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; known: {list(SETTINGS)}")
    llm = ScriptedLlm(first_token_s=LLM_FIRST_TOKEN_S).start()
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-turns-") as directory:
            path = agents_file(Path(directory), settings)
            server = start_server(args.out.parent / "bench_turns.log", f"agents={path}",
                                  env_extra={"LITELLM_API_BASE": llm.url, "LITELLM_API_KEY": API_KEY})
            measured = asyncio.run(measure(server.ws_url, settings, args))
    finally:
        if server is not None:
            server.stop()
        llm.stop()
    report = {**machine_and_date(), "commit": os.popen("git rev-parse --short HEAD").read().strip(),
              "clips": args.clips, "llm_first_token_s": LLM_FIRST_TOKEN_S, **measured}
    report["met"] = print_table(report)
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
