"""The one admission path (protocol/admission.py): credentials and room, for every transport."""

from __future__ import annotations

import asyncio

import pytest

from protocol.admission import CredentialsRefused, Gate, GateConfig, authorize
from protocol.limits import AdmissionLimits, AdmissionRefused
from protocol.tokens import TokenError, issue_token

SECRET = "a-token-secret-key-of-at-least-32-characters"
KEY = "the-api-key"


def gate(**kwargs: object) -> Gate:
    return Gate(GateConfig(api_key=KEY, token_secret=SECRET, **kwargs))  # type: ignore[arg-type]


def test_routes_choose_which_credentials_they_take():
    assert authorize(KEY, KEY, SECRET) == "api_key"
    with pytest.raises(CredentialsRefused) as wrong_key:
        authorize("wrong", KEY, SECRET, token_ok=False)
    assert wrong_key.value.api_key and not wrong_key.value.missing
    with pytest.raises(CredentialsRefused) as missing:
        authorize(None, KEY, SECRET, token_ok=False)
    assert missing.value.missing
    with pytest.raises(TokenError):  # the API key is not a token where only tokens are taken
        authorize(KEY, KEY, SECRET, api_key_ok=False)
    assert authorize(issue_token(SECRET, "web"), KEY, SECRET, api_key_ok=False) == "web"
    with pytest.raises(TokenError):  # a token past the server's lifetime cap
        authorize(issue_token(SECRET, "web", days=10), KEY, SECRET, max_lifetime_s=86_400)


def test_a_single_call_token_is_admitted_once_and_only_for_its_call():
    door = gate()
    token = issue_token(SECRET, "phone", days=60 / 86_400, call="CA1")
    with pytest.raises(TokenError):
        door.authorize(token, single_call=True, call="CA2")
    assert door.authorize(token, single_call=True, call="CA1") == "phone"
    with pytest.raises(TokenError, match="already used"):
        door.authorize(token, single_call=True, call="CA1")
    with pytest.raises(TokenError):  # a plain token (or the API key) is no call's token
        door.authorize(issue_token(SECRET, "phone"), single_call=True)
    with pytest.raises(TokenError):
        door.authorize(KEY, single_call=True)


def test_used_call_tokens_are_forgotten_once_expired():
    now = [1_000_000.0]
    door = Gate(GateConfig(api_key=KEY, token_secret=SECRET), clock=lambda: now[0])
    door._calls["old"] = now[0] - 1
    door.authorize(issue_token(SECRET, "phone", days=1, call="new"), single_call=True)
    assert set(door._calls) == {"new"}


async def test_admit_counts_handshakes_apps_and_sessions():
    door = gate(max_sessions=1, limits=AdmissionLimits(max_sessions_per_app=2, max_pending=4, max_pending_per_app=2))
    in_handshake = asyncio.Event()
    release = asyncio.Event()
    seen: list[tuple[int, int]] = []

    async def slow_handshake() -> str:
        in_handshake.set()
        await release.wait()
        return "init"

    async def converse(started: str, count) -> None:  # type: ignore[no-untyped-def]
        count(1)
        seen.append((door.open_sessions, door.pending))
        count(-1)

    task = asyncio.create_task(door.admit("app", slow_handshake, converse))
    await in_handshake.wait()
    assert door.pending == 1 and door.admission.sessions_of("app") == 1
    release.set()
    await task
    assert seen == [(1, 0)] and door.pending == 0 and door.admission.sessions_of("app") == 0 and door.open_sessions == 0


async def test_admit_refuses_when_the_replica_is_full_before_and_after_the_handshake():
    door = gate(max_sessions=1)
    door.count(1)
    with pytest.raises(AdmissionRefused) as full:
        await door.admit("app", lambda: asyncio.sleep(0, "init"), lambda s, c: asyncio.sleep(0))
    assert full.value.code == "server_busy" and full.value.close_code == 1013
    door.count(-1)

    async def fills_meanwhile() -> str:
        door.count(1)  # another socket took the last slot while this one was in its handshake
        return "init"

    with pytest.raises(AdmissionRefused):
        await door.admit("app", fills_meanwhile, lambda s, c: asyncio.sleep(0))
    assert door.pending == 0 and door.admission.sessions_of("app") == 0


async def test_a_refused_or_abandoned_handshake_frees_its_slot():
    door = gate()

    async def gone() -> None:
        return None

    await door.admit("app", gone, lambda s, c: asyncio.sleep(0))
    assert door.pending == 0 and door.admission.sessions_of("app") == 0
