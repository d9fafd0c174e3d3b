"""A phone you can try without a phone: plays a WAV as a caller over Twilio's Media Streams protocol.

    python scripts/phone.py speech.wav                                # the server on 127.0.0.1:8000
    python scripts/phone.py speech.wav --to +15551234567 --turns 2    # the agent of that number (phone_numbers)
    python scripts/phone.py speech.wav --url https://voice.example.com --auth-token $TWILIO_AUTH_TOKEN

It does what Twilio does on a call (harness/twilio_caller.py): posts the call webhook (signed when given the
auth token, or TWILIO_AUTH_TOKEN from the environment or .env), follows the TwiML to the media stream, listens
to the greeting, then says the WAV (8 kHz mu-law, real-time pace) and listens to the answer, for each turn.
It prints what it heard (Whisper, in this process) and the latency: the end of its speech -> the first reply
audio. ``--out`` saves everything the caller heard as a WAV.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from _repo_path import ROOT
from dotenv import dotenv_values

from harness.speech import transcribe_pcm16k
from harness.twilio_caller import TwilioCaller, dial, to_16k
from speech.audio import INPUT_RATE, float_to_pcm16, read_wav, resample, write_wav
from speech.g711 import G711_RATE


async def phone(args: argparse.Namespace) -> int:
    audio, rate = read_wav(args.wav)
    pcm = float_to_pcm16(resample(audio, rate, INPUT_RATE))
    auth_token = args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or dotenv_values(ROOT / ".env").get("TWILIO_AUTH_TOKEN")
    setup = await dial(args.url.rstrip("/"), to=args.to, auth_token=auth_token)
    print(f"webhook: agent {setup.parameters.get('agent')!r}, stream {setup.stream_url}")
    caller = await TwilioCaller.connect(setup)
    try:
        try:
            await caller.wait_media_after(0.0, args.timeout)
            await caller.wait_played_out(quiet_s=1.5, timeout=args.timeout)
            print(f"heard: {transcribe_pcm16k(to_16k(bytes(caller.heard))).strip()!r}")
        except TimeoutError:
            print("no greeting")
        latencies = []
        for turn in range(args.turns):
            heard_before = len(caller.heard)
            ended = await caller.say(pcm)
            print(f"said:  {transcribe_pcm16k(pcm).strip()!r}" if turn == 0 else "said the WAV again")
            try:
                first = await caller.wait_media_after(ended, args.timeout)
            except TimeoutError:
                print(f"no answer within {args.timeout:.0f} s", file=sys.stderr)
                return 1
            latencies.append(first - ended)
            await caller.wait_played_out(quiet_s=1.5, timeout=args.timeout)
            reply = transcribe_pcm16k(to_16k(caller.heard_since(heard_before))).strip()
            print(f"heard: {reply!r}  (first reply audio {latencies[-1] * 1000:.0f} ms after the caller stopped)")
        if caller.log.clears_at:
            print(f"the server cleared its audio {len(caller.log.clears_at)} time(s) (barge-in)")
    finally:
        started = time.monotonic()
        await caller.hang_up()
        print(f"hung up (stop) in {(time.monotonic() - started) * 1000:.0f} ms")
    if args.out:
        write_wav(args.out, bytes(caller.heard), G711_RATE)
        print(f"what the caller heard: {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's HTTP(S) base URL")
    parser.add_argument("--to", default="+15550001000", help="the number called (picks the agent: phone_numbers)")
    parser.add_argument("--auth-token", default=None, help="Twilio auth token to sign the webhook with")
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="save what the caller heard (8 kHz WAV)")
    return asyncio.run(phone(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
