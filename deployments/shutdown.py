"""Stopping ``python serve_app.py`` when it is told to: SIGTERM (systemd, Docker, Kubernetes) or SIGINT (a terminal).

The stop is one ordered pass on the main thread, each step bounded, a failed step never skipping the next:

1. the Ingress tells every live socket (``error`` ``server_shutdown``, close 1001) and lets its conversations end;
2. Serve shuts down (its controller stops the replicas and the proxy);
3. the Ray instance this process started shuts down, and any of its processes still running a few seconds later is
   killed, so no process of this server is left and its port is free when the process exits (0).

Joined to a cluster (``--address``), steps 1 and 2 run and the cluster itself is left alone. The signal handler
only raises ``Stop``; the work runs where main() catches it, not inside a handler that another signal could cut.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterable
from types import FrameType
from typing import Any

import ray
from ray import serve

APP_NAME = "voi"  # the application `python serve_app.py` deploys
TELL_CLIENTS_S = 10.0  # a reply under way gets this long to finish once its client was told (Ingress.going_away)
REAP_GRACE_S = 10.0  # the Ray processes get this long to exit after ray.shutdown() before they are killed


class Stop(BaseException):
    """Raised in the main thread by SIGTERM or SIGINT. A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way (Ray's, ours) swallows it."""


def stop_on_signals() -> None:
    """SIGTERM and SIGINT raise ``Stop`` in the main thread the first time; later ones are ignored while the server
    stops (every step is bounded, and a supervisor's SIGKILL still ends it). Install it after ``ray.init``, which
    sets its own SIGTERM handler."""
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def shut_down(own_cluster: bool) -> None:
    """Steps 1 to 3 above; prints one line saying what it did."""
    started = time.monotonic()
    ours = _descendants() if own_cluster else []
    told = _tell_clients()
    try:
        serve.shutdown()
    except Exception as exc:  # the controller is already gone, or never started: Ray's shutdown still follows
        print(f"voi: Serve did not shut down cleanly ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
    if own_cluster:
        ours += _descendants()  # workers started since the first look
    try:
        ray.shutdown()
    except Exception as exc:  # what it did not stop is killed below
        print(f"voi: Ray did not shut down cleanly ({type(exc).__name__}: {exc})", file=sys.stderr, flush=True)
    killed = _reap(ours, REAP_GRACE_S) if own_cluster else 0
    print(f"voi: stopped in {time.monotonic() - started:.1f} s: "
          f"{'no Serve app to tell' if told is None else f'{told} live sockets told (server_shutdown, 1001)'}"
          f"{'' if not own_cluster else f', the local Ray instance shut down ({killed} processes killed)'}",
          flush=True)


def _tell_clients() -> int | None:
    """Step 1 (Ingress.going_away); None when there is no running app to ask. ``python serve_app.py`` runs one
    Ingress replica, which a handle call reaches."""
    try:
        response = serve.get_app_handle(APP_NAME).going_away.remote(TELL_CLIENTS_S)
        return response.result(timeout_s=TELL_CLIENTS_S + 10.0)
    except Exception as exc:  # stopped while starting, before the app was deployed
        print(f"voi: could not tell live clients ({type(exc).__name__})", file=sys.stderr, flush=True)
        return None


def _descendants() -> list[Any]:
    """This process's descendants: the Ray instance it started (GCS, raylet, agents) and the raylet's workers
    (Serve's controller, proxy and replicas, the session hosts). Looked up before ray.shutdown(): once the
    raylet is gone its workers are re-parented and no longer look like ours."""
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _reap(processes: Iterable[Any], grace_s: float) -> int:
    """Wait up to ``grace_s`` for ``processes`` to exit, then kill those still running; returns how many were killed."""
    import psutil

    def running(process: Any) -> bool:  # is_running() also says False for a pid that was reused since
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    left = set(processes)
    deadline = time.monotonic() + grace_s
    while (left := {p for p in left if running(p)}) and time.monotonic() < deadline:
        time.sleep(0.2)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(left), timeout=5)
    return len(left)
