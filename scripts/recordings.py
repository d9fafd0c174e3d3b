"""Conversation recordings (``recording:`` in agents.yaml): list, show, export, delete and purge them.

    python scripts/recordings.py list                          every recording, oldest first
    python scripts/recordings.py show ID                       the transcript with timings and turn latencies
    python scripts/recordings.py export ID out.wav             one stereo WAV: the user left, the assistant right
    python scripts/recordings.py delete ID [ID ...]
    python scripts/recordings.py purge [--days N] [--dry-run]  delete those past their retention (or N days)

The directories come from agents.yaml (``--agents``; server-wide and per agent) or ``--dir``. In a cluster
each session host writes on its own node: run this on each node, or point ``directory`` at a shared mount.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from _repo_path import ROOT

from agents.recording_files import (
    Conversation,
    delete_conversation,
    expired,
    export_wav,
    find_conversations,
    load_conversation,
)
from agents.recording_settings import recording_directories
from common.config_errors import ConfigError


def _printable(text: str) -> str:
    """What a user said or typed, safe for the operator's terminal: control characters are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _roots(args: argparse.Namespace) -> list[Path]:
    return [Path(d) for d in args.dir] if args.dir else recording_directories(args.agents)


def _find(roots: list[Path], conversation: str) -> Conversation:
    for root in roots:
        try:
            return load_conversation(root, conversation)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no recording {conversation!r} under {', '.join(map(str, roots))}")


def _list(roots: list[Path]) -> None:
    for root in roots:
        for c in find_conversations(root):
            audio = sum(1 for line in c.lines if line.get("event") == "audio")
            print(f"{c.id}  {_printable(c.meta.get('agent', '?')):<16} app={c.meta.get('app', '')!r:<14} "
                  f"{c.meta.get('mode', '?'):<4} messages={len(c.messages):<3} audio_files={audio:<3} "
                  f"{c.bytes / 1024:.0f} KiB  {root}")


def _show(c: Conversation) -> None:
    print(f"{c.id}  agent={_printable(c.meta.get('agent'))} app={c.meta.get('app')!r} mode={c.meta.get('mode')} "
          f"started={c.meta.get('at')}")
    for line in c.lines:
        event, t = line.get("event"), line.get("t")
        stamp = f"[{t:7.2f}s]" if isinstance(t, (int, float)) else " " * 10
        if event == "message":
            text = " ".join(p.get("text", "") if p.get("type") == "text" else f"<image {p.get('image_url', {}).get('url', '')[:40]}>"
                            for p in line.get("content", []))
            print(f"{stamp} #{line.get('id')} {line.get('role')}: {_printable(text)}")
        elif event == "turn":
            ms = {k: line.get(k) for k in ("voice_to_voice_ms", "stt_final_ms", "llm_first_token_ms", "tts_first_audio_ms")}
            print(f"{stamp}   turn: " + " ".join(f"{k}={v:.0f}" for k, v in ms.items() if v is not None))
        elif event == "audio":
            print(f"{stamp}   audio {line.get('role')}: {line.get('file')} ({line.get('seconds')} s)")
        elif event in ("status", "error", "cut"):
            detail = line.get("status") or line.get("code") or f"speech {line.get('speech_id')} at {line.get('played_s')} s"
            print(f"{stamp}   {event}: {_printable(detail)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default=str(ROOT / "agents.yaml"), help="agents file naming the directories")
    parser.add_argument("--dir", action="append", help="a recordings directory (instead of --agents; repeatable)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    sub.add_parser("show").add_argument("id")
    export = sub.add_parser("export")
    export.add_argument("id")
    export.add_argument("out")
    sub.add_parser("delete").add_argument("ids", nargs="+")
    purge = sub.add_parser("purge")
    purge.add_argument("--days", type=float, help="instead of each recording's own retention_days")
    purge.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    try:
        roots = _roots(args)
        if args.command == "list":
            _list(roots)
        elif args.command == "show":
            _show(_find(roots, args.id))
        elif args.command == "export":
            seconds = export_wav(_find(roots, args.id), Path(args.out))
            print(f"wrote {args.out}: {seconds:.1f} s, stereo (left: user, right: assistant)")
        elif args.command == "delete":
            for conversation in args.ids:
                delete_conversation(_find(roots, conversation))
                print(f"deleted {conversation}")
        elif args.command == "purge":
            now = datetime.now(UTC)
            for root in roots:
                for c in find_conversations(root):
                    if expired(c, now, args.days):
                        if not args.dry_run:
                            delete_conversation(c)
                        print(f"{'would delete' if args.dry_run else 'deleted'} {c.id} (started {c.started})")
    except (ConfigError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"recordings: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
