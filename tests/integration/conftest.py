from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable

import pytest

from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.server import TEST_SECRET, Server, start_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """The real graph, started once per test session."""
    log = tmp_path_factory.mktemp("server") / "serve.log"
    srv = start_server(log)
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
