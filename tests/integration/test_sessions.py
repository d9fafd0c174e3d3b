"""Sessions at scale: many conversations per session host, bursts of callers, isolation, capacity."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.session import FAULT_TEXT
from harness.server import TEST_SECRET, start_server
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.conftest import TEST_AGENTS, TEST_MODELS
from tests.integration.helpers import ends_response, expect_refused, hosts, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


async def typed_turn(client: VoiClient, text: str) -> None:
    """One typed turn of the echo agent: its reply ends with the input (it echoes every typed message since
    the last turn), and its audio arrives."""
    await client.send({"type": "text", "content": text})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 180)
    assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
    reply = [i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]
    assert text_of(reply).endswith(text), text_of(reply)
    audio = await client.until(lambda r: r.type == "audio" and r.header["speech_id"] == str(reply.header["id"]), 180)
    assert len(audio[-1].payload) > 0


async def test_a_burst_of_32_callers_all_get_init_done_and_a_reply(server, token):
    async def one(n: int) -> float:
        client = await VoiClient.connect(server.ws_url, token)
        try:
            started = time.monotonic()
            await start_session(client)
            waited = time.monotonic() - started
            await typed_turn(client, f"caller number {n}")
            return waited
        finally:
            await client.close()

    waits = await asyncio.gather(*(one(n) for n in range(32)))
    print(f"init_done after {sorted(waits)[len(waits) // 2]:.2f} s median, {max(waits):.2f} s max")


async def test_a_failing_conversation_ends_alone_on_its_host(ray_cluster, connect):
    deadline = time.monotonic() + 20
    while any(view["sessions"] for view in hosts(ray_cluster).values()) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # earlier tests' conversations end on their hosts after their sockets closed
    clients = [await connect() for _ in range(3)]
    for n, client in enumerate(clients):  # client n holds n + 1 messages: the hosts' views tell them apart
        await start_session(client)
        for k in range(n + 1):
            await client.send({"type": "text", "content": f"marker {k}"})
        await client.until(lambda r: r.type == "message" and text_of(r) == f"marker {n}", 30)
    placed = {session["messages"]: name for name, view in hosts(ray_cluster).items() for session in view["sessions"]}
    assert sorted(placed) == [1, 2, 3], placed
    by_host: dict[str, list[int]] = {}
    for count, name in placed.items():
        by_host.setdefault(name, []).append(count)
    shared = next(counts for counts in by_host.values() if len(counts) >= 2)  # three callers, two hosts
    victim, neighbour = (clients[count - 1] for count in shared[:2])

    await victim.send({"type": "text", "content": FAULT_TEXT})
    await expect_refused(victim, "internal", 1011)
    await typed_turn(neighbour, "still here")  # same host, still talking
    assert placed[shared[0]] in hosts(ray_cluster)  # the host itself lives on


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, scripted_llm):
    """A server with room for four conversations: two hosts of two, started on demand and retired when idle."""
    from harness.speech import write_greeting_file

    write_greeting_file()
    srv = start_server(tmp_path_factory.mktemp("small") / "serve.log", f"agents={TEST_AGENTS}", f"models={TEST_MODELS}",
                       "sessions_per_host=2", "min_session_hosts=1", "max_session_hosts=2", "free_session_slots=0",
                       "max_sessions_per_ingress=4", "session_host_idle_s=2")
    yield srv
    srv.stop()


def host_lines(server) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines()
            if "session host voi_host_" in line and " ready in " in line or "retiring idle session host" in line]


async def test_hosts_start_on_demand_refuse_when_full_and_retire_when_idle(small_server):
    token = issue_token(TEST_SECRET, "tests")
    clients: list[VoiClient] = []
    try:
        for _ in range(4):  # each connects when the one before is placed: the third waits for the second host's
            clients.append(await VoiClient.connect(small_server.ws_url, token))  # start, longer than init_timeout_s
            await start_session(clients[-1])
        ready = [line for line in host_lines(small_server) if " ready in " in line]
        assert len(ready) == 2, host_lines(small_server)  # the second host came when the first filled up

        # Four open sockets fill max_sessions_per_ingress: the fifth is refused as soon as it is accepted, before
        # it could send init (sending one would race the close).
        refused = await VoiClient.connect(small_server.ws_url, token)
        await expect_refused(refused, "server_busy", 1013)

        for client in clients:  # everyone on both hosts still talks
            await typed_turn(client, "room for all of us")
    finally:
        for client in clients:
            await client.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("retiring" in line for line in host_lines(small_server)):
        await asyncio.sleep(1)
    assert any("retiring" in line for line in host_lines(small_server)), host_lines(small_server)
    again = await VoiClient.connect(small_server.ws_url, token)  # the remaining host takes a new caller
    try:
        await start_session(again)
        await typed_turn(again, "after the quiet")
    finally:
        await again.close()
