"""Starts the real graph (``serve_app.py``) as a subprocess on a free loopback port and stops it.

Each graph gets its own Ray temp dir (``RAY_TMPDIR``), removed when it stops: a test run leaves no Ray
session directories, logs or sockets behind in the machine's /tmp/ray."""

from __future__ import annotations

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

import httpx

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
                 env_extra: dict[str, str] | None = None) -> Server:
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


def http_get_ok(url: str, verify: object = True) -> bool:
    try:
        return httpx.get(url, timeout=5, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False
