"""One http tool's call: the LLM's arguments in the URL, the query or a JSON body; the answer read as a stream and
cut at the tool's limit, so a 10 MB answer costs the process a few chunks, not 10 MB.

Cancelling the awaiting task aborts the request: leaving ``client.stream`` early closes the connection instead of
returning it to the pool, so the tool's server sees the connection closed. Secret header values are read from the
environment for each call and never appear in a log line, an error or a result.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx

from agents.tools.calls import clip
from agents.tools.spec import PLACEHOLDER, HttpToolSpec, read_env
from common.log_text import printable

log = logging.getLogger("voi.tools")

ERROR_SNIPPET_CHARS = 300  # of a non-2xx answer's body, shown to the LLM (an API's "order not found" helps it)


class ToolFailure(Exception):
    """A call that failed in a way the LLM can be told about: ``content`` for the LLM, ``error`` short and safe."""

    def __init__(self, content: str, error: str) -> None:
        super().__init__(error)
        self.content = content
        self.error = error


class HttpTool:
    def __init__(self, spec: HttpToolSpec, client: httpx.AsyncClient) -> None:
        self.spec = spec
        self._client = client

    async def run(self, arguments: dict[str, Any]) -> str:
        spec = self.spec
        url, rest = _fill_url(spec.url, arguments)
        headers = dict(spec.headers)
        secrets = read_env(spec.secret_headers)
        if len(secrets) < len(spec.secret_headers):
            missing = sorted(set(spec.secret_headers) - set(secrets))
            log.warning("tool %s: the environment variables of secret headers %s are not set", spec.name, missing)
            raise ToolFailure("error: this tool is not configured on the server; it cannot be used now", "tool not configured")
        headers.update(secrets)
        json_body = None
        if spec.method == "GET":  # merged with the URL's own query (httpx's params= would replace it)
            url = str(httpx.URL(url).copy_merge_params(_query(rest)))
        elif rest or spec.method != "DELETE":
            json_body = rest
        limit_bytes = 4 * spec.max_result_chars + 4  # enough bytes for max_result_chars characters of UTF-8
        try:
            async with asyncio.timeout(spec.timeout_s):
                async with self._client.stream(spec.method, url, json=json_body, headers=headers,
                                               timeout=spec.timeout_s) as response:
                    if not response.is_success:
                        body, _ = await _read_bounded(response, ERROR_SNIPPET_CHARS * 4)
                        snippet = _decode(body, response, complete=False)[:ERROR_SNIPPET_CHARS].strip()
                        raise ToolFailure(f"error: the tool's server answered HTTP {response.status_code}"
                                          + (f": {snippet}" if snippet else ""), f"HTTP {response.status_code}")
                    body, complete = await _read_bounded(response, limit_bytes)
                    text = _decode(body, response, complete=complete)
        except (TimeoutError, httpx.TimeoutException):  # our deadline for the whole call, or httpx's for one phase
            raise ToolFailure(f"error: the tool did not answer within {spec.timeout_s:g} s", "timeout") from None
        except httpx.HTTPError as exc:  # refused, reset, a broken answer: the details are for the operator's log
            # the path only: a query may carry what the operator should have put in a secret header
            log.warning("tool %s: %s %s failed: %s", spec.name, spec.method, printable(url.split("?", 1)[0], 200),
                        type(exc).__name__)
            if isinstance(exc, httpx.ConnectError):
                raise ToolFailure("error: the tool's server could not be reached", "connection failed") from None
            raise ToolFailure("error: the call to the tool's server failed", "request failed") from None
        return self._result(text, complete)

    def _result(self, text: str, complete: bool) -> str:
        limit = self.spec.max_result_chars
        if self.spec.result == "text" or not complete:  # a cut JSON text is no JSON: shown as text, marked as cut
            return clip(text, limit, cut=not complete) if text else "(empty answer)"
        if not text.strip():
            return "(empty answer)"
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise ToolFailure("error: the tool's server did not answer with JSON", "answer not JSON") from None
        return clip(json.dumps(value, ensure_ascii=False, separators=(",", ":")), limit)


def _fill_url(template: str, arguments: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The URL with its ``{param}`` placeholders filled (each value one URL-quoted path segment), and the arguments
    left for the query or the body."""
    rest = dict(arguments)

    def fill(match: Any) -> str:
        value = rest.pop(match.group(1), None)
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        if text in ("", ".", ".."):  # an empty or dot segment would change which path is called
            raise ToolFailure(f"error: argument {match.group(1)!r} must not be empty, '.' or '..'", "invalid arguments")
        return quote(text, safe="")

    return PLACEHOLDER.sub(fill, template), rest


def _query(arguments: dict[str, Any]) -> dict[str, Any]:
    """Query parameters: scalars as text, a list of scalars as a repeated parameter, anything else as JSON."""
    params: dict[str, Any] = {}
    for key, value in arguments.items():
        if value is None:
            continue
        if isinstance(value, (str, int, float, bool)):
            params[key] = value
        elif isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            params[key] = value
        else:
            params[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return params


async def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the (decompressed) body, and whether that was all of it. Stops reading at the
    limit: the rest is never received (the connection is closed when the stream is left)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


def _decode(body: bytes, response: httpx.Response, *, complete: bool) -> str:
    charset = response.charset_encoding or "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(charset)(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return decoder.decode(body, final=complete)  # a character cut at the limit is dropped, not garbled
