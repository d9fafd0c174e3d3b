"""The phone path beside /ws call mode: the same clips, the same echo agent, the same graph.

    .venv/bin/python scripts/bench_phone.py                      # N = 1 and 8 concurrent calls, 3 turns each
    .venv/bin/python scripts/bench_phone.py --levels 1 --turns 2  # a quick look

Phone callers are the simulated Twilio of harness/twilio_caller.py: the webhook, the TwiML, then 20 ms mu-law
frames at real-time pace (silence between turns, as a phone line sends). /ws callers are scripts/bench.py's
call-mode callers (16 kHz PCM16 in 8192-byte frames). Measured at the caller: the end of its speech -> the
first reply audio (``media`` on the phone), p50/p95 per level; the barge-in: the interruption's onset -> the
server's ``clear`` (N = 1, over the scripted agent's long story), beside /ws's ``user_interrupt``;
and Whisper's WER on the same clips as 16 kHz PCM and as 8 kHz mu-law (through
the codec and resampler the phone path uses), plus the echo agent's spoken reply heard back over the phone.
Writes a table, JSON and a PNG plot (bench_results/bench_phone.*).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _repo_path import ROOT
from bench import QUESTIONS, CallerResult, TurnResult, graph_caller, keep_silent, summarize, turn_audio

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import TEST_SECRET, add_profile_arguments, profile_label, profile_options, start_server
from harness.speech import phone_line, speech_pcm16k, transcribe_pcm16k, wer, write_greeting_file
from harness.twilio_caller import TwilioCaller, dial, to_16k
from protocol.client import VoiClient
from protocol.tokens import issue_token
from speech.audio import INPUT_RATE, pcm16_to_float

TURN_TIMEOUT_S = 30.0
ASK_STORY = "Tell me a long story."  # the scripted agent tells 40 sentences (harness/scripted_llm.py)
INTERRUPTION = "Stop, please wait."
SCRIPTED_NUMBER = "+15550002000"  # the phone number of the scripted agent in this benchmark's server


@dataclass
class PhoneResult(CallerResult):
    echo_wer: list[float] = field(default_factory=list)


async def phone_caller(http_url: str, clips: list[bytes], turns: int, seed: int) -> PhoneResult:
    result = PhoneResult()
    try:
        caller = await TwilioCaller.connect(await dial(http_url))
        await caller.wait_media_after(0.0, 60)  # the greeting, heard out
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
        result.dropped, result.error = True, f"connect: {exc}"
        return result
    try:
        for t in range(turns):
            index = (seed + t) % len(clips)
            heard_before = len(caller.heard)
            ended = await caller.say(clips[index])
            try:
                first = await caller.wait_media_after(ended, TURN_TIMEOUT_S)
            except TimeoutError:
                first = None
            if first is not None:
                await caller.wait_played_out(quiet_s=0.8, timeout=TURN_TIMEOUT_S)
                result.echo_wer.append(wer(QUESTIONS[index], transcribe_pcm16k(to_16k(caller.heard_since(heard_before)))))
            result.turns.append(TurnResult(voice_to_voice_s=(first - ended) if first else None, transcript_s=None,
                                           ok=first is not None))
        await caller.hang_up()
    except Exception as exc:  # noqa: BLE001
        result.dropped, result.error = True, f"{type(exc).__name__}: {exc}"
    return result


async def barge_in(http_url: str) -> float | None:
    """The interruption's first loud sample -> the server's ``clear``, in seconds (None: no clear came), over the
    scripted agent's long story (the number SCRIPTED_NUMBER)."""
    caller = await TwilioCaller.connect(await dial(http_url, to=SCRIPTED_NUMBER))
    try:
        await caller.wait_media_after(0.0, 60)
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
        ended = await caller.say(speech_pcm16k(ASK_STORY))  # the line goes on with silence
        first = await caller.wait_media_after(ended, TURN_TIMEOUT_S)
        await asyncio.sleep(max(0.0, first + 3.0 - time.monotonic()))  # three seconds into the story
        pcm = speech_pcm16k(INTERRUPTION)
        onset = time.monotonic() + float(np.flatnonzero(np.abs(pcm16_to_float(pcm)) > 0.02)[0]) / INPUT_RATE
        await caller.say(pcm + b"\x00\x00" * INPUT_RATE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not [t for t in caller.log.clears_at if t >= onset - 0.05]:
            await asyncio.sleep(0.01)
        cleared = [t for t in caller.log.clears_at if t >= onset - 0.05]
        return cleared[0] - onset if cleared else None
    finally:
        await caller.hang_up()


async def ws_barge_in(ws_url: str) -> float | None:
    """The same on /ws call mode: the interruption's onset -> ``user_interrupt`` (the Voi client's clear)."""
    client = await VoiClient.connect(ws_url, issue_token(TEST_SECRET, "bench"))
    silence = None
    try:
        await client.init("scripted", mode="call", init_greeting=False)
        await client.until(lambda r: r.is_status("init_done"), 60)
        await client.send_audio(speech_pcm16k(ASK_STORY), realtime=True)
        silence = asyncio.create_task(keep_silent(lambda frame: client.send({"type": "audio"}, frame)))
        first = (await client.until(lambda r: r.type == "audio", TURN_TIMEOUT_S))[-1].at
        await asyncio.sleep(max(0.0, first + 3.0 - time.monotonic()))
        silence.cancel()
        pcm = speech_pcm16k(INTERRUPTION)
        onset = time.monotonic() + float(np.flatnonzero(np.abs(pcm16_to_float(pcm)) > 0.02)[0]) / INPUT_RATE
        sender = asyncio.create_task(client.send_audio(pcm + b"\x00\x00" * INPUT_RATE, realtime=True))
        try:
            got = await client.until(lambda r: r.is_status("user_interrupt") and r.at >= onset - 0.05, 10)
            interrupted: float | None = got[-1].at
        except TimeoutError:
            interrupted = None
        await sender
        return interrupted - onset if interrupted is not None else None
    finally:
        if silence is not None:
            silence.cancel()
        await client.close()


def stt_wer(clips: list[bytes]) -> dict[str, float]:
    """Whisper (tiny.en, in this process) on each clip at 16 kHz and as the phone carries it."""
    wide = [wer(q, transcribe_pcm16k(c)) for q, c in zip(QUESTIONS, clips)]
    narrow = [wer(q, transcribe_pcm16k(phone_line(c))) for q, c in zip(QUESTIONS, clips)]
    return {"pcm16k": round(float(np.mean(wide)), 3), "mulaw8k": round(float(np.mean(narrow)), 3)}


def plot(report: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    runs = report["runs"]
    ax.boxplot([r["v2v_samples_ms"] or [np.nan] for r in runs], showfliers=True)
    ax.set_xticks(range(1, len(runs) + 1), [f"{r['transport']}\nN={r['sessions']}" for r in runs])
    ax.set_title("end of the caller's speech -> first reply audio (echo agent)")
    ax.set_ylabel("ms")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--barge-ins", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "bench_phone.json")
    add_profile_arguments(parser)  # (a profile brings its own models: Whisper on its GPU; the test agents still talk)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x]
    clips = turn_audio()
    report: dict = {**machine_and_date(), "turns_per_caller": args.turns, "stt_wer": stt_wer(clips), "runs": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_greeting_file()  # named by one of the test agents
    llm = ScriptedLlm().start()
    models = [] if args.serve_config else [f"models={ROOT / 'tests/integration/models.yaml'}"]
    server = start_server(args.out.parent / "bench_phone_server.log", f"agents={ROOT / 'tests/integration/agents.yaml'}",
                          *models, "phone_agent=stt_test", f'phone_numbers={{"{SCRIPTED_NUMBER}": "scripted"}}',
                          env_extra={"LITELLM_API_BASE": llm.url, "LITELLM_API_KEY": API_KEY}, **profile_options(args))
    report["serve_config"] = profile_label(args)
    try:
        for n in levels:
            for transport in ("phone", "ws"):
                print(f"{transport} call mode, N={n} ...", flush=True)

                async def level() -> list[CallerResult]:
                    if transport == "phone":
                        return await asyncio.gather(*(phone_caller(server.http_url, clips, args.turns, i) for i in range(n)))
                    return await asyncio.gather(*(graph_caller(server.ws_url, "call", clips, args.turns, i) for i in range(n)))

                results = asyncio.run(level())
                run = {"transport": transport, "sessions": n, **summarize(results)}
                echo = [w for r in results if isinstance(r, PhoneResult) for w in r.echo_wer]
                if echo:
                    run["echo_wer"] = round(float(np.mean(echo)), 3)
                report["runs"].append(run)
        print("barge-in (N=1) ...", flush=True)
        for name, measure in (("phone_clear_ms", lambda: barge_in(server.http_url)),
                              ("ws_user_interrupt_ms", lambda: ws_barge_in(server.ws_url))):
            found = [asyncio.run(measure()) for _ in range(args.barge_ins)]
            report.setdefault("barge_in", {})[name] = {
                "samples": [round(c * 1000, 1) if c is not None else None for c in found],
                "p50": pct([c * 1000 for c in found if c is not None], 50)}
    finally:
        server.stop()
        llm.stop()
    print(f"\n{'path':>6} {'N':>3} {'turns':>5} {'fail':>4} {'drop':>4} {'v2v p50':>8} {'p95':>7} {'echo WER':>8}")
    for r in report["runs"]:
        echo = f"{r['echo_wer']:.3f}" if "echo_wer" in r else "-"
        print(f"{r['transport']:>6} {r['sessions']:>3} {r['turns']:>5} {r['failed_turns']:>4} {r['dropped_sessions']:>4} "
              f"{ms(r['v2v_ms']['p50'], 8)} {ms(r['v2v_ms']['p95'], 7)} {echo:>8}")
    print(f"Whisper WER on the clips: {report['stt_wer']} (16 kHz PCM vs 8 kHz mu-law)")
    print(f"barge-in, the interruption's onset -> phone clear / ws user_interrupt: {report['barge_in']}")
    write_report(report, args.out, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
