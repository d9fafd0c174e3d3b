import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from protocol.tokens import TokenError, issue_token, verify_token

SECRET = "unit-test-secret-key-that-is-long-enough-0123456789"


def test_issue_and_verify():
    now = time.time()
    token = issue_token(SECRET, "app1", days=2, now=now)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["app"] == "app1" and claims["exp"] - claims["iat"] == 2 * 86_400
    assert verify_token(token, SECRET).app == "app1"


@pytest.mark.parametrize("token, reason", [
    (None, "missing"),
    ("", "missing"),
    ("not.a.jwt", "malformed"),
    (jwt.encode({"app": "a", "exp": int(time.time()) - 1}, SECRET, "HS256"), "expired"),
    (jwt.encode({"app": "a", "exp": int(time.time()) + 99}, SECRET + "x", "HS256"), "signature"),
    (jwt.encode({"app": "a", "exp": int(time.time()) + 99}, None, "none"), "algorithm"),
    (jwt.encode({"app": "a", "exp": int(time.time()) + 99}, SECRET, "HS512"), "algorithm"),
    (jwt.encode({"exp": int(time.time()) + 99}, SECRET, "HS256"), "app"),
    (jwt.encode({"app": "a"}, SECRET, "HS256"), "expiry"),
    (jwt.encode({"app": "a", "expire": "tomorrow"}, SECRET, "HS256"), "ISO"),
])
def test_refused(token, reason):
    with pytest.raises(TokenError, match=reason):
        verify_token(token, SECRET)


def test_old_generator_expire_claim():
    future = (datetime.now() + timedelta(hours=3)).isoformat()
    past = (datetime.now() - timedelta(seconds=5)).isoformat()
    assert verify_token(jwt.encode({"app": "old", "expire": future}, SECRET, "HS256"), SECRET).app == "old"
    with pytest.raises(TokenError, match="expired"):
        verify_token(jwt.encode({"app": "old", "expire": past}, SECRET, "HS256"), SECRET)
    aware = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert verify_token(jwt.encode({"app": "old", "expire": aware}, SECRET, "HS256"), SECRET).app == "old"


def test_issue_refuses_nonsense():
    with pytest.raises(ValueError):
        issue_token("", "a")
    with pytest.raises(ValueError):
        issue_token(SECRET, "a", days=0)


@pytest.mark.parametrize("exp_days", [31, 365, 365_000])
def test_lifetimes_past_the_cap_are_refused(exp_days):
    token = jwt.encode({"app": "a", "exp": int(time.time()) + exp_days * 86_400}, SECRET, "HS256")
    with pytest.raises(TokenError, match="longer than this server accepts"):
        verify_token(token, SECRET)
    assert verify_token(token, SECRET, max_lifetime_s=(exp_days + 1) * 86_400).app == "a"


def test_legacy_tokens_far_in_the_future_are_refused():
    far = (datetime.now() + timedelta(days=3000)).isoformat()
    with pytest.raises(TokenError, match="longer"):
        verify_token(jwt.encode({"app": "old", "expire": far}, SECRET, "HS256"), SECRET)


@pytest.mark.parametrize("app", ["a\nb", "a\r\nINFO forged", "tab\there", "nul\x00", "esc\x1b[31m", "x\u2028y",
                                 "x" * 201, "   "])
def test_app_names_with_control_characters_are_neither_minted_nor_accepted(app):
    with pytest.raises(ValueError):
        issue_token(SECRET, app)
    signed = jwt.encode({"app": app, "exp": int(time.time()) + 99}, SECRET, "HS256")
    with pytest.raises(TokenError, match="app"):
        verify_token(signed, SECRET)


@pytest.mark.parametrize("days", [float("nan"), float("inf"), -1.0])
def test_issue_refuses_non_finite_days(days):
    with pytest.raises(ValueError):
        issue_token(SECRET, "a", days=days)
