"""Turn-taking benchmark: the end-of-turn model against the silence timer, side by side in one run.

    .venv/bin/python scripts/bench_turns.py                 # 20 complete + 20 paused clips, 10 backchannels
    .venv/bin/python scripts/bench_turns.py --clips 6       # a smoke run
    .venv/bin/python scripts/bench_turns.py --phone         # 16 kHz against a phone line, in-process

For each of ``turn_detection=timer`` and ``turn_detection=model`` a real graph is started (default agents:
the echo agent) and one client in call mode streams Piper-made clips at real-time pace over a websocket,
each followed by silence, as a microphone would:
- complete utterances (questions and statements): end of speech -> turn ended (``response_created``) and
  voice-to-voice (first reply audio), p50/p95;
- the same kind of sentences with a pause of 0.6-1.2 s put between two words (the sentence is spoken in
  one go and cut, so the first part sounds unfinished): the rate of turns cut at the pause (more than one
  ``response_created``, or one before the sentence ended);
- backchannels ("Yeah.", "Okay.", ...) spoken over the echo's reply: the rate that interrupted it or
  started a turn; real interruptions ("Wait, stop, ...") over a reply: the rate that stopped it and how
  long after the speech began ``user_interrupt`` came.
After each reply the client sends ``interrupt`` (as a client that stops playback), so the next clip is
not spoken over the agent. Prints a table, writes JSON (default bench_results/turns.json) and a PNG.

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
import time
from pathlib import Path

import numpy as np
from _repo_path import ROOT

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.server import TEST_SECRET, start_server
from harness.speech import phone_line, speech_pcm16k, speech_with_pause, trim_trailing_silence, unfinished_part
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
PAUSED = [  # (sentence, words before the pause)
    ("I would like to book a table for four people tonight.", 8), ("My name is John and I live in Berlin.", 5),
    ("Could you tell me the way to the train station please?", 7), ("We should leave at eight because the traffic is bad.", 4),
    ("I was thinking that we could go to the cinema.", 4), ("Tomorrow I have to go to the dentist at ten.", 7),
    ("The best thing about this city is the food.", 6), ("I need a room with two beds for three nights.", 6),
    ("Can you remind me to call my mother this evening?", 6), ("She said that the shop opens at nine.", 3),
]
PAUSES_S = [0.6, 0.8, 1.0, 1.2]
BACKCHANNELS = ["Yeah.", "Okay.", "Right.", "Sure.", "Uh-huh."]
INTERRUPTIONS = ["Wait, stop, I have a question.", "Sorry, can I ask something?", "No, that is not what I meant."]
TAIL_S = 2.6  # silence after each clip: more than the model's maximum wait (2 s)


def speech_onset_s(pcm: bytes, threshold: float = 0.02) -> float:
    loud = np.flatnonzero(np.abs(pcm16_to_float(pcm)) > threshold)
    return float(loud[0]) / 16_000 if loud.size else 0.0


async def stop_reply(client: VoiClient, items: list[Received]) -> None:
    """Stop the reply's playback as a client would (``interrupt``), and let the server settle."""
    replies = [i for i in items if i.type == "audio"]
    if replies:
        await client.send({"type": "interrupt", "speech_id": replies[-1].header["speech_id"], "interrupted_at": 0.2})
    await client.drain(0.6)


async def one_clip(client: VoiClient, pcm: bytes) -> tuple[list[Received], float, float]:
    """Streams ``pcm`` and TAIL_S of silence; returns what came back, when speech ended and when it began."""
    started = time.monotonic()
    sender = asyncio.create_task(client.send_audio(pcm + b"\x00\x00" * int(16_000 * TAIL_S), realtime=True))
    items: list[Received] = []
    while not sender.done():
        try:
            items.append(await client.recv(0.2))
        except TimeoutError:
            continue
    items += await client.drain(0.5)
    return items, started + len(pcm) / INPUT_BYTES_PER_SECOND, started + speech_onset_s(pcm)


def created(items: list[Received]) -> list[Received]:
    return [i for i in items if i.is_status("response_created")]


async def complete_clips(client: VoiClient, clips: list[str]) -> list[dict]:
    out = []
    for text in clips:
        pcm = trim_trailing_silence(speech_pcm16k(text))
        items, speech_end, _ = await one_clip(client, pcm)
        starts = created(items)
        audio = [i for i in items if i.type == "audio" and starts and i.at >= starts[0].at]
        out.append({"text": text, "turns": len(starts),
                    "turn_ended_ms": (starts[0].at - speech_end) * 1000 if starts else None,
                    "voice_to_voice_ms": (audio[0].at - speech_end) * 1000 if audio else None})
        await stop_reply(client, items)
    return out


async def paused_clips(client: VoiClient, clips: list[tuple[str, int]]) -> list[dict]:
    out = []
    for n, (text, after) in enumerate(clips):
        pause = PAUSES_S[n % len(PAUSES_S)]
        pcm = trim_trailing_silence(speech_with_pause(text, after, pause))
        items, speech_end, _ = await one_clip(client, pcm)
        starts = created(items)
        cut = len(starts) > 1 or (bool(starts) and starts[0].at < speech_end)
        out.append({"text": text, "pause_s": pause, "turns": len(starts), "cut": cut})
        await stop_reply(client, items)
    return out


async def over_reply(client: VoiClient, texts: list[str]) -> list[dict]:
    """Each text spoken 0.5 s into the echo's reply to a statement."""
    out = []
    for n, text in enumerate(texts):
        lead = trim_trailing_silence(speech_pcm16k(STATEMENTS[1 + n % (len(STATEMENTS) - 1)]))
        sender = asyncio.create_task(client.send_audio(lead + b"\x00\x00" * 16_000 * 8, realtime=True))
        items = await client.until(lambda r: r.type == "audio", 30)
        await asyncio.sleep(0.5)
        sender.cancel()
        pcm = speech_pcm16k(text)
        got, _, onset = await one_clip(client, pcm)
        items += got
        interrupts = [i for i in got if i.is_status("user_interrupt")]
        out.append({"text": text, "interrupted": bool(interrupts), "turns": len(created(got)),
                    "interrupt_ms": (interrupts[0].at - onset) * 1000 if interrupts else None})
        await stop_reply(client, items)
    return out


async def run_mode(mode: str, args: argparse.Namespace) -> dict:
    log = args.out.parent / f"bench_turns_{mode}.log"
    server = start_server(log, f"turn_detection={mode}")
    try:
        client = await VoiClient.connect(server.ws_url, issue_token(TEST_SECRET, "bench"))
        await client.init("stt_test", mode="call", init_greeting=False)
        await client.until(lambda r: r.is_status("init_done"), 60)
        n = args.clips
        complete = await complete_clips(client, [(QUESTIONS + STATEMENTS)[i % 20] for i in range(n)])
        paused = await paused_clips(client, [PAUSED[i % len(PAUSED)] for i in range(n)])
        backchannels = await over_reply(client, [BACKCHANNELS[i % len(BACKCHANNELS)] for i in range(args.backchannels)])
        interruptions = await over_reply(client, [INTERRUPTIONS[i % len(INTERRUPTIONS)] for i in range(args.interruptions)])
        await client.close()
    finally:
        server.stop()
    ended = [c["turn_ended_ms"] for c in complete]
    v2v = [c["voice_to_voice_ms"] for c in complete]
    return {
        "turn_ended_p50_ms": pct(ended, 50), "turn_ended_p95_ms": pct(ended, 95),
        "voice_to_voice_p50_ms": pct(v2v, 50), "voice_to_voice_p95_ms": pct(v2v, 95),
        "complete_split_rate": sum(c["turns"] != 1 for c in complete) / max(1, len(complete)),
        "paused_cut_rate": sum(p["cut"] for p in paused) / max(1, len(paused)),
        "backchannel_interrupt_rate": sum(b["interrupted"] or b["turns"] > 0 for b in backchannels) / max(1, len(backchannels)),
        "interruption_stop_rate": sum(i["interrupted"] for i in interruptions) / max(1, len(interruptions)),
        "interrupt_p50_ms": pct([i["interrupt_ms"] for i in interruptions], 50),
        "complete": complete, "paused": paused, "backchannels": backchannels, "interruptions": interruptions,
    }


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
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    modes = list(report["modes"])
    for n, mode in enumerate(modes):
        ended = [c["turn_ended_ms"] for c in report["modes"][mode]["complete"] if c["turn_ended_ms"] is not None]
        left.scatter([n] * len(ended), ended, alpha=0.6)
    left.set_xticks(range(len(modes)), modes)
    left.set_ylabel("end of speech -> turn ended (ms)")
    left.set_title("complete utterances")
    rates = ["paused_cut_rate", "backchannel_interrupt_rate", "interruption_stop_rate"]
    width = 0.8 / len(modes)
    for n, mode in enumerate(modes):
        right.bar([r + n * width for r in range(len(rates))], [report["modes"][mode][k] * 100 for k in rates],
                  width, label=mode)
    right.set_xticks([r + width * (len(modes) - 1) / 2 for r in range(len(rates))],
                     ["cut at the pause", "backchannel interrupted", "interruption stopped it"])
    right.set_ylabel("%")
    right.legend()
    save_figure(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20, help="complete clips, and as many paused clips")
    parser.add_argument("--backchannels", type=int, default=10)
    parser.add_argument("--interruptions", type=int, default=5)
    parser.add_argument("--modes", default="timer,model")
    parser.add_argument("--phone", action="store_true", help="16 kHz against a phone line, in-process (no graph)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "turns.json")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.phone:
        report = {**machine_and_date(), "clips": args.clips, **asyncio.run(phone_turns(args))}
        write_report(report, args.out.with_name("turns_phone.json"), plot_phone)
        return
    report = {**machine_and_date(), "clips": args.clips, "modes": {}}
    for mode in args.modes.split(","):
        report["modes"][mode] = asyncio.run(run_mode(mode, args))
    print(f"{'mode':<6} {'ended p50':>10} {'ended p95':>10} {'v2v p50':>9} {'v2v p95':>9} {'cut@pause':>10} "
          f"{'backch.':>8} {'stops':>6} {'stop p50':>9}")
    for mode, r in report["modes"].items():
        print(f"{mode:<6} {ms(r['turn_ended_p50_ms'], 10)} {ms(r['turn_ended_p95_ms'], 10)} {ms(r['voice_to_voice_p50_ms'], 9)} "
              f"{ms(r['voice_to_voice_p95_ms'], 9)} {r['paused_cut_rate']:>10.0%} {r['backchannel_interrupt_rate']:>8.0%} "
              f"{r['interruption_stop_rate']:>6.0%} {ms(r['interrupt_p50_ms'], 9)}")
    write_report(report, args.out, plot)


if __name__ == "__main__":
    main()
