"""Access tokens: HS256 JWTs carrying the app name.

New tokens carry the standard ``exp`` and ``iat`` claims. Tokens minted by the old Voi generator carry a
custom ``expire`` claim (a naive local-time ISO string) instead; they keep working until that time passes.
The algorithm is pinned to HS256, so ``alg: none`` and algorithm-confusion tokens are refused.

A token's lifetime is capped where it is checked (``max_lifetime_s``, the server's ``max_token_days``): a
leaked token that claims to live until the year 3000 is refused. App names are at most ``MAX_APP_CHARS``
printable characters (a newline in one could forge a line of the server log).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from common.log_text import has_control_characters

ALGORITHM = "HS256"
SECONDS_PER_DAY = 86_400
MAX_APP_CHARS = 200
DEFAULT_MAX_DAYS = 30.0  # tokens accepted by default live at most this long from now


class TokenError(Exception):
    """A token that must be refused; the message is safe to show to the client (no token, no secret)."""


@dataclass(frozen=True)
class TokenClaims:
    app: str
    expires_at: float  # unix seconds
    call: str | None = None  # a single-call token (the phone's): the call it was minted for, admitted once


def issue_token(secret: str, app: str, *, days: float = 1.0, now: float | None = None, call: str | None = None) -> str:
    if not secret:
        raise ValueError("TOKEN_SECRET_KEY is empty")
    check_app_name(app)
    if not (days > 0 and math.isfinite(days)):
        raise ValueError("a token must be valid for a positive, finite number of days")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {"app": app, "iat": issued, "exp": max(issued + int(days * SECONDS_PER_DAY), issued + 1)}
    if call is not None:
        claims["call"] = call
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def check_app_name(app: str) -> None:
    """ValueError unless ``app`` is 1 to MAX_APP_CHARS characters with no control character."""
    if not app or not app.strip():
        raise ValueError("app name is empty")
    if len(app) > MAX_APP_CHARS or has_control_characters(app):
        raise ValueError(f"app name must be at most {MAX_APP_CHARS} characters, none of them control characters")


def _legacy_expiry(value: object) -> float:
    if not isinstance(value, str):
        raise TokenError("token 'expire' claim is not a date")
    try:
        expire = datetime.fromisoformat(value)
    except ValueError:
        raise TokenError("token 'expire' claim is not an ISO date") from None
    if expire.tzinfo is None:  # the old generator wrote naive local time
        return expire.timestamp()
    return expire.astimezone(UTC).timestamp()


def verify_token(token: str | None, secret: str, *, now: float | None = None,
                 max_lifetime_s: float = DEFAULT_MAX_DAYS * SECONDS_PER_DAY) -> TokenClaims:
    """Return the claims of a valid token or raise TokenError saying why it was refused (also when it
    expires more than ``max_lifetime_s`` from now)."""
    if not token:
        raise TokenError("missing access token: connect to /ws?token=<token>")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("malformed access token") from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"access token algorithm must be {ALGORITHM}")
    current = now if now is not None else time.time()
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenError("access token signature is invalid") from None
    except jwt.PyJWTError:
        raise TokenError("malformed access token") from None
    app = claims.get("app")
    if not isinstance(app, str) or not app:
        raise TokenError("access token has no 'app' claim")
    try:
        check_app_name(app)
    except ValueError:
        raise TokenError("access token 'app' claim is not an acceptable app name") from None
    if "exp" in claims:
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, (int, float)) or exp != exp:
            raise TokenError("access token 'exp' claim is not a number")
        expires_at = float(exp)
    elif "expire" in claims:
        expires_at = _legacy_expiry(claims["expire"])
    else:
        raise TokenError("access token has no expiry ('exp' claim)")
    if expires_at <= current:
        raise TokenError("access token has expired")
    if expires_at - current > max_lifetime_s:
        raise TokenError(f"access token lives longer than this server accepts ({max_lifetime_s / SECONDS_PER_DAY:g} days)")
    call = claims.get("call")
    return TokenClaims(app=app, expires_at=expires_at, call=call if isinstance(call, str) and call else None)
