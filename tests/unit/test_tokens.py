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
