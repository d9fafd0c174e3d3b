"""The Ingress side of /v1/realtime that needs no socket: credentials, client secrets, the session's agent."""

from __future__ import annotations

import pytest

from agents.agent import AgentConfig, build_agent
from deployments.realtime import client_secret, session_agent
from protocol.admission import authorize
from protocol.realtime_events import SessionConfig
from protocol.tokens import TokenError, issue_token, verify_token

SECRET = "a-token-secret-key-of-at-least-32-characters"
AGENT = build_agent(AgentConfig.model_validate({"llm_model": "echo", "system_prompt": "You are Joe.",
                                                "voices": {"character": {"model": "piper-joe", "voice": "joe"}}}),
                    patterns={}, others={}, models=None, source="test", name="echo", base_dir=None)


def test_api_key_or_our_token_and_nothing_else():
    assert authorize("the-api-key", "the-api-key", SECRET) == "api_key"
    assert authorize(issue_token(SECRET, "web"), "the-api-key", SECRET) == "web"
    for bad in (None, "", "wrong", issue_token("another-secret-key-of-at-least-32-chars", "web")):
        with pytest.raises(TokenError):
            authorize(bad, "the-api-key", SECRET)


def test_client_secret_is_a_short_lived_token_in_openais_shape():
    answer = client_secret(b'{"expires_after": {"anchor": "created_at", "seconds": 60}, "session": {"model": "stt_test"}}',
                           SECRET, "assistant")
    claims = verify_token(answer["value"], SECRET)
    assert abs(claims.expires_at - answer["expires_at"]) <= 2 and claims.app == "realtime-client"
    assert answer["session"]["model"] == "stt_test" and answer["session"]["type"] == "realtime"
    assert client_secret(b"", SECRET, "assistant")["session"]["model"] == "assistant"
    for body in (b'{"expires_after": {"seconds": 5}}', b'{"expires_after": {"seconds": 99999}}', b"[1]", b"{nope"):
        with pytest.raises(ValueError):
            client_secret(body, SECRET, "assistant")


def test_session_agent_takes_the_voice_and_only_allowed_instructions():
    config = SessionConfig(model="echo", voice="joe_warm", instructions="You are a pirate.")
    kept = session_agent(AGENT, config, instructions_allowed=False)
    assert kept.character.voice == "joe_warm" and kept.persona.system_prompt == "You are Joe."
    assert session_agent(AGENT, config, instructions_allowed=True).persona.system_prompt == "You are a pirate."
