"""Starts the real graph (``serve_app.py``) as a subprocess on a free loopback port and stops it.

Each graph gets its own Ray temp dir (``RAY_TMPDIR``), removed when it stops: a test run leaves no Ray
session directories, logs or sockets behind in the machine's /tmp/ray."""

from __future__ import annotations

import argparse
import copy
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-token-secret-key-0123456789-abcdefghijklmnop"
TEST_API_KEY = "test-api-key-for-integrations"
TEST_TWILIO_AUTH_TOKEN = "test-twilio-auth-token"  # the phone webhook checks X-Twilio-Signature with it


# Below the kernel's ephemeral range (32768-60999 here) and above Ray's worker ports (10002-19999): a port the
# kernel hands out (bind to 0) can be taken by one of Ray's own outgoing connections before the proxy binds it
# ("Failed to bind to address 127.0.0.1:45191", seen once in a benchmark run).
QUIET_PORTS = range(20_000, 32_000)
_given: set[int] = set()  # never the same port twice in one process (a server's port and its metrics port)


def free_port() -> int:
    for _ in range(200):
        port = random.choice(QUIET_PORTS)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {QUIET_PORTS.start}-{QUIET_PORTS.stop - 1}")


@dataclass
class Server:
    process: subprocess.Popen
    http_url: str
    ws_url: str
    log_path: Path
    started_s: float
    metrics_url: str = ""
    ray_temp_dir: str = ""
    stop_group: bool = False  # a `ray start --block` head (start_deployed): SIGTERM its whole process group

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def ray_address(self) -> str:
        match = re.search(r"Ray at (\S+)", self.log_path.read_text(errors="replace"))
        assert match, "the server did not say where Ray is"
        return match.group(1)

    def processes(self) -> list[int]:
        """This server's processes still running (Linux): its process group (the driver, GCS, raylet, Ray's agents)
        and Ray's workers (Serve's actors, the session hosts), which get process groups of their own but keep the
        graph's own RAY_TMPDIR in their environment. Never another graph's or another developer's Ray."""
        marker = f"RAY_TMPDIR={self.ray_temp_dir}".encode() if self.ray_temp_dir else None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                state, _, pgid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
                environ = (entry / "environ").read_bytes() if marker else b""
            except (OSError, ValueError):
                continue  # it exited meanwhile, or is not ours to read
            if state != "Z" and (int(pgid) == self.process.pid or (marker and marker in environ.split(b"\0"))):
                found.append(int(entry.name))
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            if self.stop_group:
                os.killpg(self.process.pid, signal.SIGTERM)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                pass
        try:  # what a failed stop left: the process group, then the workers that have groups of their own
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.ray_temp_dir:
            shutil.rmtree(self.ray_temp_dir, ignore_errors=True)


def start_server(log_path: Path, *extra_args: str, tls: tuple[Path, Path] | None = None, timeout: float = 300,
                 env_extra: dict[str, str] | None = None, serve_config: Path | None = None,
                 shrink: bool = False) -> Server:
    """``python serve_app.py`` with builder arguments ``key=value``; with ``serve_config``, that profile through
    ``serve deploy`` instead (start_deployed)."""
    if serve_config is not None:
        if tls:
            raise ValueError("start_server: TLS is not set up for a serve_config graph")
        return start_deployed(log_path, serve_config, *extra_args, timeout=timeout, env_extra=env_extra, shrink=shrink)
    port, metrics_port = free_port(), free_port()
    args = [sys.executable, str(ROOT / "serve_app.py"), "--port", str(port), "--metrics-port", str(metrics_port), *extra_args]
    scheme = "http"
    if tls:
        args += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
        scheme = "https"
    ray_temp_dir = tempfile.mkdtemp(prefix="voi-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "TOKEN_SECRET_KEY": TEST_SECRET, "RAY_TMPDIR": ray_temp_dir, "API_KEY": TEST_API_KEY, "RAY_ADDRESS": "",
           "RAY_metrics_report_interval_ms": "1000",  # metrics show up within seconds, not the default 10 s
           "RAY_AUTH_MODE": "disabled",  # a loopback test cluster; the fault tests join it as a driver
           "RAY_DEDUP_LOGS": "0",  # every line as written: a repeated traceback is not folded into "[repeated 2x]"
           **(env_extra or {})}
    env.pop("RAY_ADDRESS")
    log = open(log_path, "wb")
    started = time.monotonic()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"{scheme}://127.0.0.1:{port}", f"{'wss' if tls else 'ws'}://127.0.0.1:{port}", log_path, 0.0,
                    f"http://127.0.0.1:{metrics_port}/metrics", ray_temp_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.stop()
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log_tail()}")
        if "Voi is ready" in log_path.read_text(errors="replace"):
            server.started_s = time.monotonic() - started
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{server.log_tail()}")


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' flags for running a serve config profile (start_deployed) instead of the default graph."""
    parser.add_argument("--serve-config", type=Path, default=None,
                        help="deploy this serve config profile (e.g. serve_config.gpu.yaml) with `serve deploy`")
    parser.add_argument("--shrink", action="store_true",
                        help="with --serve-config: one replica of each deployment (a smoke run on a small machine)")


def profile_options(args: argparse.Namespace) -> dict[str, Any]:
    """start_server's keyword arguments for the flags of add_profile_arguments."""
    return {"serve_config": args.serve_config, "shrink": args.shrink}


def profile_label(args: argparse.Namespace) -> str | None:
    """What a report says about the graph it measured: the profile's file name, or None for the default graph."""
    return f"{args.serve_config.name}{' (shrunk)' if args.shrink else ''}" if args.serve_config else None


def profile_machine(text: str) -> dict[str, float]:
    """The machine a serve config profile declares (``# machine: cpus=16 gpus=1``)."""
    found = re.search(r"^# machine: (.*)$", text, re.MULTILINE)
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", found.group(1))} if found else {}


def deployable_config(config: dict, port: int, builder_args: dict[str, str], shrink: bool = False) -> dict:
    """A serve config profile as a benchmark deploys it: loopback ``port``, builder ``args`` merged in (they win
    over the profile's), and with ``shrink`` one replica of everything and one session host (a smoke run of
    the same profile on a small machine: same deployments, same resource kinds)."""
    config = copy.deepcopy(config)
    config["http_options"] = {**config.get("http_options", {}), "host": "127.0.0.1", "port": port}
    [app] = config["applications"]
    app["args"] = {**(app.get("args") or {}), **builder_args}
    if shrink:
        app["args"].update(min_session_hosts=1, free_session_slots=0)
        for deployment in app.get("deployments", []):
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 1
    return config


def start_deployed(log_path: Path, serve_config: Path, *extra_args: str, timeout: float = 600,
                   env_extra: dict[str, str] | None = None, shrink: bool = False) -> Server:
    """A serve config profile as an operator runs it: `ray start --head` (with the CPUs and GPUs the profile's
    ``# machine:`` line declares, so a GPU profile is placed as on its machine; where there is no GPU, ``device:
    auto`` models run on the CPU) and `serve deploy`, in a Ray temp dir of its own. Ready when every
    deployment is RUNNING and the Ingress has a session host."""
    from serve_app import session_host_ready  # the readiness `python serve_app.py` waits for (imports Ray)

    text = Path(serve_config).read_text()
    machine = profile_machine(text)
    port, gcs, dashboard, metrics_port = free_port(), free_port(), free_port(), free_port()
    builder_args = dict(a.split("=", 1) for a in extra_args)
    ray_temp_dir = tempfile.mkdtemp(prefix="voi-ray-", dir="/tmp")
    config_path = Path(ray_temp_dir) / Path(serve_config).name
    config_path.write_text(yaml.safe_dump(deployable_config(yaml.safe_load(text), port, builder_args, shrink)))
    env = {**os.environ, "TOKEN_SECRET_KEY": TEST_SECRET, "API_KEY": TEST_API_KEY, "RAY_TMPDIR": ray_temp_dir,
           "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "RAY_metrics_report_interval_ms": "1000", "RAY_DEDUP_LOGS": "0", **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    bin_dir = Path(sys.executable).parent
    resources = [f"--num-{kind}={int(machine[kind])}" for kind in ("cpus", "gpus") if kind in machine]
    log = open(log_path, "wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", f"--temp-dir={ray_temp_dir}/ray", f"--port={gcs}",
         "--node-ip-address=127.0.0.1", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--metrics-export-port={metrics_port}", "--disable-usage-stats", *resources],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log_path, 0.0,
                    f"http://127.0.0.1:{metrics_port}/metrics", ray_temp_dir, stop_group=True)
    dashboard_url = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + timeout

    def note(line: str) -> None:
        with open(log_path, "a") as out:
            out.write(line + "\n")

    try:
        while not http_get_ok(f"{dashboard_url}/api/version"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`ray start --head` did not come up:\n{server.log_tail()}")
            time.sleep(1)
        deploy = subprocess.run([str(bin_dir / "serve"), "deploy", str(config_path), "--address", dashboard_url],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        note(f"serve deploy {config_path}: exit {deploy.returncode}\n{deploy.stdout}{deploy.stderr}")
        if deploy.returncode != 0:
            raise RuntimeError(f"serve deploy failed:\n{deploy.stdout}{deploy.stderr}")
        while True:
            status = subprocess.run([str(bin_dir / "serve"), "status", "--address", dashboard_url], env=env,
                                    capture_output=True, text=True, timeout=60)
            app = (yaml.safe_load(status.stdout) or {}).get("applications", {}).get("voi", {}) if status.returncode == 0 else {}
            if app.get("status") == "RUNNING" and session_host_ready(server.http_url, TEST_API_KEY):
                break
            if app.get("status") == "DEPLOY_FAILED" or process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the deployed app is not running:\n{status.stdout}{status.stderr}")
            time.sleep(2)
    except BaseException:
        server.stop()
        raise
    server.started_s = time.monotonic() - started
    note(f"Voi is ready on {server.http_url} ({Path(serve_config).name}{', shrunk' if shrink else ''}) after "
         f"{server.started_s:.1f} s; Ray at 127.0.0.1:{gcs}")
    return server


def http_get_ok(url: str, verify: object = True) -> bool:
    try:
        return httpx.get(url, timeout=5, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False
