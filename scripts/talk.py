"""A command-line voice client: streams a WAV file to an agent and saves the spoken reply.

    python scripts/talk.py speech.wav --agent stt_test            # real-time pace, like a microphone
    python scripts/talk.py speech.wav --agent stt_test --fast --turns 10
    python scripts/talk.py speech.wav --url wss://host:8443 --cafile ca.pem
    python scripts/talk.py speech.wav --format webm               # sent as WebM/Opus, as a browser records

The WAV may have any sample rate and channel count (it is converted to 16 kHz mono). The token is taken
from --token, or minted from TOKEN_SECRET_KEY (environment or .env) when the server is yours.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
from pathlib import Path

from _repo_path import ROOT

from common.settings import load_secrets
from harness.media import compress
from protocol.client import VoiClient, reply_audio
from protocol.pcm import INPUT_BYTES_PER_SECOND
from protocol.tokens import issue_token
from speech.audio import INPUT_RATE, OUTPUT_RATE, float_to_pcm16, read_wav, resample, write_wav


def _text(item_header: dict) -> str:
    return " ".join(p.get("text", "") for p in item_header.get("content", []) if p.get("type") == "text")


async def talk(args: argparse.Namespace) -> int:
    audio, rate = read_wav(args.wav)
    pcm = float_to_pcm16(resample(audio, rate, INPUT_RATE))
    token = args.token or issue_token(
        load_secrets(dotenv_path=ROOT / ".env", required=("TOKEN_SECRET_KEY",)).token_secret_key, "talk.py"
    )
    context = None
    if args.url.startswith("wss://"):
        context = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    client = await VoiClient.connect(args.url, token, context)
    await client.init(args.agent, mode="chat", init_greeting=not args.no_greeting, input_audio_format=args.format)
    compressed = compress(pcm, args.format) if args.format != "pcm16" else None
    first = await client.recv(args.timeout)
    if first.type == "error":
        print(f"server refused: {first.header.get('error')}", file=sys.stderr)
        return 1
    await client.drain(1.0)  # let the greeting (if any) arrive
    latencies: list[float] = []
    out = bytearray()
    for turn in range(args.turns):
        if compressed is not None:  # one file per turn, as a push-to-talk recorder makes
            last_frame = await client.send_compressed(compressed, len(pcm) / INPUT_BYTES_PER_SECOND, realtime=not args.fast)
        else:
            last_frame = await client.send_audio(pcm, realtime=not args.fast)
        await client.send({"type": "create_response"})
        items = await client.until(lambda r: r.is_status("response_done") or r.is_status("response_cancelled"), args.timeout)
        if items[-1].is_status("response_cancelled"):
            print(f"turn {turn + 1}: no speech heard (response_cancelled)")
            continue
        reply = [i for i in items if i.type == "message" and i.header.get("role") == "assistant"][-1]
        speech_id = str(reply.header["id"])
        audio_items = [i for i in items if i.type == "audio" and i.header.get("speech_id") == speech_id]
        if not audio_items:
            audio_items = await client.until(lambda r: r.type == "audio" and r.header.get("speech_id") == speech_id, args.timeout)
            items += audio_items
        latency = audio_items[0].at - last_frame
        latencies.append(latency)
        items += await client.drain(args.quiet)
        user = [i for i in items if i.type == "message" and i.header.get("role") == "user"]
        for error in (i for i in items if i.type == "error"):
            print(f"  error: {error.header.get('error')}")
        print(f"turn {turn + 1}: you said: {_text(user[-1].header) if user else '(nothing)'}")
        print(f"        agent said: {_text(reply.header)}")
        print(f"        last audio frame -> first reply audio: {latency * 1000:.0f} ms")
        out = bytearray(reply_audio(items, speech_id))
    await client.close()
    if out:
        write_wav(args.out, bytes(out), OUTPUT_RATE)
        print(f"reply audio ({len(out) / 2 / OUTPUT_RATE:.1f} s, 24 kHz) written to {args.out}")
    if len(latencies) > 1:
        print(f"latency over {len(latencies)} turns: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"min {min(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    return 0 if latencies else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Talk to a Voi agent with a WAV file.")
    parser.add_argument("wav", type=Path)
    parser.add_argument("--agent", default="stt_test")
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--token", help="access token (default: minted from TOKEN_SECRET_KEY)")
    parser.add_argument("--fast", action="store_true", help="send audio as fast as possible, not in real time")
    parser.add_argument("--turns", type=int, default=1, help="send the same audio this many turns")
    parser.add_argument("--out", type=Path, default=Path("reply.wav"))
    parser.add_argument("--cafile", help="CA certificate for wss:// with a self-signed certificate")
    parser.add_argument("--insecure", action="store_true", help="wss:// without certificate checks")
    parser.add_argument("--no-greeting", action="store_true")
    parser.add_argument("--format", default="pcm16", choices=["pcm16", "webm", "ogg", "mp4"],
                        help="input_audio_format: compressed ones are made from the WAV with PyAV")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--quiet", type=float, default=1.0, help="seconds of silence that end a reply")
    return asyncio.run(talk(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
