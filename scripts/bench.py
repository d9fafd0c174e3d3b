"""Load benchmark: N concurrent simulated callers over real websockets, against an in-process baseline.

    .venv/bin/python scripts/bench.py                    # N = 1, 2, 4; chat and call mode; 4 turns each
    .venv/bin/python scripts/bench.py --levels 1 --turns 2 --modes chat   # a quick look
    .venv/bin/python scripts/bench.py --levels 1,4 --transports voi,realtime   # /v1/realtime beside /ws

Every caller streams real (Piper) speech at real-time pace in 8192-byte frames, for several turns. Chat
callers end a turn with create_response; call callers keep streaming silence like an open microphone and
let the server find the end of the turn. With ``--transports realtime`` the same callers also speak the OpenAI
Realtime protocol on /v1/realtime through the official ``openai`` SDK (24 kHz audio, push-to-talk commit +
response.create for chat, server VAD for call). Measured at the client: voice-to-voice (the last frame with speech
-> the first reply audio frame), time to the final transcript, failed turns and dropped sessions.

The baseline runs the same Conversation class with the same models called directly in this process (no
Ray, no websocket) on the same audio at the same pace, so the report gives the graph's overhead ratio
(graph voice-to-voice / in-process voice-to-voice) from one run. Writes JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _repo_path import ROOT

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.server import TEST_API_KEY, TEST_SECRET, add_profile_arguments, profile_label, profile_options, start_server
from harness.speech import speech_pcm16k, trim_trailing_silence
from protocol import events as ev
from protocol.client import AUDIO_FRAME_BYTES, VoiClient
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.tokens import issue_token

QUESTIONS = [
    "What time does the museum open on Sunday?",
    "Can you recommend a good book for a long train ride?",
    "How far is it from the station to the old harbor?",
    "Please tell me the weather forecast for tomorrow morning.",
]
SILENCE_FRAME = b"\x00\x00" * (AUDIO_FRAME_BYTES // 2)
TURN_TIMEOUT_S = 30.0


@dataclass
class TurnResult:
    voice_to_voice_s: float | None
    transcript_s: float | None
    ok: bool


@dataclass
class CallerResult:
    turns: list[TurnResult] = field(default_factory=list)
    dropped: bool = False
    error: str = ""


def turn_audio() -> list[bytes]:
    """Each question without its trailing silence (the caller's own silence follows it)."""
    return [trim_trailing_silence(speech_pcm16k(q)) for q in QUESTIONS]


async def stream(send, pcm: bytes, pace_from: float) -> float:
    """Send PCM in 8192-byte frames at real-time pace; returns when the last frame went out."""
    last = pace_from
    for i, offset in enumerate(range(0, len(pcm), AUDIO_FRAME_BYTES)):
        await asyncio.sleep(max(0.0, pace_from + i * AUDIO_FRAME_BYTES / INPUT_BYTES_PER_SECOND - time.monotonic()))
        await send(pcm[offset : offset + AUDIO_FRAME_BYTES])
        last = time.monotonic()
    return last


# ---- through the graph ------------------------------------------------------------------------------------


async def graph_caller(url: str, mode: str, clips: list[bytes], turns: int, seed: int) -> CallerResult:
    result = CallerResult()
    try:
        client = await VoiClient.connect(url, issue_token(TEST_SECRET, "bench"))
        await client.init("stt_test", mode=mode, init_greeting=False)
        await client.until(lambda r: r.is_status("init_done"), 60)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
        result.dropped, result.error = True, f"connect: {exc}"
        return result

    async def send(frame: bytes) -> None:
        await client.send({"type": "audio"}, frame)

    try:
        for t in range(turns):
            pcm = clips[(seed + t) % len(clips)]
            last_speech = await stream(send, pcm, time.monotonic())
            if mode == "chat":
                await client.send({"type": "create_response"})
            first_audio = transcript = None
            silence_sender = asyncio.create_task(keep_silent(send)) if mode == "call" else None
            deadline = time.monotonic() + TURN_TIMEOUT_S
            try:
                while first_audio is None and time.monotonic() < deadline:
                    item = await client.recv(max(0.01, deadline - time.monotonic()))
                    if item.type == "message" and item.header["role"] == "user" and item.header.get("final"):
                        transcript = transcript or item.at
                    elif item.type == "audio":
                        first_audio = item.at
                    elif item.is_status("response_cancelled"):
                        break
                await client.drain(0.6)  # the rest of the reply audio (a caller listens to it)
            finally:
                if silence_sender:
                    silence_sender.cancel()
            result.turns.append(TurnResult(
                voice_to_voice_s=(first_audio - last_speech) if first_audio else None,
                transcript_s=(transcript - last_speech) if transcript else None,
                ok=first_audio is not None,
            ))
        await client.close()
    except Exception as exc:  # noqa: BLE001
        result.dropped, result.error = True, f"{type(exc).__name__}: {exc}"
    return result


async def keep_silent(send) -> None:
    """An open call-mode microphone: silence frames at real-time pace."""
    started = time.monotonic()
    i = 0
    while True:
        await asyncio.sleep(max(0.0, started + i * AUDIO_FRAME_BYTES / INPUT_BYTES_PER_SECOND - time.monotonic()))
        await send(SILENCE_FRAME)
        i += 1


async def realtime_caller(server, mode: str, clips: list[bytes], turns: int, seed: int) -> CallerResult:
    """The same caller on /v1/realtime through the openai SDK: 24 kHz audio in 256 ms appends."""
    import base64

    from openai import AsyncOpenAI

    from speech.audio import float_to_pcm16, pcm16_to_float, resample

    result = CallerResult()
    client = AsyncOpenAI(api_key=TEST_API_KEY, base_url=f"{server.http_url}/v1", websocket_base_url=f"{server.ws_url}/v1")
    turn = {"type": "server_vad"} if mode == "call" else None
    try:
        async with client.realtime.connect(model="stt_test") as conn:
            await conn.session.update(session={"type": "realtime", "audio": {"input": {
                "turn_detection": turn, "transcription": {"model": "whisper-1"}}}})

            async def send(frame: bytes) -> None:  # a 16 kHz frame of the clip, sent as 24 kHz
                await conn.input_audio_buffer.append(audio=base64.b64encode(
                    float_to_pcm16(resample(pcm16_to_float(frame), 16_000, 24_000))).decode())

            for t in range(turns):
                last_speech = await stream(send, clips[(seed + t) % len(clips)], time.monotonic())
                if mode == "chat":
                    await conn.input_audio_buffer.commit()
                    await conn.response.create()
                silence_sender = asyncio.create_task(keep_silent(send)) if mode == "call" else None
                first_audio = transcript = None
                try:
                    async with asyncio.timeout(TURN_TIMEOUT_S):
                        while first_audio is None:
                            event = await conn.recv()
                            if event.type == "conversation.item.input_audio_transcription.completed":
                                transcript = transcript or time.monotonic()
                            elif event.type == "response.output_audio.delta":
                                first_audio = time.monotonic()
                            elif event.type == "response.done":
                                break
                    async with asyncio.timeout(30):  # the rest of the reply (a caller listens to it)
                        while (await conn.recv()).type != "response.done":
                            pass
                except TimeoutError:
                    pass
                finally:
                    if silence_sender:
                        silence_sender.cancel()
                result.turns.append(TurnResult((first_audio - last_speech) if first_audio else None,
                                               (transcript - last_speech) if transcript else None, first_audio is not None))
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
        result.dropped, result.error = True, f"{type(exc).__name__}: {exc}"
    return result


# ---- in process ---------------------------------------------------------------------------------------------


async def inprocess_caller(mode: str, clips: list[bytes], turns: int) -> CallerResult:
    """The same Conversation and models, called directly: no Ray, no websocket, no framing."""
    from agents.config import load_agents_config
    from agents.conversation import Conversation
    from agents.services import Services
    from common.threads import iterate_in_thread
    from protocol import messages as m
    from speech.audio import pcm16_to_float
    from speech.models_config import load_models_config, resolve_files
    from speech.stt import load_stt_backend
    from speech.synthesis import SpeechEngine

    models = load_models_config(ROOT / "models.yaml")
    agents = load_agents_config(ROOT / "agents.yaml", models)
    spec = models.stt.models[models.stt.default]
    stt = load_stt_backend(spec, resolve_files(spec, base_dir=ROOT), ROOT / ".cache" / "stt")
    stt.warm_up()
    tts = SpeechEngine(models, base_dir=ROOT)

    async def transcribe(pcm: bytes, prompt):
        return (await asyncio.to_thread(stt.transcribe_batch, [(pcm16_to_float(pcm), prompt)]))[0]

    from speech.turn_model import SmartTurn

    turn_model = SmartTurn()

    async def predict_end_of_turn(pcm: bytes) -> float:
        return await asyncio.to_thread(turn_model.predict, pcm16_to_float(pcm))

    async def speak(text, voice, tone, cached):
        chunks = tts.stream(text, voice.model, voice.voice, voice.speed, tone)
        async with aclosing(iterate_in_thread(chunks)) as pieces:
            async for chunk in pieces:
                yield chunk

    events: asyncio.Queue = asyncio.Queue()

    async def emit(event) -> None:  # the conversation's typed events, read below as a client's codec would
        events.put_nowait((time.monotonic(), event))

    conv = Conversation(agent_name="stt_test", agent=agents.agents["stt_test"],
                        init=m.Init(agent_name="stt_test", mode=mode, init_greeting=False),
                        services=Services(transcribe, speak, predict_end_of_turn=predict_end_of_turn), emit=emit)
    await conv.start()
    result = CallerResult()

    async def send(frame: bytes) -> None:
        await conv.handle(m.Audio(frame))

    for t in range(turns):
        last_speech = await stream(send, clips[t % len(clips)], time.monotonic())
        if mode == "chat":
            await conv.handle(m.CreateResponse())
        silence_sender = asyncio.create_task(keep_silent(send)) if mode == "call" else None
        first_audio = transcript = None
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while first_audio is None and time.monotonic() < deadline:
            try:
                at, msg = await asyncio.wait_for(events.get(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(msg, ev.Message) and msg.role == "user" and msg.final:  # the conversation's typed events
                transcript = transcript or at
            elif isinstance(msg, ev.AudioChunk):
                first_audio = at
        await asyncio.sleep(0.6)
        if silence_sender:
            silence_sender.cancel()
        while not events.empty():
            events.get_nowait()
        result.turns.append(TurnResult((first_audio - last_speech) if first_audio else None,
                                       (transcript - last_speech) if transcript else None, first_audio is not None))
    await conv.close()
    return result


# ---- report ---------------------------------------------------------------------------------------------------


def summarize(results: list[CallerResult]) -> dict:
    v2v = [t.voice_to_voice_s * 1000 for r in results for t in r.turns if t.voice_to_voice_s is not None]
    stt = [t.transcript_s * 1000 for r in results for t in r.turns if t.transcript_s is not None]

    return {
        "turns": sum(len(r.turns) for r in results),
        "failed_turns": sum(not t.ok for r in results for t in r.turns),
        "dropped_sessions": sum(r.dropped for r in results),
        "errors": [r.error for r in results if r.error],
        "v2v_ms": {"p50": pct(v2v, 50), "p95": pct(v2v, 95), "p99": pct(v2v, 99)},
        "transcript_ms": {"p50": pct(stt, 50), "p95": pct(stt, 95)},
        "v2v_samples_ms": [round(v, 1) for v in v2v],
    }


def plot(report: dict, path: Path) -> None:
    plt = pyplot()
    modes = sorted({r["mode"] for r in report["graph"]})
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        runs = [r for r in report["graph"] if r["mode"] == mode]
        data = [r["v2v_samples_ms"] or [np.nan] for r in runs]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(runs) + 1), [f"N={r['sessions']}" for r in runs])
        base = report["inprocess"].get(mode, {}).get("v2v_ms", {}).get("p50")
        if base:
            ax.axhline(base, color="tab:green", linestyle="--", label=f"in-process p50 {base:.0f} ms")
            ax.legend(loc="upper left")
        ax.set_title(f"{mode} mode: voice-to-voice through the graph")
        ax.set_ylabel("ms (last speech frame -> first reply audio)")
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,2,4")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--modes", default="chat,call")
    parser.add_argument("--transports", default="voi", help="voi (/ws), realtime (/v1/realtime), or both")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "bench.json")
    add_profile_arguments(parser)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    modes = args.modes.split(",")
    clips = turn_audio()
    report: dict = {**machine_and_date(), "turns_per_caller": args.turns, "inprocess": {}, "graph": []}
    for mode in modes:  # the baseline first, alone on the machine
        print(f"in-process baseline, {mode} mode ...", flush=True)
        report["inprocess"][mode] = summarize([asyncio.run(inprocess_caller(mode, clips, args.turns))])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    server = start_server(args.out.parent / "bench_server.log", **profile_options(args))
    report["serve_config"] = profile_label(args)
    try:
        for transport in args.transports.split(","):
            for mode in modes:
                for n in levels:
                    print(f"graph, {transport} {mode} mode, N={n} ...", flush=True)

                    async def level() -> list[CallerResult]:
                        if transport == "realtime":
                            return await asyncio.gather(*(realtime_caller(server, mode, clips, args.turns, i) for i in range(n)))
                        return await asyncio.gather(*(graph_caller(server.ws_url, mode, clips, args.turns, i) for i in range(n)))

                    summary = summarize(asyncio.run(level()))
                    label = mode if transport == "voi" else f"rt-{mode}"  # the plot's and table's row name
                    report["graph"].append({"mode": label, "transport": transport, "sessions": n, **summary})
    finally:
        server.stop()
    for mode in modes:
        base = report["inprocess"][mode]["v2v_ms"]["p50"]
        one = next((r for r in report["graph"] if r["mode"] == mode and r["sessions"] == 1), None)
        if base and one and one["v2v_ms"]["p50"]:
            report.setdefault("overhead_ratio_n1", {})[mode] = round(one["v2v_ms"]["p50"] / base, 3)
    print(f"\n{'mode':>5} {'N':>3} {'turns':>5} {'fail':>4} {'drop':>4} {'v2v p50':>8} {'p95':>7} {'p99':>7} {'stt p50':>8}")
    for mode in modes:
        b = report["inprocess"][mode]
        print(f"{mode:>5} {'in':>3} {b['turns']:>5} {b['failed_turns']:>4} {'-':>4} {ms(b['v2v_ms']['p50'], 8)} "
              f"{ms(b['v2v_ms']['p95'], 7)} {ms(b['v2v_ms']['p99'], 7)} {ms(b['transcript_ms']['p50'], 8)}")
        for r in (r for r in report["graph"] if r["mode"] in (mode, f"rt-{mode}")):
            print(f"{r['mode']:>5} {r['sessions']:>3} {r['turns']:>5} {r['failed_turns']:>4} {r['dropped_sessions']:>4} "
                  f"{ms(r['v2v_ms']['p50'], 8)} {ms(r['v2v_ms']['p95'], 7)} {ms(r['v2v_ms']['p99'], 7)} "
                  f"{ms(r['transcript_ms']['p50'], 8)}")
    print(f"overhead ratio at N=1 (graph p50 / in-process p50): {report.get('overhead_ratio_n1')}")
    write_report(report, args.out, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
