"""The HTTP side of the Ingress that speaks OpenAI's shapes: bearer-key checks, JSON request bodies from
strangers, error bodies, and server-sent events.

What a client sees of a failure is a short reason, never a traceback: a remote Ray error's text carries the
remote traceback (file paths, pid, IP, actor id), so only the message of the exception that caused it is
shown, and anything that is not a refusal of the request becomes a generic 500.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

from common.safe_json import parse_json
from protocol.admission import CredentialsRefused, Gate
from protocol.tokens import TokenError

log = logging.getLogger("ray.serve")

MAX_BODY_BYTES = 1 << 20  # a chat request body; the local model's context is 2048 tokens
MAX_REASON_CHARS = 300


class BodyRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bearer(authorization: str | None) -> str | None:
    """What ``Authorization: Bearer <credential>`` presents (None when it is absent or not a bearer)."""
    if authorization and authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ").strip() or None
    return None


def http_authorize(presented: str | None, gate: Gate, *, api_key_ok: bool = True, token_ok: bool = True) -> str:
    """The admission path's credential check (protocol/admission.py) as HTTP: 401 for none or a bad token,
    403 for a wrong API key. Returns the caller's app."""
    try:
        return gate.authorize(presented, api_key_ok=api_key_ok, token_ok=token_ok)
    except CredentialsRefused as exc:
        raise HTTPException(status_code=401 if exc.missing else 403, detail=str(exc)) from None
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from None


def check_bearer(authorization: str | None, gate: Gate) -> None:
    """OpenAI clients send ``Authorization: Bearer <key>``: the key is the server's API_KEY."""
    http_authorize(bearer(authorization), gate, token_ok=False)


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message[:MAX_REASON_CHARS], "type": kind}}, status_code=status)


async def read_json_object(request: Request, max_bytes: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request body as a JSON object, or BodyRefused (413 too large, 400 anything else)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyRefused(413, f"the body is larger than {max_bytes} bytes")
    try:
        value = parse_json(bytes(body))
    except ValueError as exc:
        raise BodyRefused(400, f"the body is not acceptable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BodyRefused(400, "the body must be a JSON object")
    return value


def refusal_reason(exc: BaseException) -> str | None:
    """The client-safe reason of a request the model refused (a ValueError raised by its validation, here or
    inside a Ray task), or None when ``exc`` is not such a refusal."""
    cause = getattr(exc, "cause", None)  # a RayTaskError wraps the remote exception
    if isinstance(cause, ValueError):
        exc = cause
    elif cause is not None:
        return None
    if isinstance(exc, ValueError):
        return str(exc.args[0] if exc.args else exc)[:MAX_REASON_CHARS]
    return None


def failure_response(exc: BaseException, what: str) -> JSONResponse:
    """The answer to a failed model call: the refusal's reason (400), or a generic 500 logged in one line."""
    reason = refusal_reason(exc)
    if reason is not None:
        return openai_error(400, reason)
    log.warning("%s failed: %s", what, type(getattr(exc, "cause", None) or exc).__name__)
    return openai_error(500, f"{what} failed on the server", "server_error")


async def sse(first: dict | None, stream: Any) -> Any:
    """OpenAI's server-sent events: one ``data:`` line per chunk, then ``[DONE]``; a failure ends the stream.
    A client that goes away cancels the stream, which stops generation on the LocalLLM replica."""
    try:
        if first is not None:
            yield f"data: {json.dumps(first)}\n\n".encode()
            async for chunk in stream:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
    except Exception as exc:  # headers are sent: the error can only be an event
        reason = refusal_reason(exc) or "generation failed on the server"
        yield f"data: {json.dumps({'error': {'message': reason, 'type': 'server_error'}})}\n\n".encode()
    finally:
        stream.cancel()
    yield b"data: [DONE]\n\n"
