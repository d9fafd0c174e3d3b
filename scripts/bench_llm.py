"""Chat-mode voice-to-voice with an LLM persona: the scripted instant LLM (through LiteLLM to loopback) and the
bundled local LLM (SmolLM2-135M in the LocalLLM deployment), over real websockets on the real graph.

    .venv/bin/python scripts/bench_llm.py                 # 20 turns per agent
    .venv/bin/python scripts/bench_llm.py --turns 5       # a quick look

Each turn streams a Piper question at real-time pace, then create_response. Measured at the client: end of the
user's audio (the create_response) -> the first reply audio frame. The server's per-turn log line gives the
share of the LLM (transcript final -> first token) and of the first TTS chunk. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path

from _repo_path import ROOT

from harness.report import machine_and_date, ms, pct, write_report
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import TEST_SECRET, start_server
from harness.speech import speech_pcm16k, trim_trailing_silence
from protocol.client import VoiClient
from protocol.tokens import issue_token

QUESTIONS = [
    "What time does the museum open on Sunday?",
    "Can you recommend a good book for a long train ride?",
    "How far is it from the station to the old harbor?",
    "What is a good name for a small black cat?",
]
AGENTS = {"scripted": "scripted instant LLM (LiteLLM -> loopback)", "assistant": "local LLM (SmolLM2-135M, llama.cpp)"}
_TURN_LINE = re.compile(r"turn speech=\d+ agent=(\w+) mode=chat (.*?) speech_s=")


async def run_agent(url: str, agent: str, turns: int) -> list[float | None]:
    client = await VoiClient.connect(url, issue_token(TEST_SECRET, "bench"))
    await client.init(agent, mode="chat", init_greeting=False)
    await client.until(lambda r: r.is_status("init_done"), 60)
    clips = [trim_trailing_silence(speech_pcm16k(q)) for q in QUESTIONS]
    out: list[float | None] = []
    for t in range(turns):
        await client.send_audio(clips[t % len(clips)], realtime=True)
        await client.send({"type": "create_response"})
        end_of_audio = time.monotonic()
        first_audio = None
        deadline = end_of_audio + 60
        while first_audio is None and time.monotonic() < deadline:
            item = await client.recv(max(0.01, deadline - time.monotonic()))
            if item.type == "audio":
                first_audio = item.at
            elif item.is_status("response_cancelled"):
                break
        out.append((first_audio - end_of_audio) * 1000 if first_audio else None)
        await client.drain(0.8)  # the rest of the reply (and the next turn starts after it)
    await client.close()
    return out


def server_stages(log_text: str, agent: str) -> dict[str, list[float]]:
    stages: dict[str, list[float]] = {}
    for match in _TURN_LINE.finditer(log_text):
        if match.group(1) != agent:
            continue
        for key, value in re.findall(r"(\w+_ms)=(-?\d+)", match.group(2)):
            stages.setdefault(key, []).append(float(value))
        marks = {k: float(v) for k, v in re.findall(r"(\w+)@(-?\d+)", match.group(2))}
        if "first_text_to_tts" in marks and "transcript_final" in marks:  # the LLM's share: until the first piece
            stages.setdefault("llm_first_piece_ms", []).append(marks["first_text_to_tts"] - marks["transcript_final"])
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "bench_llm.json")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    llm = ScriptedLlm(delay_scale=0.0).start()
    log_path = ROOT / "bench_results" / "bench_llm_server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(log_path, f"agents={ROOT / 'tests' / 'integration' / 'agents.yaml'}",
                          env_extra={"LITELLM_API_BASE": llm.url, "LITELLM_API_KEY": API_KEY})
    report: dict = {**machine_and_date(), "turns": args.turns, "agents": {}}
    try:
        for agent in AGENTS:
            print(f"{AGENTS[agent]}: {args.turns} chat turns ...", flush=True)
            v2v = asyncio.run(run_agent(server.ws_url, agent, args.turns))
            time.sleep(1.5)  # the last turn's log line
            stages = server_stages(log_path.read_text(errors="replace"), agent)
            ok = [v for v in v2v if v is not None]
            report["agents"][agent] = {
                "llm": AGENTS[agent], "turns": len(v2v), "failed": len(v2v) - len(ok),
                "v2v_ms": {"p50": pct(ok, 50), "p95": pct(ok, 95)},
                "server_stages_ms": {k: {"p50": pct(v, 50), "p95": pct(v, 95)} for k, v in stages.items()},
            }
    finally:
        server.stop()
        llm.stop()
    print(f"\n{'agent':>10} {'turns':>5} {'fail':>4} {'v2v p50':>8} {'p95':>6} {'stt p50':>8} {'llm 1st tok p50':>16} "
          f"{'p95':>6} {'llm 1st piece p50':>18} {'p95':>6} {'tts 1st p50':>12}")
    for agent, r in report["agents"].items():
        s = r["server_stages_ms"]

        def g(key: str, q: str) -> float | None:
            return (s.get(key) or {}).get(q)

        print(f"{agent:>10} {r['turns']:>5} {r['failed']:>4} {ms(r['v2v_ms']['p50'], 8)} {ms(r['v2v_ms']['p95'], 6)} "
              f"{ms(g('stt_final_ms', 'p50'), 8)} {ms(g('llm_first_token_ms', 'p50'), 16)} {ms(g('llm_first_token_ms', 'p95'), 6)} "
              f"{ms(g('llm_first_piece_ms', 'p50'), 18)} {ms(g('llm_first_piece_ms', 'p95'), 6)} "
              f"{ms(g('tts_first_audio_ms', 'p50'), 12)}")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
