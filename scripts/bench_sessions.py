"""Sessions at scale: bursts of callers, idle sessions beside talkers, and connect/disconnect churn.

    .venv/bin/python scripts/bench_sessions.py                       # burst 8/32/64, hold M=0/200 K=4, churn 500
    .venv/bin/python scripts/bench_sessions.py --burst 8 --hold 0,20 --churn 50   # a quick look

All against the default server (agents.yaml, models.yaml: the echo agent ``stt_test``), started here.
1. burst: N clients connect at the same instant; each waits for ``init_done`` and its greeting audio, then
   types one turn and waits for the reply audio. p50/p95/max of each step, and failures.
2. hold: M sessions connected and idle (greeted, then silent) while K of them hold spoken chat turns at
   real-time pace (scripts/bench.py's caller); voice-to-voice p50/p95 with M = 0 and M = 200 in one run,
   and the RSS of every session host before and after.
3. churn: connect / one typed turn / disconnect cycles (a few at a time); host RSS before and after.
Session hosts are found by joining the server's Ray cluster as a driver (their ``describe`` gives the pid).
Writes JSON and a PNG plot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _repo_path import ROOT
from bench import CallerResult, graph_caller, summarize, turn_audio

from harness.report import machine_and_date, ms, pct, pyplot, save_figure, write_report
from harness.server import TEST_SECRET, Server, add_profile_arguments, profile_label, profile_options, start_server
from protocol.client import VoiClient
from protocol.tokens import issue_token

AGENT = "stt_test"
STEP_TIMEOUT_S = 120.0


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": pct(values, 50), "p95": pct(values, 95), "max": round(max(values), 1) if values else None}


# ---- the session hosts' memory -----------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def host_rss(ray: Any) -> dict[str, dict[str, float]]:
    """Every live session host: its RSS (MB) and how many conversations it runs."""
    out = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == "serve" and actor["name"].startswith("voi_host_"):
            try:
                view = ray.get(ray.get_actor(actor["name"], namespace="serve").describe.remote(), timeout=30)
                out[actor["name"]] = {"rss_mb": round(rss_mb(int(view["pid"])), 1), "sessions": len(view["sessions"])}
            except Exception:  # noqa: BLE001 - a host retired meanwhile
                continue
    return out


def total_rss(hosts: dict[str, dict[str, float]]) -> float:
    return round(sum(h["rss_mb"] for h in hosts.values()), 1)


# ---- 1. burst -----------------------------------------------------------------------------------------------


async def burst_client(url: str, token: str, n: int, go: asyncio.Event) -> dict[str, Any]:
    await go.wait()
    started = time.monotonic()
    out: dict[str, Any] = {"ok": False}
    client = None
    try:
        client = await VoiClient.connect(url, token)
        await client.init(AGENT, init_greeting=True)
        got = await client.until(lambda r: r.is_status("init_done") or r.type == "error", STEP_TIMEOUT_S)
        if not got[-1].is_status("init_done"):
            out["error"] = str(got[-1].header.get("code"))
            return out
        out["init_done_s"] = got[-1].at - started
        greeting = await client.until(lambda r: r.type == "audio", STEP_TIMEOUT_S)
        out["greeting_audio_s"] = greeting[-1].at - started
        await client.drain(0.3)
        text = f"caller {n} says hello"
        sent = time.monotonic()
        await client.send({"type": "text", "content": text})
        await client.send({"type": "create_response"})
        reply = await client.until(lambda r: r.type == "message" and r.header["role"] == "assistant", STEP_TIMEOUT_S)
        speech_id = str(reply[-1].header["id"])
        audio = await client.until(lambda r: r.type == "audio" and r.header.get("speech_id") == speech_id, STEP_TIMEOUT_S)
        out["reply_audio_s"] = audio[-1].at - sent
        out["ok"] = True
    except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
        out["error"] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        if client is not None:
            await client.close()
    return out


async def burst(url: str, n: int) -> dict[str, Any]:
    token = issue_token(TEST_SECRET, "bench")
    go = asyncio.Event()
    tasks = [asyncio.create_task(burst_client(url, token, i, go)) for i in range(n)]
    await asyncio.sleep(0.2)
    go.set()  # every client connects at the same instant
    results = await asyncio.gather(*tasks)
    row: dict[str, Any] = {"sessions": n, "failures": sum(not r["ok"] for r in results),
                           "errors": sorted({r["error"] for r in results if r.get("error")})}
    for key in ("init_done_s", "greeting_audio_s", "reply_audio_s"):
        row[key.replace("_s", "_ms")] = stats([r[key] * 1000 for r in results if key in r])
    return row


# ---- 2. hold ------------------------------------------------------------------------------------------------


async def idle_sessions(url: str, m: int) -> list[VoiClient]:
    """M callers greeted and then silent (connected a few at a time, as callers trickle in)."""
    token = issue_token(TEST_SECRET, "bench")
    clients: list[VoiClient] = []

    async def one() -> None:
        client = await VoiClient.connect(url, token)
        clients.append(client)
        await client.init(AGENT, init_greeting=True)
        await client.until(lambda r: r.is_status("init_done"), STEP_TIMEOUT_S)
        await client.until(lambda r: r.type == "audio", STEP_TIMEOUT_S)

    for start in range(0, m, 16):
        await asyncio.gather(*(one() for _ in range(min(16, m - start))))
    return clients


async def drain_forever(clients: list[VoiClient]) -> None:
    """Idle callers still read what arrives (the rest of their greeting)."""
    while True:
        for client in clients:
            await client.drain(0.01)
        await asyncio.sleep(1.0)


async def hold(url: str, m: int, k: int, turns: int, ray: Any) -> dict[str, Any]:
    before = host_rss(ray)
    idle = await idle_sessions(url, m)
    drainer = asyncio.create_task(drain_forever(idle))
    await asyncio.sleep(2.0)
    with_idle = host_rss(ray)
    clips = turn_audio()
    try:
        talkers: list[CallerResult] = await asyncio.gather(*(graph_caller(url, "chat", clips, turns, i) for i in range(k)))
    finally:
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
    after = host_rss(ray)
    for client in idle:
        await client.close()
    summary = summarize(talkers)
    growth = total_rss(with_idle) - total_rss(before)
    new_hosts = [h for name, h in with_idle.items() if name not in before]
    base = np.median([h["rss_mb"] for h in before.values() if h["sessions"] == 0] or [0.0])
    per_session = (growth - len(new_hosts) * base) / m if m else None
    return {"idle_sessions": m, "talkers": k, "turns": summary["turns"], "failed_turns": summary["failed_turns"],
            "dropped": summary["dropped_sessions"], "errors": summary["errors"], "v2v_ms": summary["v2v_ms"],
            "v2v_samples_ms": summary["v2v_samples_ms"], "hosts_before": before, "hosts_with_idle": with_idle,
            "hosts_after": after, "rss_growth_mb": round(growth, 1), "new_hosts": len(new_hosts),
            "empty_host_rss_mb": round(float(base), 1),
            "mb_per_idle_session": round(per_session, 2) if per_session is not None else None}


# ---- 3. churn -----------------------------------------------------------------------------------------------


async def churn(url: str, cycles: int, parallel: int, ray: Any) -> dict[str, Any]:
    token = issue_token(TEST_SECRET, "bench")
    await asyncio.sleep(1.0)
    before = host_rss(ray)
    failures: list[str] = []
    times: list[float] = []

    async def cycle(i: int) -> None:
        started = time.monotonic()
        client = None
        try:
            client = await VoiClient.connect(url, token)
            await client.init(AGENT, init_greeting=False)
            await client.until(lambda r: r.is_status("init_done"), STEP_TIMEOUT_S)
            await client.send({"type": "text", "content": f"cycle {i}"})
            await client.send({"type": "create_response"})
            await client.until(lambda r: r.type == "audio", STEP_TIMEOUT_S)
            times.append((time.monotonic() - started) * 1000)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            if client is not None:
                await client.close()

    queue = iter(range(cycles))

    async def worker() -> None:
        for i in queue:
            await cycle(i)

    await asyncio.gather(*(worker() for _ in range(parallel)))
    await asyncio.sleep(3.0)  # the last conversations end on their hosts
    after = host_rss(ray)
    common = [name for name in before if name in after]
    growth = sum(after[n]["rss_mb"] - before[n]["rss_mb"] for n in common)
    return {"cycles": cycles, "parallel": parallel, "failures": len(failures), "errors": sorted(set(failures))[:5],
            "cycle_ms": stats(times), "hosts_before": before, "hosts_after": after,
            "rss_growth_mb_same_hosts": round(growth, 1),
            "sessions_left": sum(h["sessions"] for h in after.values())}


# ---- report -------------------------------------------------------------------------------------------------


def plot(report: dict, path: Path) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    rows = report["burst"]
    x = np.arange(len(rows))
    for i, key in enumerate(("init_done_ms", "greeting_audio_ms", "reply_audio_ms")):
        a.bar(x + (i - 1) * 0.27, [r[key]["p95"] or 0 for r in rows], 0.27, label=f"{key[:-3]} p95")
    a.set_xticks(x, [f"N={r['sessions']}" for r in rows])
    a.set_ylabel("ms after connecting (reply: after the typed turn)")
    a.set_title("burst: N callers at once")
    a.legend()
    a.grid(axis="y", alpha=0.3)
    holds = report["hold"]
    b.boxplot([h["v2v_samples_ms"] or [np.nan] for h in holds])
    b.set_xticks(range(1, len(holds) + 1), [f"M={h['idle_sessions']} idle" for h in holds])
    b.set_ylabel("voice-to-voice ms")
    b.set_title(f"hold: {holds[0]['talkers'] if holds else 0} talkers beside M idle sessions")
    b.grid(axis="y", alpha=0.3)
    save_figure(fig, path)


def print_report(report: dict) -> None:
    print(f"\n{'burst N':>8} {'fail':>4} {'init_done p50/p95/max':>24} {'greeting p50/p95/max':>24} {'reply p50/p95/max':>22}")
    for r in report["burst"]:
        cells = [f"{r[k]['p50'] or 0:.0f}/{r[k]['p95'] or 0:.0f}/{r[k]['max'] or 0:.0f}"
                 for k in ("init_done_ms", "greeting_audio_ms", "reply_audio_ms")]
        print(f"{r['sessions']:>8} {r['failures']:>4} {cells[0]:>24} {cells[1]:>24} {cells[2]:>22}")
    print(f"\n{'hold M':>7} {'K':>3} {'turns':>5} {'fail':>4} {'v2v p50':>8} {'p95':>6} {'host RSS +MB':>12} {'MB/idle':>8}")
    for h in report["hold"]:
        print(f"{h['idle_sessions']:>7} {h['talkers']:>3} {h['turns']:>5} {h['failed_turns']:>4} "
              f"{ms(h['v2v_ms']['p50'], 8)} {ms(h['v2v_ms']['p95'], 6)} {h['rss_growth_mb']:>12.1f} "
              f"{h['mb_per_idle_session'] if h['mb_per_idle_session'] is not None else '-':>8}")
    if report.get("hold_v2v_ratio") is not None:
        print(f"voice-to-voice p50 with the most idle sessions / with none: {report['hold_v2v_ratio']}")
    c = report.get("churn")
    if c:
        print(f"\nchurn: {c['cycles']} cycles ({c['parallel']} at a time), {c['failures']} failures, cycle p50 "
              f"{c['cycle_ms']['p50']} ms; host RSS {total_rss(c['hosts_before'])} -> {total_rss(c['hosts_after'])} MB "
              f"(+{c['rss_growth_mb_same_hosts']} MB on the same hosts), sessions left {c['sessions_left']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", default="8,32,64", help="burst sizes")
    parser.add_argument("--hold", default="0,200", help="idle sessions beside the talkers")
    parser.add_argument("--talkers", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4, help="spoken turns per talker in the hold test")
    parser.add_argument("--churn", type=int, default=500, help="connect / turn / disconnect cycles (0: skip)")
    parser.add_argument("--churn-parallel", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "bench_sessions.json")
    parser.add_argument("server_args", nargs="*", help="key=value builder arguments for the server")
    add_profile_arguments(parser)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Every caller here uses one token (app "bench"): lift the per-app cap (64 by default) above the 200 idle
    # sessions and the bursts, unless the command line sets it.
    server: Server = start_server(args.out.parent / "bench_sessions_server.log", "max_sessions_per_app=256",
                                  *args.server_args, **profile_options(args))
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"  # as the test server runs it
    ray.init(address=server.ray_address, namespace="serve", log_to_driver=False)
    report: dict[str, Any] = {**machine_and_date(), "server_args": args.server_args, "serve_config": profile_label(args),
                              "server_start_s": round(server.started_s, 1), "burst": [], "hold": []}
    try:
        time.sleep(3.0)  # the warm hosts finish starting
        report["hosts_at_start"] = host_rss(ray)
        for n in (int(x) for x in args.burst.split(",") if x):
            print(f"burst of {n} callers ...", flush=True)
            report["burst"].append(asyncio.run(burst(server.ws_url, n)))
            time.sleep(3.0)
        for m in (int(x) for x in args.hold.split(",") if x):
            print(f"hold: {args.talkers} talkers beside {m} idle sessions ...", flush=True)
            report["hold"].append(asyncio.run(hold(server.ws_url, m, args.talkers, args.turns, ray)))
            time.sleep(3.0)
        if len(report["hold"]) >= 2 and report["hold"][0]["v2v_ms"]["p50"] and report["hold"][-1]["v2v_ms"]["p50"]:
            report["hold_v2v_ratio"] = round(report["hold"][-1]["v2v_ms"]["p50"] / report["hold"][0]["v2v_ms"]["p50"], 3)
        if args.churn:
            print(f"churn: {args.churn} cycles ...", flush=True)
            report["churn"] = asyncio.run(churn(server.ws_url, args.churn, args.churn_parallel, ray))
    finally:
        ray.shutdown()
        server.stop()
    print_report(report)
    write_report(report, args.out, plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
