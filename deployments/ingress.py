"""Ingress deployment: HTTP routes, token checks and the wire format. One conversation per websocket,
placed on one of this replica's session hosts (deployments/host_pool.py).

It never transcribes, calls an LLM or synthesizes: it decodes frames into typed messages, hands them to the
session's host in order, and encodes what the host emits. Ray Serve counts an open socket as one ongoing
request: the replica's own session cap (``max_sessions``) sits a little below ``max_ongoing_requests``, so a
caller beyond it is told ``server_busy`` (close 1013) instead of waiting in Serve's queue.
"""


import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import ray
from fastapi import FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.websockets import WebSocketDisconnect, WebSocketState

from agents.agent import Agent
from agents.config import AgentRefused, load_agents_config, resolve_agent
from agents.services import SessionPolicy
from agents.timeline import TurnReport
from agents.turns import TurnConfig
from common.settings import Secrets
from deployments.host_pool import HostPool, HostsBusy
from deployments.metrics import VoiMetrics
from deployments.placement import HostOptions
from deployments.playground import SECURITY_HEADERS, agent_list, load_static_files, turn_metrics_message, wants_html
from llm.client import LlmSettings
from llm.names import LOCAL_MODEL_NAME
from protocol import messages as m
from protocol.framing import FrameError, decode_frame, encode_frame
from protocol.tokens import TokenError, issue_token, verify_token
from speech.models_config import load_models_config

log = logging.getLogger("ray.serve")

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
INGRESS_REQUEST_HEADROOM = 16  # max_ongoing_requests above the session cap: HTTP calls and refusals get through

# Serve's class-based ingress copies the route methods when the class is decorated: everything they use
# must be defined above the Ingress class.
api = FastAPI(title="Voi on Ray Serve", docs_url=None, redoc_url=None)


@dataclass(frozen=True)
class IngressOptions:
    agents_path: str
    models_path: str
    hosts: HostOptions = HostOptions()
    max_sessions: int = 256  # open conversations on one Ingress replica; more callers get server_busy
    init_timeout_s: float = 30.0
    policy: SessionPolicy = SessionPolicy()
    listening: TurnConfig = TurnConfig()


class _SessionClosed(Exception):
    pass


FindAgent = Callable[[m.Init], "tuple[Agent, str | None]"]  # the agent and its greeting files' directory


class _Connection:
    """One websocket: the init handshake, then two pumps (client -> host, host -> client)."""

    def __init__(self, ws: WebSocket, metrics: VoiMetrics, options: IngressOptions, hosts: HostPool,
                 find_agent: FindAgent) -> None:
        self.ws = ws
        self.metrics = metrics
        self.options = options
        self.hosts = hosts
        self.find_agent = find_agent
        self._send_lock = asyncio.Lock()
        self.send_turn_metrics = False  # (ext) set by init

    async def send(self, msg: m.ServerMessage) -> None:
        if msg.type == "error":
            self.metrics.record_error(str(msg.header.get("code", "")))
        async with self._send_lock:
            if self.ws.client_state == WebSocketState.CONNECTED:
                await self.ws.send_bytes(encode_frame(msg.header, msg.payload))

    async def refuse(self, text: str, code: str, close_code: int) -> None:
        try:
            await self.send(m.error(text, code))
            await self.ws.close(close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass

    async def _receive(self, timeout: float | None = None) -> m.ClientMessage:
        """The next typed message; FrameError for a malformed one, _SessionClosed when the client left."""
        raw = await asyncio.wait_for(self.ws.receive(), timeout) if timeout else await self.ws.receive()
        if raw["type"] == "websocket.disconnect":
            raise _SessionClosed()
        data = raw.get("bytes")
        if data is None:
            raise FrameError("text frames are not part of the protocol: send binary frames", "text_frame")
        return m.parse_client_message(decode_frame(data))

    async def _handshake(self) -> tuple[m.Init, list[m.Audio]]:
        early_audio: list[m.Audio] = []
        deadline = time.monotonic() + self.options.init_timeout_s
        while True:
            msg = await self._receive(max(deadline - time.monotonic(), 0.001))
            if isinstance(msg, m.Init):
                return msg, early_audio
            if isinstance(msg, m.Audio):  # call-mode clients stream audio before init: keep it
                if sum(len(a.data) for a in early_audio) < 32_000 * self.options.policy.max_turn_seconds:
                    early_audio.append(msg)
                continue
            raise FrameError(f"the first message must be 'init', got '{type(msg).__name__}'", "init_expected")

    async def run(self, app_name: str) -> None:
        try:
            init, early_audio = await self._handshake()
        except TimeoutError:
            await self.refuse("no 'init' message arrived in time", "init_timeout", CLOSE_POLICY_VIOLATION)
            return
        except FrameError as exc:
            await self.refuse(str(exc), exc.code, CLOSE_PROTOCOL_ERROR)
            return
        except (_SessionClosed, WebSocketDisconnect):
            return
        self.send_turn_metrics = init.send_turn_metrics
        try:
            agent, greeting_dir = self.find_agent(init)
        except AgentRefused as exc:
            await self.refuse(str(exc), exc.code, CLOSE_POLICY_VIOLATION)
            return
        started = time.monotonic()
        self.metrics.session_opened()
        try:
            await self._converse(init, early_audio, agent, greeting_dir, app_name, started)
        finally:
            self.metrics.session_closed()

    async def _converse(self, init: m.Init, early_audio: list[m.Audio], agent: Agent, greeting_dir: str | None,
                        app_name: str, started: float) -> None:
        try:
            lease = await self.hosts.place(self.options.init_timeout_s)
        except HostsBusy:
            log.warning("session refused: every session slot of this replica is taken")
            await self.refuse("the server is full; please try again in a moment", "server_busy", CLOSE_TRY_AGAIN_LATER)
            return
        session_id = uuid.uuid4().hex
        log.info("session %s app=%s agent=%s mode=%s host=%s placed_ms=%.0f", session_id[:12], app_name,
                 init.agent_name, init.mode, lease.host_id, (time.monotonic() - started) * 1000)
        tasks: list[asyncio.Task[Any]] = []
        try:
            await lease.host.open.remote(session_id, init.agent_name, agent, init, greeting_dir, self.options.policy,
                                         self.options.listening, app_name)
            events = lease.host.events.options(num_returns="streaming").remote(session_id)
            tasks = [asyncio.create_task(self._pump_events(events)),
                     asyncio.create_task(self._pump_client(lease.host, session_id, early_audio))]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            sender, receiver = tasks
            if sender in done and sender.exception() is None:
                # The host ended the conversation without the client leaving: it failed there (the error is sent).
                await self.close(CLOSE_INTERNAL_ERROR)
            for task in done:
                task.result()
        except ray.exceptions.RayActorError:
            self.hosts.lost(lease)
            log.warning("session %s: its host %s died", session_id[:12], lease.host_id)
            await self.refuse("the session ended unexpectedly on the server; please reconnect", "session_lost",
                              CLOSE_INTERNAL_ERROR)
        except Exception:  # a bug must end this session cleanly, with a message, and nothing else
            log.exception("session %s of agent %s failed", session_id[:12], init.agent_name)
            await self.refuse("the session failed on the server; please reconnect", "internal", CLOSE_INTERNAL_ERROR)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:  # the conversation stops on its host (also when it already did: then this returns at once)
                await asyncio.wait_for(lease.host.close.remote(session_id), 2.0)
            except Exception:
                pass
            self.hosts.release(lease)
            await self.close(CLOSE_NORMAL)

    async def close(self, code: int) -> None:
        if self.ws.client_state == WebSocketState.CONNECTED:
            try:
                await self.ws.close(code)
            except RuntimeError:
                pass

    async def _pump_client(self, host: Any, session_id: str, early_audio: list[m.Audio]) -> None:
        """Client -> host, in order; returns when the client leaves."""
        for audio in early_audio:
            await host.push.remote(session_id, audio)
        while True:
            try:
                msg = await self._receive()
            except FrameError as exc:
                await self.send(m.error(str(exc), exc.code))
                continue
            except (_SessionClosed, WebSocketDisconnect):
                return
            await host.push.remote(session_id, msg)

    async def _pump_events(self, events: Any) -> None:
        """Host -> client; returns when the host ends the conversation, raises RayActorError when it died."""
        try:
            async for ref in events:
                item = await ref
                if isinstance(item, TurnReport):  # for the operator's metrics, never for the client
                    self.metrics.record_turn(item)
                    if self.send_turn_metrics:
                        await self.send(turn_metrics_message(item))
                else:
                    await self.send(item)
        except (WebSocketDisconnect, RuntimeError):
            await asyncio.Event().wait()  # the client is gone: the other pump sees it and ends the session


def _check_bearer(authorization: str | None, api_key: str) -> None:
    """OpenAI clients send ``Authorization: Bearer <key>``: the key is the server's API_KEY."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="missing 'Authorization: Bearer <API_KEY>' header")
    if not hmac.compare_digest(authorization.removeprefix("Bearer ").encode(), api_key.encode()):
        raise HTTPException(status_code=403, detail="invalid API key")


def _openai_error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


async def _sse(first: dict | None, stream: Any) -> Any:
    """OpenAI's server-sent events: one ``data:`` line per chunk, then ``[DONE]``; a failure ends the stream.
    A client that goes away cancels the stream, which stops generation on the LocalLLM replica."""
    try:
        if first is not None:
            yield f"data: {json.dumps(first)}\n\n".encode()
            async for chunk in stream:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
    except Exception as exc:  # headers are sent: the error can only be an event
        yield f"data: {json.dumps({'error': {'message': str(exc)[:200], 'type': 'server_error'}})}\n\n".encode()
    finally:
        stream.cancel()
    yield b"data: [DONE]\n\n"


@serve.deployment(name="Ingress", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1})
@serve.ingress(api)
class Ingress:
    def __init__(
        self, transcriber: DeploymentHandle, synthesizer: DeploymentHandle, local_llm: DeploymentHandle | None,
        secrets: Secrets, options: IngressOptions
    ) -> None:
        self.secrets = secrets
        self.local_llm = local_llm
        self.models = load_models_config(options.models_path)
        self.agents = load_agents_config(options.agents_path, self.models)
        invoke_models = tuple(self.agents.client_agent_config.invoke_llm_models)
        self.options = replace(options, policy=replace(options.policy, invoke_llm_models=invoke_models))
        llm_settings = LlmSettings(api_base=secrets.llm_api_base, api_key=secrets.llm_api_key)
        self.hosts = HostPool(options.hosts, transcriber, synthesizer, local_llm, llm_settings)
        self.metrics = VoiMetrics()
        self.open_sessions = 0
        self.static_files = load_static_files()
        try:
            asyncio.get_running_loop()
            self.hosts.start()
        except RuntimeError:  # no loop in this constructor: the first connection starts the hosts
            pass

    def _find_agent(self, init: m.Init) -> tuple[Agent, str | None]:
        """The agent a session runs (AgentRefused when the policy says no); a server agent's greeting
        recordings are files beside agents.yaml, a client-defined agent has none."""
        agent = resolve_agent(self.agents, self.models, init.agent_name, init.agent_config)
        return agent, (self.agents.base_dir if init.agent_name in self.agents.agents else None)

    def check_health(self) -> None:
        """Serve calls this every health_check_period_s on the replica's loop: the hosts start here at the
        latest (the constructor may run without a loop), so the first caller finds a warm host."""
        self.hosts.start()

    @api.get("/")
    async def root(self, accept: str | None = Header(default=None)) -> Any:
        """A browser gets the playground page; every other client the status."""
        if wants_html(accept):
            return self._static("index.html")
        return {"status": "running"}

    @api.get("/playground/{path:path}")
    async def playground_file(self, path: str) -> Response:
        return self._static(path)

    def _static(self, path: str) -> Response:
        found = self.static_files.get(path)
        if found is None:
            raise HTTPException(status_code=404, detail="no such playground file")
        return Response(found.body, media_type=found.content_type, headers=SECURITY_HEADERS)

    @api.get("/agents")
    async def list_agents(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """The server's agents (name, title, description) for a client holding a token (``Bearer <token>``)."""
        token = authorization.removeprefix("Bearer ") if authorization and authorization.startswith("Bearer ") else None
        try:
            verify_token(token, self.secrets.token_secret_key)
        except TokenError as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from None
        return {"agents": agent_list(self.agents)}

    @api.get("/sessions")
    async def sessions(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """For operators (``Authorization: Bearer API_KEY``): this replica's hosts and their conversations."""
        _check_bearer(authorization, self.secrets.api_key)
        return {"open_sessions": self.open_sessions, "max_sessions": self.options.max_sessions,
                **self.hosts.describe(), "conversations": await self.hosts.conversations()}

    @api.get("/v1/models")
    async def openai_models(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        _check_bearer(authorization, self.secrets.api_key)
        models = [{"id": LOCAL_MODEL_NAME, "object": "model", "owned_by": "voi"}] if self.local_llm is not None else []
        return {"object": "list", "data": models}

    @api.post("/v1/chat/completions")
    async def openai_chat(self, request: Request, authorization: str | None = Header(default=None)) -> Any:
        """The LocalLLM as an OpenAI-compatible endpoint (for tools and other apps; sessions use a handle)."""
        _check_bearer(authorization, self.secrets.api_key)
        if self.local_llm is None:
            return _openai_error(404, "this server runs no local LLM (no agent uses a voi-local model)", "not_found")
        try:
            body = await request.json()
        except ValueError:
            return _openai_error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _openai_error(400, "the body must be a JSON object")
        if body.get("stream"):
            stream = self.local_llm.options(stream=True).stream.remote(body)
            try:
                first = await stream.__anext__()  # a bad request fails here, before any header is sent
            except StopAsyncIteration:
                first = None
            except ValueError as exc:
                stream.cancel()
                return _openai_error(400, str(exc))
            return StreamingResponse(_sse(first, stream), media_type="text/event-stream")
        try:
            return await self.local_llm.complete.remote(body)
        except ValueError as exc:
            return _openai_error(400, str(exc))

    @api.post("/integrations/{app_name}")
    async def integration_token(self, app_name: str, api_key: str | None = Header(default=None, alias="API-Key")) -> dict[str, str]:
        if not api_key:
            raise HTTPException(status_code=401, detail="missing API-Key header")
        if not hmac.compare_digest(api_key.encode(), self.secrets.api_key.encode()):
            raise HTTPException(status_code=403, detail="invalid API-Key")
        if not app_name.strip() or len(app_name) > 200:
            raise HTTPException(status_code=400, detail="app name must be 1 to 200 characters")
        return {"token": issue_token(self.secrets.token_secret_key, app_name, days=1)}

    @api.post("/v1/realtime/client_secrets")
    async def realtime_client_secret(self, request: Request, authorization: str | None = Header(default=None)) -> Any:
        """A short-lived token for a browser's /v1/realtime (OpenAI's client secrets), behind API_KEY."""
        from deployments.realtime import client_secret  # that module builds on this one
        _check_bearer(authorization, self.secrets.api_key)
        try:
            return client_secret(await request.body(), self.secrets.token_secret_key, next(iter(self.agents.agents), ""))
        except ValueError as exc:
            return _openai_error(400, str(exc))

    @api.websocket("/v1/realtime")
    async def realtime(self, ws: WebSocket) -> None:
        """The OpenAI Realtime protocol over the same conversations (deployments/realtime.py)."""
        from deployments.realtime import serve_realtime
        await serve_realtime(ws, self)

    @api.websocket("/ws")
    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        connection = _Connection(ws, self.metrics, self.options, self.hosts, self._find_agent)
        try:
            claims = verify_token(ws.query_params.get("token"), self.secrets.token_secret_key)
        except TokenError as exc:
            await connection.refuse(str(exc), "bad_token", CLOSE_POLICY_VIOLATION)
            return
        if self.open_sessions >= self.options.max_sessions:
            log.warning("session refused: %d sessions open on this replica (max_sessions)", self.open_sessions)
            await connection.refuse("the server is full; please try again in a moment", "server_busy",
                                    CLOSE_TRY_AGAIN_LATER)
            return
        self.hosts.start()
        self.open_sessions += 1
        try:
            await connection.run(claims.app)
        finally:
            self.open_sessions -= 1
