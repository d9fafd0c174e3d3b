"""The session hosts of one Ingress replica: started ahead of need, chosen per connection, retired when idle.

The policy (how many, which one) is deployments/placement.py; this module only starts, watches and kills
the SessionHost actors it asks for. Hosts are owned by the Ingress replica (they end with it) and spread
over the nodes that may run them (``num_cpus`` / custom ``resources``): each new host goes to the fitting node
with the fewest of this pool's hosts (placement.node_for_next_host), so one node's loss takes only its hosts'
conversations.

Everything here runs on the Ingress replica's event loop: a host registered as starting must have its start task
on that loop, or it stays "starting" forever and, counted as free slots, keeps every later host from starting
(Serve runs a deployment's sync methods, such as a sync health check, in a thread: none of them may start hosts).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from common.health import Unhealthy
from deployments.placement import HostOptions, HostPlacement, HostWatch, StartBackoff, node_for_next_host
from deployments.session import SessionHost

log = logging.getLogger("ray.serve")

MAINTAIN_EVERY_S = 5.0
HOST_START_TIMEOUT_S = 300.0  # a first start on a loaded node (imports, LiteLLM warm-up) is slow, never this slow
UNREACHABLE_S = 2 * HOST_START_TIMEOUT_S  # no host answered for this long while hosts are wanted: the replica is unhealthy


def _one_line(exc: BaseException) -> str:
    """A failure in one log line: Ray's actor errors run to a dozen lines (pid, actor id, the worker's exit)."""
    if isinstance(exc, TimeoutError):
        return f"no answer to ready() within {HOST_START_TIMEOUT_S:.0f} s"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class HostsBusy(Exception):
    """Every slot of every host this replica may start is taken."""


@dataclass
class Lease:
    """A slot on a host for one conversation; ``release`` it when the conversation ends."""

    host_id: str
    host: Any  # the SessionHost actor handle


class HostPool:
    def __init__(self, options: HostOptions, *host_args: Any) -> None:
        self.options = options
        self.placement = HostPlacement(options)
        self._args = host_args  # what each SessionHost gets: model handles and LLM settings
        self._actors: dict[str, Any] = {}
        self._changed = asyncio.Event()  # a host became ready or a slot was released
        self._maintainer: asyncio.Task[None] | None = None
        self._starts: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references to tasks
        self._backoff = StartBackoff()
        self._retry: asyncio.TimerHandle | None = None
        self.nodes: dict[str, str] = {}  # host id -> Ray node id (for operators and the cluster test)
        self.watch = HostWatch(options.ping_misses, UNREACHABLE_S, time.monotonic())

    def start(self) -> None:
        """Start the minimum of hosts and the loop that keeps the headroom and retires idle hosts."""
        loop = asyncio.get_running_loop()  # raises off the replica's loop (see the module docstring)
        if self._maintainer is None:
            self._maintainer = loop.create_task(self._maintain())
        self._start_wanted()

    def _start_wanted(self) -> None:
        loop = asyncio.get_running_loop()  # raises off the loop, before a host is registered as starting
        if not self._backoff.may_start(time.monotonic()):
            return  # a retry is scheduled for when the backoff ends
        wanted = self.placement.hosts_to_start()
        if not wanted:
            return
        live = {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}
        for _ in range(wanted):
            host_id = f"voi_host_{uuid.uuid4().hex[:12]}"
            self.placement.starting(host_id)
            node = node_for_next_host(live, self.options, Counter(self.nodes.values()))
            if node is not None:
                self.nodes[host_id] = node  # counted for the next choice; replaced by where it really runs
            task = loop.create_task(self._start_one(host_id, node))
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    async def _start_one(self, host_id: str, node: str | None) -> None:
        # Named, so operators (and fault tests) can find hosts with `ray list actors`. An async actor runs many
        # calls at once: each conversation holds an `events` stream and sends pushes. Hard affinity: soft
        # affinity let Ray put a host on another node than asked (seen in the cluster test), and the node was
        # chosen as live and fitting; if it dies meanwhile the start fails and is retried on a live one.
        strategy: Any = NodeAffinitySchedulingStrategy(node, soft=False) if node else "SPREAD"
        options: dict[str, Any] = {"name": host_id, "scheduling_strategy": strategy,
                                   "max_concurrency": 4 * self.options.sessions_per_host + 16,
                                   "num_cpus": self.options.num_cpus}
        if self.options.resources:
            options["resources"] = dict(self.options.resources)
        started = time.monotonic()
        try:
            actor = SessionHost.options(**options).remote(
                *self._args, sessions_per_host=self.options.sessions_per_host, inbox_size=self.options.inbox_size)
            self._actors[host_id] = actor
            where = await asyncio.wait_for(actor.ready.remote(), HOST_START_TIMEOUT_S)
        except Exception as exc:  # it died (an OOM kill), its node went away, or it never got the node's resources
            self._start_failed(host_id, exc, time.monotonic() - started)
            return
        self._backoff.succeeded()
        self.watch.answered(host_id, time.monotonic())
        self.nodes[host_id] = str(where.get("node_id", ""))
        self.placement.ready(host_id, time.monotonic())
        log.info("session host %s ready in %.1f s (pid %s, node %s, asked for %s, %d hosts)", host_id,
                 time.monotonic() - started, where.get("pid"), str(where.get("node_id", ""))[:12], (node or "any")[:12],
                 len(self.placement.hosts))
        self._notify()

    def _start_failed(self, host_id: str, exc: BaseException, after_s: float) -> None:
        """Forget the host and start another after the backoff, also when nothing else would ask for one (a
        caller waiting for a slot must not wait for the next upkeep round or the next caller)."""
        delay = self._backoff.failed(time.monotonic())
        log.error("session host %s failed while starting (after %.1f s: %s); starting another in %.0f s, %d failed "
                  "in a row", host_id, after_s, _one_line(exc), delay, self._backoff.failures)
        self._forget(host_id)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = asyncio.get_running_loop().call_later(delay, self._start_wanted)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _forget(self, host_id: str) -> None:
        self.placement.remove(host_id)
        self.watch.forget(host_id)
        self.nodes.pop(host_id, None)
        actor = self._actors.pop(host_id, None)
        if actor is not None:
            try:
                ray.kill(actor)
            except Exception:
                pass
        self._notify()

    async def place(self, timeout_s: float) -> Lease:
        """A slot on the least loaded ready host; waits for a host being started, refuses when all are full."""
        deadline = time.monotonic() + timeout_s
        while True:
            host_id = self.placement.choose()
            self._start_wanted()  # keep the headroom: the next callers must not wait for a process start
            if host_id is not None:
                return Lease(host_id, self._actors[host_id])
            if self.placement.full():
                raise HostsBusy()
            changed = self._changed
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostsBusy()
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    def release(self, lease: Lease) -> None:
        self.placement.release(lease.host_id, time.monotonic())
        self._notify()

    def lost(self, lease: Lease) -> None:
        """The lease's host died: no new conversation goes there; a replacement starts if one is wanted."""
        if lease.host_id in self._actors:
            log.warning("session host %s died; its conversations are lost", lease.host_id)
            self._forget(lease.host_id)
            self._start_wanted()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_EVERY_S)
            try:
                for host_id in self.placement.to_retire(time.monotonic()):
                    log.info("retiring idle session host %s", host_id)
                    self._forget(host_id)
                await self._check_alive()
                self._start_wanted()
            except Exception:
                log.exception("session host upkeep failed")

    async def _check_alive(self) -> None:
        """Ping every ready host at once (deployments/placement.py HostWatch): a dead one is forgotten, a hung one
        (no answer ``ping_misses`` times in a row) is killed, so its callers are told ``session_lost``."""
        ids = [h.host_id for h in self.placement.hosts.values() if h.ready and h.host_id in self._actors]
        answers = await asyncio.gather(*(asyncio.wait_for(self._actors[i].ping.remote(), self.options.ping_timeout_s)
                                         for i in ids), return_exceptions=True)
        for host_id, answer in zip(ids, answers):
            if host_id not in self._actors:
                continue  # forgotten meanwhile (a caller saw it die)
            if not isinstance(answer, BaseException):
                self.watch.answered(host_id, time.monotonic())
            elif isinstance(answer, TimeoutError):
                if self.watch.missed_ping(host_id):
                    state = self.placement.hosts.get(host_id)
                    log.error("session host %s did not answer %d pings in a row (%.0f s each): it hangs; replacing it, "
                              "its %d conversations are told session_lost", host_id, self.options.ping_misses,
                              self.options.ping_timeout_s, state.sessions if state else 0)
                    self._forget(host_id)
            elif isinstance(answer, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
                log.warning("session host %s is gone", host_id)
                self._forget(host_id)

    def check_reachable(self) -> None:
        """The Ingress's health: raise Unhealthy when hosts are wanted and none has answered for UNREACHABLE_S."""
        wanted = self.options.min_hosts > 0 or self.placement.sessions > 0
        if self.watch.unreachable(wanted, time.monotonic()):
            raise Unhealthy(f"Ingress: no session host has answered for {UNREACHABLE_S:.0f} s "
                            f"({len(self.placement.hosts)} registered, {self._backoff.failures} failed starts in a row)")

    async def conversations(self) -> dict[str, Any]:
        """Each ready host's own view: pid, node and its conversations (agent, mode, messages, queued)."""
        ids = [h.host_id for h in self.placement.hosts.values() if h.ready and h.host_id in self._actors]
        views = await asyncio.gather(*(asyncio.wait_for(self._actors[i].describe.remote(), 10) for i in ids),
                                     return_exceptions=True)
        return {i: (v if isinstance(v, dict) else {"error": type(v).__name__}) for i, v in zip(ids, views)}

    def describe(self) -> dict[str, Any]:
        return {"hosts": {h.host_id: {"ready": h.ready, "sessions": h.sessions, "node_id": self.nodes.get(h.host_id)}
                          for h in self.placement.hosts.values()},
                "ready_hosts": sum(h.ready for h in self.placement.hosts.values()), "min_hosts": self.options.min_hosts,
                "sessions": self.placement.sessions, "free_slots": self.placement.free_slots()}
