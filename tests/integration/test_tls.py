"""wss://: the JS client only speaks TLS. A second graph is started with a self-signed certificate."""

from __future__ import annotations

import ssl

import httpx
import pytest
import trustme

from harness.server import TEST_SECRET, start_server
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.browser import browser_page, screenshot
from tests.integration.helpers import ends_response, start_session, text_of

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path, ca_path = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    server = start_server(folder / "serve.log", tls=(cert_path, key_path))
    yield server, ca_path
    server.stop()


def test_https_root(tls_server):
    server, ca_path = tls_server
    assert server.http_url.startswith("https://")
    response = httpx.get(server.http_url + "/", verify=ssl.create_default_context(cafile=str(ca_path)), timeout=10)
    assert response.json() == {"status": "running"}


async def test_wss_conversation(tls_server):
    server, ca_path = tls_server
    context = ssl.create_default_context(cafile=str(ca_path))
    client = await VoiClient.connect(server.ws_url, issue_token(TEST_SECRET, "tls"), context)
    try:
        await start_session(client)
        await client.send({"type": "text", "content": "secure hello"})
        await client.send({"type": "create_response"})
        items = await client.until(ends_response, 60)
        assert items[-1].is_status("response_done")
        assert text_of([i for i in items if i.type == "message"][-1]) == "secure hello"
    finally:
        await client.close()


async def test_plain_ws_is_not_served_on_the_tls_port(tls_server):
    server, _ = tls_server
    with pytest.raises(Exception):  # noqa: B017 -- any failure to connect is the point
        await VoiClient.connect(server.ws_url.replace("wss://", "ws://"), issue_token(TEST_SECRET, "tls"))


@pytest.mark.browser
def test_playground_over_https(tls_server):
    """The page over https:// talks to wss:// on its own origin (the test's Chromium accepts the test CA's
    certificate by ignoring certificate errors: a browser would be told to trust the CA)."""
    server, _ = tls_server
    with browser_page(None, ignore_https_errors=True) as page:
        page.goto(f"{server.http_url}/?token={issue_token(TEST_SECRET, 'tls')}&agent=stt_test")
        page.click("#start")
        page.wait_for_function("() => window.voiPlayground.state === 'ready'", timeout=60_000)
        assert page.evaluate("() => window.isSecureContext")
        page.fill("#text-input", "secure hello")
        page.press("#text-input", "Enter")
        page.locator(".msg.assistant .latency").last.wait_for(timeout=60_000)
        assert page.locator(".msg.assistant").last.locator(".text").inner_text() == "secure hello"
        screenshot(page, "playground_https")
