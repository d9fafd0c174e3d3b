"""Speech recognition benchmark: streaming vs offline WER, final-transcript latency, partial cadence,
real-time factor, at 1, 2 and 4 concurrent sessions with batching on and off.

    .venv/bin/python scripts/bench_stt.py            # full run (about 10 minutes on 2 CPU cores)
    .venv/bin/python scripts/bench_stt.py --quick    # fewer clips and levels, for a smoke run
    .venv/bin/python scripts/bench_stt.py --phone    # 16 kHz against a phone line (8 kHz mu-law), in-process

Fixtures are generated with Piper (several speeds, with and without added white noise) and cached. Every
session streams real speech at real-time pace in 8192-byte frames over a real websocket to a real graph
(started by this script), then sends ``create_response``; times are measured at the client.
Prints a table and writes JSON (default bench_results/stt.json).

``--phone`` starts no graph: each clip is transcribed as recorded (16 kHz) and as a caller is heard
(harness.speech.phone_line: 8 kHz mu-law in 20 ms frames, back to 16 kHz), by the long-form pass and by the
real Listener and Whisper streaming it in 20 ms frames on a virtual clock (harness/paced_listening.py);
writes bench_results/stt_phone.json and a PNG.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from pathlib import Path

import numpy as np
from _repo_path import ROOT

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.server import TEST_SECRET, add_profile_arguments, profile_label, profile_options, start_server
from harness.speech import phone_line, speech_pcm16k, wer
from protocol.client import VoiClient
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.tokens import issue_token
from speech.audio import float_to_pcm16, pcm16_to_float

SENTENCES = [
    "Could you tell me the way to the train station please?",
    "I would like to book a table for two people tomorrow evening.",
    "The weather has been unusually warm for this time of the year.",
    "Please remind me to call my sister after lunch on Friday.",
    "Our flight was delayed because of a storm over the mountains.",
    "She bought a new bicycle and rode it all the way to the coast.",
]
SPEEDS = [0.85, 1.0, 1.2]
NOISE_SNR_DB = 15.0


def with_noise(pcm: bytes, snr_db: float, seed: int) -> bytes:
    audio = pcm16_to_float(pcm)
    power = float(np.mean(audio**2)) or 1e-8
    noise = np.random.default_rng(seed).normal(0, np.sqrt(power / 10 ** (snr_db / 10)), len(audio))
    return float_to_pcm16(audio + noise)


def fixtures(quick: bool) -> list[dict]:
    clips = []
    sentences = SENTENCES[:3] if quick else SENTENCES
    speeds = [1.0, 1.2] if quick else SPEEDS
    for i, text in enumerate(sentences):
        for speed in speeds:
            clean = speech_pcm16k(text, speed)
            clips.append({"text": text, "speed": speed, "noise": False, "pcm": clean})
            clips.append({"text": text, "speed": speed, "noise": True, "pcm": with_noise(clean, NOISE_SNR_DB, i)})
    return clips


def default_backend():  # type: ignore[no-untyped-def]
    """models.yaml's default STT model, in this process."""
    from speech.models_config import load_models_config, resolve_files
    from speech.stt import FasterWhisperBackend

    models = load_models_config(ROOT / "models.yaml")
    spec = models.stt.models[models.stt.default]
    return FasterWhisperBackend(resolve_files(spec, base_dir=ROOT), spec)


def offline(clips: list[dict]) -> dict:
    """The same model, one long-form pass per clip, in this process: the WER and RTF to compare against."""
    backend = default_backend()
    backend.transcribe(pcm16_to_float(clips[0]["pcm"]))
    wers, compute, audio_s = [], 0.0, 0.0
    for clip in clips:
        audio = pcm16_to_float(clip["pcm"])
        started = time.perf_counter()
        text = backend.transcribe(audio).text
        compute += time.perf_counter() - started
        audio_s += len(audio) / 16_000
        wers.append(wer(clip["text"], text))
    return {"wer": float(np.mean(wers)), "rtf": compute / audio_s, "streaming_rtf": streaming_rtf(backend, clips)}


def streaming_rtf(backend, clips: list[dict]) -> float:
    """Whisper time spent by the streaming transcriber (an update every 0.5 s, then the final pass) per
    second of audio: the compute a session costs, measured in this process with the same model."""
    from speech.streaming import StreamingTranscriber

    spent = 0.0

    async def transcribe(pcm: bytes, prompt):
        nonlocal spent
        started = time.perf_counter()
        result = backend.transcribe_batch([(pcm16_to_float(pcm), prompt)])[0]
        spent += time.perf_counter() - started
        return result

    async def run() -> None:
        for clip in clips:
            streamer = StreamingTranscriber(transcribe)
            for offset in range(0, len(clip["pcm"]), 8192):
                streamer.add(clip["pcm"][offset : offset + 8192])
                if streamer.due():
                    await streamer.update()
            await streamer.finish()

    asyncio.run(run())
    return spent / (sum(len(c["pcm"]) for c in clips) / INPUT_BYTES_PER_SECOND)


async def one_session(url: str, clips: list[dict]) -> list[dict]:
    client = await VoiClient.connect(url, issue_token(TEST_SECRET, "bench_stt"))
    await client.init("stt_test", init_greeting=False)
    await client.until(lambda r: r.is_status("init_done"), 60)
    results = []
    for clip in clips:
        first_frame = time.monotonic()
        sender = asyncio.create_task(client.send_audio(clip["pcm"], realtime=True))
        partials: list[float] = []
        final = None
        while True:
            try:
                item = await client.recv(0.05)
            except TimeoutError:
                item = None
            if sender.done() and not hasattr(sender, "_create_sent"):
                sender._create_sent = True  # type: ignore[attr-defined]
                last_frame = sender.result()
                await client.send({"type": "create_response"})
            if item is None:
                continue
            if item.type == "message" and item.header["role"] == "user":
                if item.header.get("final") and hasattr(sender, "_create_sent"):
                    final = item
                elif not item.header.get("final"):
                    partials.append(item.at)
            if item.type == "status" and item.header["status"] in ("response_done", "response_cancelled"):
                break
        await client.drain(0.3)  # the echo's audio
        text = " ".join(p["text"] for p in final.header["content"]) if final else ""
        results.append({
            "wer": wer(clip["text"], text),
            "final_after_last_frame_s": (final.at - last_frame) if final else None,
            "first_partial_s": (partials[0] - first_frame) if partials else None,
            "partial_intervals_s": [b - a for a, b in zip(partials, partials[1:])],
            "audio_s": len(clip["pcm"]) / INPUT_BYTES_PER_SECOND,
        })
    await client.close()
    return results


async def run_level(url: str, clips: list[dict], sessions: int) -> dict:
    per_session = await asyncio.gather(*(one_session(url, clips) for _ in range(sessions)))
    rows = [r for session in per_session for r in session]
    finals = [r["final_after_last_frame_s"] for r in rows]
    intervals = [i for r in rows for i in r["partial_intervals_s"]]
    return {
        "sessions": sessions,
        "turns": len(rows),
        "wer": float(np.mean([r["wer"] for r in rows])),
        "final_p50_ms": (pct(finals, 50, None) or 0) * 1000,
        "final_p95_ms": (pct(finals, 95, None) or 0) * 1000,
        "first_partial_p50_ms": (pct([r["first_partial_s"] for r in rows], 50, None) or 0) * 1000,
        "partial_interval_p50_ms": (pct(intervals, 50, None) or 0) * 1000,
        "missing_finals": sum(f is None for f in finals),
    }


PHONE_PACING_FRAMES = 15  # a Whisper pass lasts 0.3 s of audio (15 phone frames of 20 ms)


async def phone_rows(clips: list[dict]) -> list[dict]:
    from harness.paced_listening import Pacing, listen_paced

    backend = default_backend()
    rows = []
    for clip in clips:
        row = {k: clip[k] for k in ("text", "speed", "noise")}
        for line, pcm in (("wideband", clip["pcm"]), ("phone", phone_line(clip["pcm"]))):
            offline_text = backend.transcribe(pcm16_to_float(pcm)).text
            streamed = await listen_paced(backend, pcm + b"\x00\x00" * 8_000, Pacing(640, PHONE_PACING_FRAMES))
            row[line] = {"offline": offline_text, "offline_wer": wer(clip["text"], offline_text),
                         "streaming": streamed.final, "streaming_wer": wer(clip["text"], streamed.final)}
        rows.append(row)
        print(f"  {row['wideband']['streaming_wer']:.2f} / {row['phone']['streaming_wer']:.2f}  {clip['text'][:50]} "
              f"(x{clip['speed']}{', noise' if clip['noise'] else ''})", flush=True)
    return rows


def phone_summary(rows: list[dict]) -> dict:
    out: dict = {}
    for line in ("wideband", "phone"):
        for subset, keep in (("all", lambda r: True), ("clean", lambda r: not r["noise"]), ("noisy", lambda r: r["noise"])):
            chosen = [r[line] for r in rows if keep(r)]
            out[f"{line}_{subset}"] = {k: float(np.mean([c[k] for c in chosen])) if chosen else None
                                       for k in ("offline_wer", "streaming_wer")}
    return out


def plot_phone(report: dict, png: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    subsets, width = ["all", "clean", "noisy"], 0.2
    for n, (line, kind) in enumerate([(w, k) for w in ("wideband", "phone") for k in ("offline_wer", "streaming_wer")]):
        ax.bar([i + n * width for i in range(len(subsets))], [report["summary"][f"{line}_{s}"][kind] * 100 for s in subsets],
               width, label=f"{line}, {kind.removesuffix('_wer')}")
    ax.set_xticks([i + 1.5 * width for i in range(len(subsets))], subsets)
    ax.set_ylabel("WER (%)")
    ax.set_title("Whisper on 16 kHz speech and on a phone line (8 kHz mu-law)")
    ax.legend()
    save_figure(fig, png)


def run_phone(args: argparse.Namespace) -> int:
    clips = fixtures(args.quick)
    print(f"{len(clips)} clips: WER wideband / phone line (streaming)", flush=True)
    rows = asyncio.run(phone_rows(clips))
    report = {**machine_and_date(), "clips": len(clips), "summary": phone_summary(rows), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n{'clips':<8} {'16k offline':>11} {'16k stream':>10} {'phone offline':>13} {'phone stream':>12}")
    for subset in ("all", "clean", "noisy"):
        wide, phone = report["summary"][f"wideband_{subset}"], report["summary"][f"phone_{subset}"]
        print(f"{subset:<8} {wide['offline_wer']:>11.3f} {wide['streaming_wer']:>10.3f} {phone['offline_wer']:>13.3f} "
              f"{phone['streaming_wer']:>12.3f}")
    write_report(report, args.out.with_name("stt_phone.json"), plot_phone)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--levels", default=None, help="comma-separated session counts (default 1,2,4)")
    parser.add_argument("--phone", action="store_true", help="16 kHz against a phone line, in-process (no graph)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "stt.json")
    add_profile_arguments(parser)
    args = parser.parse_args(argv)
    if args.phone:
        return run_phone(args)
    levels = [int(x) for x in (args.levels or ("1,2" if args.quick else "1,2,4")).split(",")]
    clips = fixtures(args.quick)
    print(f"{len(clips)} clips, {sum(len(c['pcm']) for c in clips) / INPUT_BYTES_PER_SECOND:.0f} s of speech; offline baseline ...", flush=True)
    base = offline(clips)
    report: dict = {"machine": f"{platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}",
                    "date": time.strftime("%Y-%m-%d"), "clips": len(clips), "offline": base, "runs": [],
                    "serve_config": profile_label(args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for batching in (True, False):
        log = args.out.parent / f"stt_server_{'batch' if batching else 'nobatch'}.log"
        server = start_server(log, *([] if batching else ["stt_batch_max_size=1"]), **profile_options(args))
        try:
            for n in levels:
                print(f"batching={'on' if batching else 'off'} sessions={n} ...", flush=True)
                result = asyncio.run(run_level(server.ws_url, clips, n))
                result["batching"] = batching
                report["runs"].append(result)
        finally:
            server.stop()
    header = f"{'batching':>8} {'sess':>4} {'turns':>5} {'WER':>6} {'final p50':>9} {'final p95':>9} {'1st partial':>11} {'partial every':>13}"
    print(f"\noffline (same model, long-form): WER {base['wer']:.3f}, RTF {base['rtf']:.3f}; "
          f"streaming RTF (Whisper time per audio second, 1 session) {base['streaming_rtf']:.3f}\n{header}")
    for r in report["runs"]:
        print(f"{'on' if r['batching'] else 'off':>8} {r['sessions']:>4} {r['turns']:>5} {r['wer']:>6.3f} "
              f"{ms(r['final_p50_ms'], 9)} {ms(r['final_p95_ms'], 9)} {ms(r['first_partial_p50_ms'], 11)} "
              f"{ms(r['partial_interval_p50_ms'], 13)}")
    print()
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
