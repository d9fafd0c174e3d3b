"""A loopback HTTP server of tools for http-tool tests and benchmarks, run in a thread of the test process.

Its endpoints answer like small APIs (weather, orders), fail on purpose (HTTP 500, a 10 MB answer, an answer that
never comes) or take their time (``/slow``). Every request is recorded: path, method, query and JSON arguments,
headers, when it started and ended, and whether the client hung up before the answer was complete
(``cancelled``), so a test can check that a cancelled tool call really closed its request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from harness.loopback import Served

BIG_BYTES = 10 * 1024 * 1024
CHUNK = 64 * 1024
ORDERS = {"A100": {"order_id": "A100", "status": "shipped", "items": 2, "eta": "tomorrow"},
          "B200": {"order_id": "B200", "status": "processing", "items": 1, "eta": "in 3 days"}}


@dataclass
class ToolRequest:
    path: str
    method: str
    args: dict[str, Any]  # the query's parameters and the JSON body's fields
    headers: dict[str, str]  # lower-case names
    started: float
    ended: float | None = None
    cancelled: bool = False  # the client hung up before the answer was complete
    bytes_sent: int = 0  # of /big's answer, until the client hung up
    query: list[tuple[str, str]] = field(default_factory=list)  # as sent, repeated names kept


class ToolServer(Served):
    """``url`` is the base to write in a tool's spec (``f"{server.url}/weather"``)."""

    def __init__(self) -> None:
        self.requests: list[ToolRequest] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find(self, path: str) -> list[ToolRequest]:
        return [r for r in self.requests if r.path == path]

    def wait_ended(self, path: str, timeout: float = 10.0) -> ToolRequest:
        """The last request to ``path`` once the server is done with it (answered, or the client hung up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(path)
            if found and found[-1].ended is not None:
                return found[-1]
            time.sleep(0.02)
        raise AssertionError(f"no finished request to {path} within {timeout} s: {self.find(path)}")

    async def _record(self, request: Request) -> ToolRequest:
        args: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if body:
            try:
                parsed = await request.json()
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                args.update(parsed)
        record = ToolRequest(request.url.path, request.method, args, {k.lower(): v for k, v in request.headers.items()},
                             time.monotonic(), query=list(request.query_params.multi_items()))
        self.requests.append(record)
        return record

    async def _until_disconnect(self, request: Request) -> None:
        while (await request.receive()).get("type") != "http.disconnect":
            pass

    async def _wait(self, request: Request, record: ToolRequest, seconds: float) -> bool:
        """Sleep ``seconds`` unless the client hangs up first; True when it did (recorded as cancelled)."""
        disconnect = asyncio.ensure_future(self._until_disconnect(request))
        try:
            done, _ = await asyncio.wait({disconnect}, timeout=seconds)
        finally:
            disconnect.cancel()
        record.cancelled = bool(done)
        record.ended = time.monotonic()
        return record.cancelled

    async def weather(self, request: Request) -> Response:
        record = await self._record(request)
        city = record.args.get("city")
        record.ended = time.monotonic()
        if not city:
            return JSONResponse({"error": "city is required"}, status_code=400)
        return JSONResponse({"city": city, "forecast": "sunny", "temperature_c": 21})

    async def order(self, request: Request) -> Response:
        record = await self._record(request)
        order_id = request.path_params.get("order_id") or record.args.get("order_id")
        record.ended = time.monotonic()
        if order_id not in ORDERS:
            return JSONResponse({"error": f"no order {order_id}"}, status_code=404)
        return JSONResponse(ORDERS[order_id])

    async def slow(self, request: Request) -> Response:
        record = await self._record(request)
        seconds = float(record.args.get("seconds", 1.0))
        if await self._wait(request, record, seconds):
            return Response(status_code=499)  # nobody is listening
        return JSONResponse({"slept": seconds})

    async def hang(self, request: Request) -> Response:
        record = await self._record(request)
        await self._wait(request, record, 3600.0)
        return Response(status_code=499)

    async def error(self, request: Request) -> Response:
        record = await self._record(request)
        record.ended = time.monotonic()
        return JSONResponse({"error": "the database is down"}, status_code=500)

    async def big(self, request: Request) -> Response:
        record = await self._record(request)
        size = int(record.args.get("bytes", BIG_BYTES))

        # the server's sends return at once after a hang-up (nothing is sent), so the hang-up is watched for
        hung_up = asyncio.ensure_future(self._until_disconnect(request))

        async def body() -> AsyncIterator[bytes]:
            try:
                chunk = b"x" * CHUNK
                while record.bytes_sent < size and not hung_up.done():
                    piece = chunk[: size - record.bytes_sent]
                    yield piece  # waits while the client is not reading (flow control)
                    record.bytes_sent += len(piece)
            finally:
                hung_up.cancel()
                record.cancelled = record.bytes_sent < size
                record.ended = time.monotonic()

        return StreamingResponse(body(), media_type="text/plain")

    async def text(self, request: Request) -> Response:
        record = await self._record(request)
        record.ended = time.monotonic()
        return PlainTextResponse(record.args.get("say", "plain words, not JSON"))

    async def echo(self, request: Request) -> Response:
        """What arrived, without the headers (a result must never carry a secret header back)."""
        record = await self._record(request)
        record.ended = time.monotonic()
        return JSONResponse({"method": record.method, "path": record.path, "query": record.query,
                             "args": record.args})

    def start(self) -> ToolServer:
        any_method = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        app = Starlette(routes=[
            Route("/weather", self.weather, methods=["GET"]),
            Route("/orders/lookup", self.order, methods=["POST"]),
            Route("/orders/{order_id}", self.order, methods=["GET"]),
            Route("/slow", self.slow, methods=any_method),
            Route("/hang", self.hang, methods=any_method),
            Route("/error", self.error, methods=any_method),
            Route("/big", self.big, methods=any_method),
            Route("/text", self.text, methods=any_method),
            Route("/echo/{rest:path}", self.echo, methods=any_method),
        ])
        self.serve(app, name="tool-server")
        return self
