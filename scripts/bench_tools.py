"""What a tool call costs a turn: end of the user's turn -> first reply audio, with and without one tool call.

    .venv/bin/python scripts/bench_tools.py                 # 20 turns each, alternating
    .venv/bin/python scripts/bench_tools.py --turns 6       # a quick look

The real graph (started here) with the scripted OpenAI-compatible LLM and an instant http tool, both on
loopback. Two agents on the same scripted model: ``plain`` (no tools) and ``tooled`` (one http tool,
``weather``). Each turn is typed in chat mode; its end is the ``create_response`` the client sends, and the
time is measured to the first audio frame of the reply (the client's clock), beside the server's own
``turn_metrics`` (``tool_ms``: the time the turn waited for its tool). Each client hears its reply out
before its next turn (a turn asked for while a reply plays waits for it: agents/turn_queue.py). Both replies begin with the same
sentence ("Here is what I found."), so their synthesis costs the same.

The tool turn makes one more LLM round trip than the plain one (the round that asks for the tool); that
round trip is measured on its own, through the same LiteLLM client, as the time from the request to the
streamed tool call. Target: tool turn p50 <= plain turn p50 + one LLM round trip (p50) + 50 ms.
Writes JSON and a PNG plot (bench_results/bench_tools.json by default; the latest run is kept in docs/bench/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _repo_path import ROOT

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import TEST_SECRET, start_server
from harness.tool_server import ToolServer
from llm.client import LlmClient, LlmRequest, LlmSettings
from llm.tool_calls import ToolCalls
from protocol.client import VoiClient
from protocol.pcm import OUTPUT_BYTES_PER_SECOND
from protocol.tokens import issue_token

QUESTIONS = {"plain": "Please check the weather in Lisbon.", "tooled": "What is the weather in Lisbon?"}
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def agents_file(directory: Path, tools_url: str) -> Path:
    voice = {"character": {"model": "piper-joe", "voice": "joe"}}
    agents = {
        "plain": {"llm_model": "scripted-model", "system_prompt": "You are Joe.", "voices": voice},
        "tooled": {"llm_model": "scripted-model", "system_prompt": "You are Joe.", "voices": voice,
                   "tool_filler_after_s": 5.0,
                   "tools": [{"type": "http", "name": "weather", "description": "The weather in a city now.",
                              "parameters": WEATHER_PARAMETERS, "url": f"{tools_url}/weather", "method": "GET"}]},
    }
    path = directory / "agents.yaml"
    path.write_text(yaml.safe_dump({"agents": agents}))
    return path


async def one_turn(client: VoiClient, question: str) -> dict[str, Any]:
    """One typed turn: ms from create_response to the reply's first audio, and the server's turn_metrics."""
    await client.send({"type": "text", "content": question})
    await client.until(lambda r: r.type == "message" and r.header.get("role") == "user")
    sent = time.monotonic()
    await client.send({"type": "create_response"})
    first_audio = None
    items = await client.until(lambda r: r.type == "turn_metrics", timeout=60)
    for item in items:
        if item.type == "audio" and first_audio is None:
            first_audio = item.at
    metrics = items[-1].header
    audio_s = sum(len(i.payload) for i in items if i.type == "audio") / OUTPUT_BYTES_PER_SECOND
    if first_audio is not None:  # a listener hears the reply out before typing again: a turn asked for while
        await asyncio.sleep(max(0.0, first_audio + audio_s - time.monotonic()))  # it plays waits for it (turn_queue)
    return {"first_audio_ms": round((first_audio - sent) * 1000, 1) if first_audio else None,
            "server_v2v_ms": metrics.get("voice_to_voice_ms"), "tool_ms": metrics.get("tool_ms")}


async def llm_round_trips(llm_url: str, count: int) -> list[float]:
    """ms from a request to its streamed tool call: the round trip a tool turn adds."""
    client = LlmClient(LlmSettings(api_base=llm_url, api_key=API_KEY))
    tools = ({"type": "function", "function": {"name": "weather", "description": "The weather in a city now.",
                                               "parameters": WEATHER_PARAMETERS}},)
    out = []
    for index in range(count + 1):  # the first request pays LiteLLM's one-off costs: not counted
        started = time.monotonic()
        async for piece in client.stream(LlmRequest("scripted-model", [{"role": "user", "content": QUESTIONS["tooled"]}],
                                                    tools=tools)):
            if isinstance(piece, ToolCalls) and index:
                out.append(round((time.monotonic() - started) * 1000, 1))
    return out


async def measure(server_url: str, llm_url: str, turns: int) -> dict[str, Any]:
    token = issue_token(TEST_SECRET, "bench-tools")
    clients = {}
    for agent in ("plain", "tooled"):
        clients[agent] = await VoiClient.connect(server_url, token)
        await clients[agent].init(agent, init_greeting=False, agent_config=None, send_turn_metrics=True)
        await clients[agent].until(lambda r: r.is_status("init_done"))
    results: dict[str, list[dict[str, Any]]] = {"plain": [], "tooled": []}
    for agent in ("plain", "tooled"):  # warm-up: the first turn of each pays one-off costs
        await one_turn(clients[agent], QUESTIONS[agent])
    for _ in range(turns):
        for agent in ("plain", "tooled"):  # alternating: both see the same machine load
            results[agent].append(await one_turn(clients[agent], QUESTIONS[agent]))
            await asyncio.sleep(0.3)
    for client in clients.values():
        await client.close()
    return {"turns": results, "llm_round_trip_ms": await llm_round_trips(llm_url, turns)}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    def stats(agent: str, key: str) -> dict[str, float | None]:
        values = [t[key] for t in raw["turns"][agent]]
        return {"p50": pct(values, 50), "p95": pct(values, 95)}

    plain, tooled = stats("plain", "first_audio_ms"), stats("tooled", "first_audio_ms")
    round_trip = {"p50": pct(raw["llm_round_trip_ms"], 50), "p95": pct(raw["llm_round_trip_ms"], 95)}
    extra = round(tooled["p50"] - plain["p50"], 1) if tooled["p50"] is not None and plain["p50"] is not None else None
    overhead = round(extra - round_trip["p50"], 1) if extra is not None and round_trip["p50"] is not None else None
    return {"plain_first_audio_ms": plain, "tool_first_audio_ms": tooled, "tool_ms": stats("tooled", "tool_ms"),
            "llm_round_trip_ms": round_trip, "tool_turn_extra_ms_p50": extra,
            "overhead_beyond_round_trip_ms_p50": overhead, "target_ms": 50.0,
            "target_met": overhead is not None and overhead <= 50.0}


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'':34}{'p50':>9}{'p95':>9}")
    for label, key in (("turn without tools: first audio", "plain_first_audio_ms"),
                       ("turn with one tool: first audio", "tool_first_audio_ms"),
                       ("  of which waiting for the tool", "tool_ms"), ("one LLM round trip", "llm_round_trip_ms")):
        print(f"{label:34}{ms(summary[key]['p50'], 9)}{ms(summary[key]['p95'], 9)}")
    print(f"tool turn - plain turn (p50): {summary['tool_turn_extra_ms_p50']} ms; beyond one LLM round trip: "
          f"{summary['overhead_beyond_round_trip_ms_p50']} ms (target <= 50 ms: "
          f"{'met' if summary['target_met'] else 'not met'})")


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    turns = report["raw"]["turns"]
    data = [[t["first_audio_ms"] for t in turns[a] if t["first_audio_ms"] is not None] for a in ("plain", "tooled")]
    ax.boxplot(data + [report["raw"]["llm_round_trip_ms"]])
    ax.set_xticks([1, 2, 3], ["no tools: first audio", "one tool: first audio", "one LLM round trip"])
    ax.set_ylabel("ms")
    ax.set_title("A tool call's cost to a turn (scripted LLM, instant loopback tool)")
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "bench_tools.json")
    args = parser.parse_args()
    llm, tools = ScriptedLlm().start(), ToolServer().start()
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-tools-") as directory:
            path = agents_file(Path(directory), tools.url)
            server = start_server(Path(directory) / "serve.log", f"agents={path}",
                                  env_extra={"LITELLM_API_BASE": llm.url, "LITELLM_API_KEY": API_KEY})
            raw = asyncio.run(measure(server.ws_url, llm.url, args.turns))
    finally:
        if server is not None:
            server.stop()
        tools.stop()
        llm.stop()
    summary = summarize(raw)
    print_table(summary)
    report = {**machine_and_date(), "commit": os.popen("git rev-parse --short HEAD").read().strip(),
              "turns": args.turns, "summary": summary, "raw": raw}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
