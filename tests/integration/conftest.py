from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from deployments.session import FAULT_INJECTION_ENV
from harness.scripted_llm import API_KEY, ScriptedLlm
from harness.server import ROOT, TEST_SECRET, TEST_TWILIO_AUTH_TOKEN, Server, start_server
from harness.speech import write_greeting_file
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.helpers import PHONE_RECORDED, PHONE_SCRIPTED

TEST_AGENTS = ROOT / "tests" / "integration" / "agents.yaml"
TEST_MODELS = ROOT / "tests" / "integration" / "models.yaml"


@pytest.fixture(scope="session")
def scripted_llm() -> ScriptedLlm:
    """An OpenAI-compatible server on loopback: bare model names reach it through LiteLLM."""
    llm = ScriptedLlm().start()
    yield llm
    llm.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, scripted_llm: ScriptedLlm) -> Server:
    """The real graph, started once per test session (with the test agents and the scripted LLM)."""
    log = tmp_path_factory.mktemp("server") / "serve.log"
    write_greeting_file()
    # Two session hosts, so fault tests can end one host's conversations while another host's go on; the
    # fault switch lets a test make one conversation's handler raise. A 25 s turn limit lets a test pass it
    # within the audio burst allowance (30 s at once; beyond it audio is capped at 2x real time).
    # The phone (test_phone.py): calls to PHONE_SCRIPTED reach the scripted agent, to PHONE_RECORDED the recorded
    # one, others the echo agent, and the webhook checks Twilio's signature.
    numbers = json.dumps({PHONE_SCRIPTED: "scripted", PHONE_RECORDED: "recorded"})
    srv = start_server(log, f"agents={TEST_AGENTS}", f"models={TEST_MODELS}", "min_session_hosts=2",
                       "max_turn_seconds=25", "phone_agent=stt_test", f"phone_numbers={numbers}",
                       env_extra={"LITELLM_API_BASE": scripted_llm.url, "LITELLM_API_KEY": API_KEY,
                                  FAULT_INJECTION_ENV: "1", "TWILIO_AUTH_TOKEN": TEST_TWILIO_AUTH_TOKEN})
    yield srv
    srv.stop()


@pytest.fixture
def token() -> str:
    return issue_token(TEST_SECRET, "tests")


Connect = Callable[..., Awaitable[VoiClient]]


@pytest.fixture
async def connect(server: Server, token: str) -> AsyncIterator[Connect]:
    """Opens websocket clients (closed at the end of the test) with a valid token by default."""
    clients: list[VoiClient] = []

    async def open_client(token_value: str | None = token) -> VoiClient:
        client = await VoiClient.connect(server.ws_url, token_value)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture(scope="module")
def ray_cluster(server):
    """This test process joins the server's Ray cluster as a driver, to find and kill actors."""
    import os

    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"  # as the test server runs it
    ray.init(address=server.ray_address, namespace="serve", log_to_driver=False)
    yield ray
    ray.shutdown()
