"""Where a new conversation goes: the session-host bookkeeping of one Ingress replica, free of Ray.

A session host runs up to ``sessions_per_host`` conversations. The policy keeps ``min_hosts`` hosts
started, starts another in the background while fewer than ``free_slots`` slots are free (so a burst of
callers never waits for a process start), places a new conversation on the least loaded ready host with
room, and retires a host that has been empty for ``retire_idle_s`` when the others still leave the headroom.
A host that dies or fails while it starts is replaced after a backoff (``StartBackoff``).
The Ray side (deployments/host_pool.py) starts and kills the actors this policy asks for.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostOptions:
    sessions_per_host: int = 64  # conversations one host process runs (asyncio tasks)
    min_hosts: int = 1  # hosts kept started even when idle
    max_hosts: int = 4  # hosts one Ingress replica may start
    free_slots: int = 16  # start another host (in the background) when fewer slots than this are free
    retire_idle_s: float = 120.0  # an empty host above the minimum is stopped after this long
    num_cpus: float = 0.0  # Ray CPUs reserved per host (conversations mostly wait on the model deployments)
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources: which nodes may run hosts
    inbox_size: int = 256  # client messages queued per conversation before the client is told it floods
    ping_timeout_s: float = 10.0  # a ready host that does not answer a ping in this time missed it
    ping_misses: int = 2  # pings missed in a row (one per upkeep round, 5 s) before a hung host is replaced

    def __post_init__(self) -> None:
        if self.sessions_per_host < 1 or self.min_hosts < 0 or self.max_hosts < max(1, self.min_hosts):
            raise ValueError("session hosts: need sessions_per_host >= 1 and max_hosts >= max(1, min_hosts)")
        if self.free_slots < 0 or self.retire_idle_s < 0 or self.num_cpus < 0 or self.inbox_size < 1:
            raise ValueError("session hosts: free_slots, retire_idle_s and num_cpus must be >= 0, inbox_size >= 1")
        if self.ping_timeout_s <= 0 or self.ping_misses < 1:
            raise ValueError("session hosts: need ping_timeout_s > 0 and ping_misses >= 1")

    @property
    def capacity(self) -> int:
        return self.sessions_per_host * self.max_hosts


@dataclass
class HostState:
    host_id: str
    ready: bool = False  # started and warmed up
    sessions: int = 0
    idle_since: float = 0.0  # time.monotonic() when its last session ended (or it became ready)


class HostPlacement:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.hosts: dict[str, HostState] = {}

    # ---- the hosts' lifecycle --------------------------------------------------------------------------

    def starting(self, host_id: str) -> None:
        self.hosts[host_id] = HostState(host_id)

    def ready(self, host_id: str, now: float) -> None:
        if host_id in self.hosts:
            self.hosts[host_id].ready = True
            self.hosts[host_id].idle_since = now

    def remove(self, host_id: str) -> None:
        """A host that failed to start, died or was retired."""
        self.hosts.pop(host_id, None)

    # ---- sessions ----------------------------------------------------------------------------------------

    def choose(self) -> str | None:
        """Take a slot on the least loaded ready host with room (None: no ready host has room)."""
        ready = [h for h in self.hosts.values() if h.ready and h.sessions < self.options.sessions_per_host]
        if not ready:
            return None
        host = min(ready, key=lambda h: h.sessions)
        host.sessions += 1
        return host.host_id

    def release(self, host_id: str, now: float) -> None:
        host = self.hosts.get(host_id)
        if host is not None and host.sessions > 0:
            host.sessions -= 1
            if host.sessions == 0:
                host.idle_since = now

    @property
    def sessions(self) -> int:
        return sum(h.sessions for h in self.hosts.values())

    def free_slots(self) -> int:
        """Slots on ready hosts and on hosts being started."""
        return sum(self.options.sessions_per_host - h.sessions for h in self.hosts.values())

    def any_starting(self) -> bool:
        return any(not h.ready for h in self.hosts.values())

    def full(self) -> bool:
        """Every host that may exist is started and has no room: a new caller must be refused."""
        return len(self.hosts) >= self.options.max_hosts and self.free_slots() == 0

    @property
    def _headroom(self) -> int:
        return max(self.options.free_slots, 1)  # at least one free slot, or the next caller waits for a start

    # ---- what the pool should do now --------------------------------------------------------------------

    def hosts_to_start(self) -> int:
        """How many hosts to start now: up to the minimum, then one while the headroom is short."""
        count, free = len(self.hosts), self.free_slots()
        wanted = 0
        while count < self.options.max_hosts and (count < self.options.min_hosts or free < self._headroom):
            count, free, wanted = count + 1, free + self.options.sessions_per_host, wanted + 1
        return wanted

    def to_retire(self, now: float) -> list[str]:
        """Empty hosts idle for ``retire_idle_s``, as long as the rest keep the minimum and the headroom."""
        out: list[str] = []
        count, free = len(self.hosts), self.free_slots()
        idle = sorted((h for h in self.hosts.values() if h.ready and h.sessions == 0
                       and now - h.idle_since >= self.options.retire_idle_s), key=lambda h: h.idle_since)
        for host in idle:
            if count - 1 < self.options.min_hosts or free - self.options.sessions_per_host < self._headroom:
                break
            out.append(host.host_id)
            count, free = count - 1, free - self.options.sessions_per_host
        return out


@dataclass
class StartBackoff:
    """When the next host may start after failed starts: soon after the first failure (a caller may be waiting
    for that host), then twice as long after each further failure in a row, up to ``max_s``, so a host that can
    never start (a broken install, a node without room) is not restarted in a tight loop. A ready host resets it."""

    first_s: float = 1.0
    max_s: float = 60.0
    failures: int = 0  # failed starts since the last host became ready
    not_before: float = 0.0  # time.monotonic() before which no host starts

    def failed(self, now: float) -> float:
        """Count a failed start; returns the seconds until the next start may begin."""
        delay = min(self.first_s * 2 ** min(self.failures, 32), self.max_s)
        self.failures += 1
        self.not_before = max(self.not_before, now + delay)
        return self.not_before - now

    def succeeded(self) -> None:
        self.failures, self.not_before = 0, 0.0

    def may_start(self, now: float) -> bool:
        return now >= self.not_before


def node_for_next_host(nodes: dict[str, dict[str, float]], options: HostOptions, hosts_on: dict[str, int]) -> str | None:
    """The node a new host should go to: among the live nodes whose total resources fit a host (``nodes``: node
    id -> its total resources), the one with the fewest of this pool's hosts (then the lowest id, so the
    choice is stable). None when no node fits (Ray then queues the host until one does).

    Ray's own SPREAD is best effort and, measured, put two hosts started at once on the same node of two;
    counting our hosts per node spreads them every time, so one node's loss takes only its share."""
    need = {"CPU": options.num_cpus, **options.resources}
    fitting = [node for node, total in nodes.items() if all(total.get(k, 0.0) >= v for k, v in need.items() if v > 0)]
    if not fitting:
        return None
    return min(fitting, key=lambda node: (hosts_on.get(node, 0), node))


class HostWatch:
    """Which ready hosts stopped answering. Every upkeep round pings each ready host (with or without
    conversations): a host whose event loop hangs (a blocking call, a deadlock) would otherwise hold its callers
    in silence forever. ``misses`` pings missed in a row mark it hung: the pool kills it, which ends its
    conversations' streams, so each caller is told ``session_lost``, and starts another.

    It also says when this Ingress replica cannot reach any host: hosts are wanted and none has answered (a
    ping, or ``ready``) for ``unreachable_s``; its health check then fails and Serve replaces the replica."""

    def __init__(self, misses: int, unreachable_s: float, now: float) -> None:
        self.misses = misses
        self.unreachable_s = unreachable_s
        self.missed: dict[str, int] = {}
        self.last_answer = now  # the start counts: a new replica has had no chance to reach a host yet

    def answered(self, host_id: str, now: float) -> None:
        self.missed.pop(host_id, None)
        self.last_answer = now

    def missed_ping(self, host_id: str) -> bool:
        """Count a missed ping; True when the host is to be replaced as hung."""
        self.missed[host_id] = self.missed.get(host_id, 0) + 1
        return self.missed[host_id] >= self.misses

    def forget(self, host_id: str) -> None:
        self.missed.pop(host_id, None)

    def unreachable(self, hosts_wanted: bool, now: float) -> bool:
        return hosts_wanted and now - self.last_answer > self.unreachable_s
