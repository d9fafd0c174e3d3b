"""`python serve_app.py --serve-config PROFILE`, what the container runs: the profile's deployment settings and
builder args reach the graph (the command line's args win), a deploy of the same config with agents in the
Ingress's user_config updates them in place (`reconfigure`) while a call goes on, a typed turn is answered,
and SIGTERM still stops the whole server. One graph for the module: a small CPU profile with the echo agent only (no LocalLLM)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest
import yaml

from harness.server import TEST_API_KEY, TEST_SECRET, Server, start_server
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.conftest import TEST_MODELS
from tests.integration.helpers import ECHO_AGENTS, echo_turn, ends_response, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)

PROFILE = {
    "proxy_location": "EveryNode",
    "http_options": {"host": "0.0.0.0", "port": 8000, "keep_alive_timeout_s": 75},  # the command line's win
    "applications": [{
        "name": "voi", "route_prefix": "/", "import_path": "serve_app:app",
        "args": {"min_session_hosts": 1, "max_sessions_per_ingress": 6, "max_pending_handshakes": 8},
        "deployments": [
            {"name": "Ingress", "num_replicas": 1, "graceful_shutdown_timeout_s": 30, "ray_actor_options": {"num_cpus": 0.1}},
            {"name": "Transcriber", "num_replicas": 1, "max_ongoing_requests": 9, "ray_actor_options": {"num_cpus": 0.2}},
            {"name": "Synthesizer", "num_replicas": 1, "max_ongoing_requests": 7, "ray_actor_options": {"num_cpus": 0.2}},
        ],
    }],
}


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Server:
    folder = tmp_path_factory.mktemp("profile")
    (folder / "agents.yaml").write_text(ECHO_AGENTS)
    profile = folder / "profile.yaml"
    profile.write_text(yaml.safe_dump(PROFILE))
    server = start_server(folder / "serve.log", "--serve-config", str(profile), f"agents={folder / 'agents.yaml'}",
                          f"models={TEST_MODELS}", "max_pending_handshakes=12")
    yield server
    server.stop()


def test_the_profile_settings_reach_the_graph(profiled):
    view = httpx.get(f"{profiled.http_url}/sessions", headers={"Authorization": f"Bearer {TEST_API_KEY}"}, timeout=30).json()
    assert view["max_sessions"] == 6, view  # the profile's builder arg
    details = serve_details(profiled)
    deployments = details["applications"]["voi"]["deployments"]
    config = {name: d["deployment_config"] for name, d in deployments.items()}
    assert config["Transcriber"]["max_ongoing_requests"] == 9 and config["Synthesizer"]["max_ongoing_requests"] == 7
    assert config["Ingress"]["graceful_shutdown_timeout_s"] == 30
    assert config["Ingress"]["ray_actor_options"]["num_cpus"] == 0.1
    # The builder's derived number, from the command line's max_pending_handshakes (12) over the profile's (8).
    assert config["Ingress"]["max_ongoing_requests"] == 6 + 12 + 16
    assert details["http_options"]["host"] == "127.0.0.1", "the command line's host (start_server's), not the profile's"


def serve_details(server: Server) -> dict:
    import ray
    from ray.serve.context import _get_global_client

    os.environ["RAY_AUTH_MODE"] = "disabled"  # as the test server runs it
    ray.init(address=server.ray_address, namespace="serve", log_to_driver=False)
    try:
        return _get_global_client().get_serve_details()
    finally:
        ray.shutdown()


def deploy_with_user_config(server: Server, agents: dict) -> None:
    """What `serve deploy` of the running config with the agents under the Ingress's user_config does."""
    import ray
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(address=server.ray_address, namespace="serve", log_to_driver=False)
    try:
        client = _get_global_client()
        details = client.get_serve_details()
        app = details["applications"]["voi"]["deployed_app_config"]
        for deployment in app["deployments"]:
            if deployment["name"] == "Ingress":
                deployment["user_config"] = agents
        http = {key: details["http_options"][key] for key in ("host", "port")}
        client.deploy_apps(ServeDeploySchema.model_validate({"http_options": http, "applications": [app]}))
    finally:
        ray.shutdown()


async def test_agents_in_user_config_are_updated_in_place_while_a_call_goes_on(profiled):
    old = await VoiClient.connect(profiled.ws_url, issue_token(TEST_SECRET, "profile"))
    try:
        await start_session(old)
        assert "one two" in (await echo_turn(old, "One two.")).lower()
        ingress = serve_details(profiled)["applications"]["voi"]["deployments"]["Ingress"]
        replicas = {r["replica_id"] for r in ingress["replicas"]}
        agents = yaml.safe_load(ECHO_AGENTS)
        agents["agents"]["second"] = {"llm_model": "echo", "voices": {"character": {"model": "piper-joe", "voice": "joe"}}}
        await asyncio.to_thread(deploy_with_user_config, profiled, agents)
        headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
        deadline = asyncio.get_running_loop().time() + 120
        while "second" not in (view := httpx.get(f"{profiled.http_url}/sessions", headers=headers, timeout=30).json())["agents"]["agents"]:
            assert asyncio.get_running_loop().time() < deadline, view["agents"]
            await asyncio.sleep(1)
        new = await VoiClient.connect(profiled.ws_url, issue_token(TEST_SECRET, "profile"))
        await start_session(new, "second")
        assert "three four" in (await echo_turn(new, "Three four.")).lower()
        assert "five six" in (await echo_turn(old, "Five six.")).lower()  # the call started before goes on
        await new.close()
        ingress = serve_details(profiled)["applications"]["voi"]["deployments"]["Ingress"]
        assert {r["replica_id"] for r in ingress["replicas"]} == replicas, "reconfigured in place, not restarted"
    finally:
        await old.close()


async def test_a_typed_turn_is_answered_and_sigterm_stops_it(profiled):
    """(Last in the module: it stops the module's graph.)"""
    client = await VoiClient.connect(profiled.ws_url, issue_token(TEST_SECRET, "profile"))
    await start_session(client)
    await client.send({"type": "text", "content": "Hello through a profile"})
    await client.send({"type": "create_response"})
    items = await client.until(ends_response, 60)
    assert items[-1].is_status("response_done")
    assert any(r.type == "message" and r.header["role"] == "assistant" and text_of(r) == "Hello through a profile"
               for r in items)
    profiled.process.terminate()  # SIGTERM
    assert await asyncio.to_thread(profiled.process.wait, 120) == 0
    assert "voi: stopped in" in profiled.log_tail(), profiled.log_tail()
    deadline = asyncio.get_running_loop().time() + 30
    while (left := profiled.processes()) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
    assert not left, left
    assert Path(profiled.log_path).exists()
