"""HTTP routes and access tokens against the real server."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from harness.server import TEST_API_KEY, TEST_SECRET
from protocol.tokens import verify_token
from tests.integration.helpers import expect_refused, start_session

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


def test_root_reports_running(server):
    response = httpx.get(server.http_url + "/", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "running"}


def test_integration_endpoint_issues_a_one_day_token(server):
    response = httpx.post(server.http_url + "/integrations/my-app", headers={"API-Key": TEST_API_KEY}, timeout=10)
    assert response.status_code == 200
    token = response.json()["token"]
    claims = verify_token(token, TEST_SECRET)
    assert claims.app == "my-app"
    assert abs(claims.expires_at - (time.time() + 86_400)) < 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_integration_endpoint_refuses_wrong_or_missing_key(server):
    wrong = httpx.post(server.http_url + "/integrations/my-app", headers={"API-Key": "nope"}, timeout=10)
    missing = httpx.post(server.http_url + "/integrations/my-app", timeout=10)
    assert wrong.status_code == 403 and "token" not in wrong.json() and wrong.json()["detail"]
    assert missing.status_code == 401 and "token" not in missing.json() and missing.json()["detail"]


async def test_valid_token_opens_a_session(connect):
    client = await connect()
    got = await start_session(client)
    assert got[-1].header == {"type": "status", "status": "init_done", "agent_name": "stt_test"}


async def test_missing_token_is_refused(connect):
    client = await connect(None)
    error = await expect_refused(client, "bad_token", 1008)
    assert "missing" in error.header["error"]


async def test_expired_token_is_refused(connect):
    expired = jwt.encode({"app": "t", "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, TEST_SECRET, "HS256")
    error = await expect_refused(await connect(expired), "bad_token", 1008)
    assert "expired" in error.header["error"]


async def test_wrong_signature_is_refused(connect):
    forged = jwt.encode({"app": "t", "exp": int(time.time()) + 3600}, "another-secret-key-of-sufficient-length!!", "HS256")
    error = await expect_refused(await connect(forged), "bad_token", 1008)
    assert "signature" in error.header["error"]


async def test_alg_none_is_refused(connect):
    unsigned = jwt.encode({"app": "t", "exp": int(time.time()) + 3600}, None, algorithm="none")
    await expect_refused(await connect(unsigned), "bad_token", 1008)


async def test_old_generator_tokens_work_until_they_expire(connect):
    from datetime import datetime, timedelta

    future = (datetime.now() + timedelta(days=1)).isoformat()  # the old generator's naive local time
    past = (datetime.now() - timedelta(minutes=5)).isoformat()
    valid_old = jwt.encode({"app": "legacy", "expire": future}, TEST_SECRET, "HS256")
    expired_old = jwt.encode({"app": "legacy", "expire": past}, TEST_SECRET, "HS256")
    await start_session(await connect(valid_old))
    error = await expect_refused(await connect(expired_old), "bad_token", 1008)
    assert "expired" in error.header["error"]
