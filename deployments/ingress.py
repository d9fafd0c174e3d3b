"""Ingress deployment: HTTP routes, token checks and the wire format. One conversation per websocket
(deployments/connection.py), placed on one of this replica's session hosts (deployments/host_pool.py).

It never transcribes, calls an LLM or synthesizes: it decodes frames into typed messages, hands them to the
session's host in order, and encodes what the host emits. Ray Serve counts an open socket as one ongoing
request, also before its ``init``: the replica's own caps (``max_sessions`` conversations, plus a small
budget of sockets still in their handshake, per app too) sit below ``max_ongoing_requests``, so a caller
beyond them is refused at once (``server_busy`` 1013, ``too_many_sessions`` 1008) instead of waiting in
Serve's queue behind sockets that never say ``init``.
"""


import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from agents.agent import Agent
from agents.config import AgentsConfig, resolve_agent
from common.log_text import has_control_characters, printable
from common.settings import Secrets
from deployments.agent_updates import AgentUpdates
from deployments.connection import CLOSE_POLICY_VIOLATION, Connection, IngressOptions
from deployments.drain import drain, watch_for_drain
from deployments.host_pool import HostPool
from deployments.metrics import VoiMetrics
from deployments.openai_http import (
    BodyRefused,
    bearer,
    check_bearer,
    failure_response,
    http_authorize,
    openai_error,
    read_json_object,
    sse,
)
from deployments.playground import SECURITY_HEADERS, agent_list, load_static_files, wants_html
from deployments.realtime import client_secret, serve_realtime
from deployments.twilio import serve_twilio, twilio_webhook
from llm.client import LlmSettings
from llm.local_model import chat_arguments
from llm.names import LOCAL_MODEL_NAME
from protocol import messages as m
from protocol.admission import Gate, GateConfig
from protocol.limits import AdmissionRefused
from protocol.tokens import MAX_APP_CHARS, SECONDS_PER_DAY, TokenError, issue_token
from protocol.twilio_voice import STREAM_PATH, VOICE_PATH
from speech.models_config import load_models_config

__all__ = ["INGRESS_REQUEST_HEADROOM", "Ingress", "IngressOptions"]

log = logging.getLogger("ray.serve")

INGRESS_REQUEST_HEADROOM = 16  # max_ongoing_requests above sessions + handshakes: HTTP calls and refusals get through

ENDING_S = 3.0  # at a stop, closed sockets' conversations get this long to end on their hosts

# Serve's class-based ingress copies the route methods when the class is decorated: everything they use
# must be defined above the Ingress class. /openapi.json is a route of its own, served only when asked.
api = FastAPI(title="Voi on Ray Serve", docs_url=None, redoc_url=None, openapi_url=None)


# A rolling update starts the new replica before the old one drains (max_surge_percent), and Serve waits for the
# drain (deployments/drain.py: drain_grace_s, 60 s by default) before it kills the old replica.
@serve.deployment(name="Ingress", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.1}, max_surge_percent=100,
                  graceful_shutdown_timeout_s=120)
@serve.ingress(api)
class Ingress:
    def __init__(
        self, transcriber: DeploymentHandle, synthesizer: DeploymentHandle, local_llm: DeploymentHandle | None,
        secrets: Secrets, options: IngressOptions
    ) -> None:
        self.secrets = secrets
        self.local_llm = local_llm
        self.models = load_models_config(options.models_path)
        self.agent_updates = AgentUpdates(options.agents_path, self.models, synthesizer, local_llm is not None)
        self._options = options
        llm_settings = LlmSettings(api_base=secrets.llm_api_base, api_key=secrets.llm_api_key)
        self.hosts = HostPool(options.hosts, transcriber, synthesizer, local_llm, llm_settings)
        self.metrics = VoiMetrics()
        self.connections: set[Connection] = set()  # accepted sockets (both protocols), told when the server stops
        self.stopping = False  # going_away was called: new sockets are refused the same way
        self.gate = Gate(GateConfig(secrets.api_key, secrets.token_secret_key, options.max_token_days * SECONDS_PER_DAY,
                                    options.max_sessions, options.admission))  # every transport's admission
        self.static_files = load_static_files()
        self._drain_watch: asyncio.Task[None] | None = None  # started on the replica's loop (check_health)
        try:
            asyncio.get_running_loop()
            self.hosts.start()
        except RuntimeError:  # no loop in this constructor: the first connection starts the hosts
            pass

    @property
    def agents(self) -> AgentsConfig:
        """The agents new sessions get (live conversations keep the one they started with)."""
        return self.agent_updates.agents

    @property
    def options(self) -> IngressOptions:
        invoke_models = tuple(self.agents.client_agent_config.invoke_llm_models)
        return replace(self._options, policy=replace(self._options.policy, invoke_llm_models=invoke_models))

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        """Agents updated in place by ``serve deploy`` (deployments/agent_updates.py)."""
        await self.agent_updates.reconfigure(user_config)

    async def reload_agents(self) -> dict[str, Any]:
        """``python serve_app.py`` reloads the agents file (SIGHUP, ``--watch-agents``)."""
        return await self.agent_updates.reload_file()

    def _find_agent(self, init: m.Init) -> tuple[Agent, str | None]:
        """The agent a session runs (AgentRefused when the policy says no); a server agent's greeting
        recordings are files beside agents.yaml, a client-defined agent has none."""
        agent = resolve_agent(self.agents, self.models, init.agent_name, init.agent_config)
        return agent, (self.agents.base_dir if init.agent_name in self.agents.agents else None)

    async def check_health(self) -> None:
        """Serve calls this every health_check_period_s: the hosts and the drain watch start here at the latest (the
        constructor may run without a loop), so the first caller finds a warm host; it fails when no session host
        has answered for long. Async on purpose: Serve runs a sync check_health in a worker thread, and the host
        pool lives on the replica's loop (deployments/host_pool.py)."""
        self.hosts.start()
        if self._drain_watch is None:
            self._drain_watch = asyncio.get_running_loop().create_task(watch_for_drain(self._drain))
        self.hosts.check_reachable()  # fails when no session host has answered for long (deployments/placement.py)

    async def _drain(self) -> None:
        """Serve is stopping this replica (rolling update, downscale): callers told, then closed after the grace."""
        self.stopping = True  # a socket that still arrives is refused as at SIGTERM
        told, closed = await drain(self.connections, self._options.drain_grace_s)
        log.info("drained: %d sockets told (server_shutdown), %d closed (1001) after %.0f s", told, closed,
                 self._options.drain_grace_s)

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
        http_authorize(bearer(authorization), self.gate, api_key_ok=False)
        return {"agents": agent_list(self.agents)}

    @api.get("/sessions")
    async def sessions(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        """For operators (``Authorization: Bearer API_KEY``): this replica's hosts and their conversations."""
        check_bearer(authorization, self.gate)
        return {"open_sessions": self.gate.open_sessions, "max_sessions": self.options.max_sessions,
                "pending_handshakes": self.gate.pending, "agents": self.agent_updates.live.status(),
                **self.hosts.describe(), "conversations": await self.hosts.conversations()}

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi(self) -> Any:
        """The HTTP API's schema, only when the operator asked for it (builder argument ``openapi=true``)."""
        if not self.options.openapi:
            raise HTTPException(status_code=404, detail="Not Found")
        return api.openapi()

    @api.get("/v1/models")
    async def openai_models(self, authorization: str | None = Header(default=None)) -> dict[str, Any]:
        check_bearer(authorization, self.gate)
        models = [{"id": LOCAL_MODEL_NAME, "object": "model", "owned_by": "voi"}] if self.local_llm is not None else []
        return {"object": "list", "data": models}

    @api.post("/v1/chat/completions")
    async def openai_chat(self, request: Request, authorization: str | None = Header(default=None)) -> Any:
        """The LocalLLM as an OpenAI-compatible endpoint (for tools and other apps; sessions use a handle)."""
        check_bearer(authorization, self.gate)
        if self.local_llm is None:
            return openai_error(404, "this server runs no local LLM (no agent uses a voi-local model)", "not_found")
        try:
            body = await read_json_object(request)
            chat_arguments(body)  # refused here, in the caller's words, before a replica is asked
        except BodyRefused as exc:
            return openai_error(exc.status, str(exc))
        except ValueError as exc:
            return failure_response(exc, "the completion")
        if body.get("stream"):
            stream = self.local_llm.options(stream=True).stream.remote(body)
            try:
                first = await stream.__anext__()  # a bad request fails here, before any header is sent
            except StopAsyncIteration:
                first = None
            except Exception as exc:
                stream.cancel()
                return failure_response(exc, "the completion")
            return StreamingResponse(sse(first, stream), media_type="text/event-stream")
        try:
            return await self.local_llm.complete.remote(body)
        except Exception as exc:
            return failure_response(exc, "the completion")

    @api.post("/integrations/{app_name}")
    async def integration_token(self, app_name: str, api_key: str | None = Header(default=None, alias="API-Key")) -> dict[str, str]:
        http_authorize(api_key, self.gate, token_ok=False)
        if not app_name.strip() or len(app_name) > MAX_APP_CHARS or has_control_characters(app_name):
            raise HTTPException(status_code=400,
                                detail=f"app name must be 1 to {MAX_APP_CHARS} characters, none of them control characters")
        return {"token": issue_token(self.secrets.token_secret_key, app_name, days=1)}

    @api.post("/v1/realtime/client_secrets")
    async def realtime_client_secret(self, request: Request, authorization: str | None = Header(default=None)) -> Any:
        """A short-lived token for a browser's /v1/realtime (OpenAI's client secrets), behind API_KEY."""
        check_bearer(authorization, self.gate)
        try:
            return client_secret(await request.body(), self.secrets.token_secret_key, next(iter(self.agents.agents), ""))
        except ValueError as exc:
            return openai_error(400, str(exc))

    @api.websocket("/v1/realtime")
    async def realtime(self, ws: WebSocket) -> None:
        """The OpenAI Realtime protocol over the same conversations (deployments/realtime.py)."""
        await serve_realtime(ws, self)

    @api.post(VOICE_PATH)
    async def twilio_voice(self, request: Request) -> Response:
        """Twilio's call webhook: TwiML that connects the call to /twilio/stream (deployments/twilio.py)."""
        return await twilio_webhook(request, self)

    @api.websocket(STREAM_PATH)
    async def twilio_stream(self, ws: WebSocket) -> None:
        """Twilio Media Streams: a phone call over the same conversations."""
        await serve_twilio(ws, self)

    async def going_away(self, timeout_s: float = 10.0) -> int:
        """``python serve_app.py`` was told to stop (SIGTERM, SIGINT) and calls this before Serve shuts down: every
        accepted socket gets ``error`` (``server_shutdown``) at once, a reply under way gets up to ``timeout_s``
        to finish, then each socket is closed 1001 (deployments/drain.py); later sockets are refused the same way.
        Returns how many sockets were told."""
        self.stopping = True
        told, cut = await drain(self.connections, timeout_s, finish_turn=True)
        deadline = time.monotonic() + ENDING_S  # the closed sockets' conversations end on their hosts
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("the server is stopping: %d sockets told and closed (1001), %d cut in a reply, %d still ending",
                 told, cut, len(self.connections))
        return told

    @api.websocket("/ws")
    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        connection = Connection(ws, self.metrics, self.options, self.hosts, self._find_agent)
        if self.stopping:
            await connection.going_away()
            return
        self.connections.add(connection)
        try:
            await self._voi_socket(ws, connection)
        finally:
            self.connections.discard(connection)

    async def _voi_socket(self, ws: WebSocket, connection: Connection) -> None:
        try:
            app = self.gate.authorize(ws.query_params.get("token"), api_key_ok=False)
        except TokenError as exc:
            await connection.refuse(str(exc), "bad_token", CLOSE_POLICY_VIOLATION)
            return
        self.hosts.start()
        try:
            await self.gate.admit(app, connection.handshake,
                                  lambda started, count: connection.converse(*started, app, count))
        except AdmissionRefused as exc:
            log.warning("socket of app %s refused: %s", printable(app), exc.code)
            await connection.refuse(str(exc), exc.code, exc.close_code)
