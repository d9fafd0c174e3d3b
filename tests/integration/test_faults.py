"""Failures: a model replica dies mid-conversation, a session actor dies; other sessions are untouched."""

from __future__ import annotations

import pytest
import websockets

from tests.integration.helpers import ends_response, expect_refused, final_user_text, start_session, text_of
from tests.speech_fixtures import speech_pcm16k, wer


@pytest.fixture(scope="module")
def ray_cluster(server):
    """This test process joins the server's Ray cluster as a driver, to find and kill actors."""
    import os

    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"  # as the test server runs it
    ray.init(address=server.ray_address, namespace="serve", log_to_driver=False)
    yield ray
    ray.shutdown()


def named_actors(ray, fragment: str) -> list[str]:
    """Names of the live named actors whose name contains ``fragment`` (no dashboard needed)."""
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if fragment in a["name"] and a["namespace"] == "serve")


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


async def test_killed_session_actor_closes_only_its_own_session(ray_cluster, connect):
    doomed, survivor = await connect(), await connect()
    await start_session(doomed, mode="call")
    await start_session(survivor, mode="chat")
    victims = []
    for name in named_actors(ray_cluster, "voi_session_"):
        actor = ray_cluster.get_actor(name, namespace="serve")
        described = await actor.describe.remote()
        if described.get("mode") == "call":
            victims.append(actor)
    assert len(victims) == 1
    ray_cluster.kill(victims[0])

    await expect_refused(doomed, "session_lost", 1011)
    await survivor.send({"type": "text", "content": "are you still there"})
    await survivor.send({"type": "create_response"})
    items = await survivor.until(ends_response, 60)
    assert items[-1].is_status("response_done")
    assert text_of([i for i in items if i.type == "message"][-1]) == "are you still there"
    with pytest.raises(websockets.ConnectionClosed):
        await doomed.send({"type": "text", "content": "hello?"})


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
