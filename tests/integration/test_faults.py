"""Failures: a model replica dies mid-conversation, a session host dies; other sessions are untouched."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from harness.server import TEST_TWILIO_AUTH_TOKEN
from harness.speech import speech_pcm16k, wer
from harness.twilio_caller import TwilioCaller, dial, follow_action
from tests.integration.helpers import (
    ends_response,
    expect_refused,
    final_user_text,
    hosts,
    named_actors,
    phone_turn,
    start_session,
    text_of,
)

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


async def test_session_survives_a_killed_transcriber_replica(ray_cluster, connect):
    client = await connect()
    await start_session(client)
    sentence = "Please water the plants on the balcony every morning."
    await client.send_audio(speech_pcm16k(sentence))
    await client.send({"type": "create_response"})
    assert (await client.until(ends_response, 60))[-1].is_status("response_done")

    replicas = named_actors(ray_cluster, "Transcriber")
    assert len(replicas) == 1, replicas
    ray_cluster.kill(ray_cluster.get_actor(replicas[0], namespace="serve"))

    # The next turn completes: calls to the lost replica are retried until Serve has replaced it.
    await client.send_audio(speech_pcm16k(sentence))
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 120)
    assert items[-1].is_status("response_done"), [i.header for i in items if i.type != "audio"]
    assert wer(sentence, final_user_text(items)) <= 0.15
    assert named_actors(ray_cluster, "Transcriber") != replicas  # Serve started a new replica


def host_of(ray, mode: str) -> str:
    """The host running the one conversation in ``mode``."""
    found = [name for name, view in hosts(ray).items() for s in view["sessions"] if s["mode"] == mode]
    assert len(found) == 1, hosts(ray)
    return found[0]


async def test_killed_host_loses_only_its_own_sessions(ray_cluster, connect):
    doomed = await connect()
    await start_session(doomed, mode="call")
    victim = host_of(ray_cluster, "call")
    survivor = None
    for _ in range(3):  # least loaded first: a second caller goes to the other (emptier) host
        candidate = await connect()
        await start_session(candidate, mode="chat")
        if any(s["mode"] == "chat" for s in hosts(ray_cluster)[victim]["sessions"]):
            continue
        survivor = candidate
        break
    assert survivor is not None, hosts(ray_cluster)
    killed_at = time.monotonic()
    ray_cluster.kill(ray_cluster.get_actor(victim, namespace="serve"))

    error = await expect_refused(doomed, "session_lost", 1011)
    lost_after_s = error.at - killed_at
    print(f"session_lost {lost_after_s * 1000:.0f} ms after the host was killed")
    assert lost_after_s <= 2.0, lost_after_s
    await survivor.send({"type": "text", "content": "are you still there"})
    await survivor.send({"type": "create_response"})
    items = await survivor.until(ends_response, 60)
    assert items[-1].is_status("response_done")
    assert text_of([i for i in items if i.type == "message"][-1]) == "are you still there"
    with pytest.raises(websockets.ConnectionClosed):
        await doomed.send({"type": "text", "content": "hello?"})
    fresh = await connect()  # a new caller goes to a live host
    await start_session(fresh)
    assert victim not in hosts(ray_cluster)


async def test_session_survives_a_killed_synthesizer_replica(ray_cluster, connect):
    client = await connect()
    await start_session(client)
    replicas = named_actors(ray_cluster, "Synthesizer")
    assert len(replicas) == 1, replicas
    ray_cluster.kill(ray_cluster.get_actor(replicas[0], namespace="serve"))
    await client.send({"type": "text", "content": "speak after the crash"})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_done")
    reply = [i for i in items if i.type == "message" and i.header["role"] == "assistant"][-1]
    audio = await client.until(lambda r: r.type == "audio" and r.header["speech_id"] == str(reply.header["id"]), 120)
    assert len(audio[-1].payload) > 0
    assert named_actors(ray_cluster, "Synthesizer") != replicas


async def test_a_phone_call_whose_host_died_goes_on_through_twilios_action(ray_cluster, server):
    """The host of a phone call dies: the stream is closed (1011), Twilio posts the <Connect>'s action, and the
    answer connects the same call again, to a live host: the caller is not greeted twice and is answered."""
    line = "Can you recommend a good book for a long train ride?"
    setup = await dial(server.http_url, auth_token=TEST_TWILIO_AUTH_TOKEN)
    caller = await TwilioCaller.connect(setup)
    try:
        await caller.wait_media_after(0.0, 60)  # the greeting
        await caller.wait_played_out(quiet_s=1.0, timeout=60)
        ray_cluster.kill(ray_cluster.get_actor(host_of(ray_cluster, "call"), namespace="serve"))
        await asyncio.wait_for(caller.closed.wait(), 30)
        assert caller.close_code == 1011, caller.close_code
    finally:
        await caller.close()
    handed = await follow_action(setup, auth_token=TEST_TWILIO_AUTH_TOKEN)
    assert handed is not None and handed.parameters.get("handover") == "1", handed
    again = await TwilioCaller.connect(handed)
    try:
        ended, _, reply = await phone_turn(again, line)
        assert again.log.media_at[0][0] >= ended - 0.5, "greeted again"  # its first audio is the answer
        assert wer(line, reply) <= 0.3, reply
    finally:
        await again.hang_up()
