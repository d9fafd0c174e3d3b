"""Builds the Voi application graph from config.

    serve run serve_app:app                      # 127.0.0.1:8000, agents.yaml + models.yaml
    serve run serve_app:app agents=my_agents.yaml models=my_models.yaml sessions_per_host=32
    python serve_app.py --port 8443 --ssl-certfile cert.pem --ssl-keyfile key.pem   # also TLS (wss://)
    python serve_app.py --watch-agents           # agents.yaml reloaded when it changes (or on SIGHUP)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from pydantic import BaseModel, ConfigDict, Field, field_validator  # noqa: E402
from ray import serve  # noqa: E402
from ray.serve import Application  # noqa: E402

from agents.config import load_agents_config  # noqa: E402
from agents.greeting import greeting_renders  # noqa: E402
from agents.live_config import uses_local_llm  # noqa: E402  (it imports llm/, which keeps litellm offline)
from agents.services import SessionPolicy  # noqa: E402
from agents.turns import TurnConfig  # noqa: E402
from common.config_errors import ConfigError  # noqa: E402
from common.knobs import borrow, values_for  # noqa: E402
from common.settings import MissingSecretError, load_secrets  # noqa: E402
from deployments.agent_reload import AgentReloads  # noqa: E402
from deployments.ingress import INGRESS_REQUEST_HEADROOM, Ingress, IngressOptions  # noqa: E402
from deployments.placement import HostOptions  # noqa: E402
from deployments.shutdown import APP_NAME, Stop, shut_down, stop_on_signals  # noqa: E402
from deployments.synthesizer import Synthesizer  # noqa: E402
from deployments.transcriber import Batching, Transcriber  # noqa: E402
from protocol.limits import AdmissionLimits, ClientLimits  # noqa: E402
from protocol.twilio_voice import PhoneOptions  # noqa: E402
from speech.models_config import load_models_config  # noqa: E402

ROOT = Path(__file__).resolve().parent
PLAYGROUND_TOKEN_HOURS = 8.0  # the URL printed at start-up lets the local user in for a working day
log = logging.getLogger("voi")


class AppArgs(BaseModel):
    """Arguments of the application builder (``serve run serve_app:app key=value ...``, or ``args:`` in a serve
    config). Most configure another class and borrow its field (common/knobs.py): the default and its comment
    live there, once."""

    model_config = ConfigDict(extra="forbid")

    agents: str = str(ROOT / "agents.yaml")  # agents file (or an old agents.json, or a directory of agent files)
    models: str = str(ROOT / "models.yaml")
    env_file: str = str(ROOT / ".env")
    # Session hosts of each Ingress replica (deployments/placement.py)
    sessions_per_host: int = borrow(HostOptions, "sessions_per_host", ge=1)
    min_session_hosts: int = borrow(HostOptions, "min_hosts", ge=0)
    max_session_hosts: int = borrow(HostOptions, "max_hosts", ge=1)
    free_session_slots: int = borrow(HostOptions, "free_slots", ge=0)
    session_host_idle_s: float = borrow(HostOptions, "retire_idle_s", ge=0)
    session_host_num_cpus: float = borrow(HostOptions, "num_cpus", ge=0)
    session_host_resources: dict[str, float] = borrow(HostOptions, "resources")
    session_host_ping_timeout_s: float = borrow(HostOptions, "ping_timeout_s", gt=0)
    session_host_ping_misses: int = borrow(HostOptions, "ping_misses", ge=1)
    # The Ingress (deployments/connection.py) and what one client may send and hold (protocol/limits.py)
    max_sessions_per_ingress: int = borrow(IngressOptions, "max_sessions", ge=1)
    init_timeout_s: float = borrow(IngressOptions, "init_timeout_s", gt=0)
    max_token_days: float = borrow(IngressOptions, "max_token_days", gt=0)
    openapi: bool = borrow(IngressOptions, "openapi")
    drain_grace_s: float = borrow(IngressOptions, "drain_grace_s", gt=0)
    max_pending_handshakes: int = borrow(AdmissionLimits, "max_pending", ge=1)
    max_sessions_per_app: int = borrow(AdmissionLimits, "max_sessions_per_app", ge=1)
    max_text_chars: int = borrow(ClientLimits, "max_text_chars", ge=1)
    max_image_url_chars: int = borrow(ClientLimits, "max_image_url_chars", ge=1)
    messages_per_s: float = borrow(ClientLimits, "messages_per_s", gt=0)
    message_burst: int = borrow(ClientLimits, "message_burst", ge=1)
    audio_speed: float = borrow(ClientLimits, "audio_speed", gt=0)
    audio_burst_s: float = borrow(ClientLimits, "audio_burst_s", gt=0)
    # Listening (agents/turns.py, agents/services.py)
    max_turn_seconds: float = borrow(SessionPolicy, "max_turn_seconds", gt=0)
    end_of_turn_s: float = borrow(TurnConfig, "end_of_turn_s")
    quick_end_of_turn_s: float = borrow(TurnConfig, "quick_end_of_turn_s")
    turn_detection: Literal["timer", "model"] = borrow(TurnConfig, "turn_detection")
    turn_complete_threshold: float = borrow(TurnConfig, "turn_complete_threshold")
    turn_punctuation_threshold: float = borrow(TurnConfig, "turn_punctuation_threshold")
    turn_max_wait_s: float = borrow(TurnConfig, "turn_max_wait_s")
    # The phone: Twilio's webhook and media stream (protocol/twilio_voice.py, docs/telephony.md)
    phone_public_host: str = borrow(PhoneOptions, "public_host")
    phone_trust_forwarded: bool = borrow(PhoneOptions, "trust_forwarded")
    phone_numbers: dict[str, str] = borrow(PhoneOptions, "numbers")
    phone_agent: str = borrow(PhoneOptions, "agent")
    phone_dtmf_template: str = borrow(PhoneOptions, "dtmf_template")
    phone_dtmf_wait_s: float = borrow(PhoneOptions, "dtmf_wait_s", gt=0)
    phone_call_token_s: float = borrow(PhoneOptions, "call_token_s", gt=0)
    phone_max_handovers: int = borrow(PhoneOptions, "max_handovers", ge=0)
    # Models: the Transcriber's batching (its user_config) and the LocalLLM's threads
    stt_batch_max_size: int = borrow(Batching, "batch_max_size")
    stt_batch_wait_s: float = borrow(Batching, "batch_wait_s")
    local_llm_threads: int | None = Field(default=None, ge=1)  # llama.cpp threads (default: half the cores)

    @field_validator("session_host_resources", "phone_numbers", mode="before")
    @classmethod
    def _json_mapping(cls, value: Any) -> Any:
        """On the command line a mapping comes as JSON: session_host_resources='{"voice_node": 0.01}'."""
        return json.loads(value) if isinstance(value, str) else value


def ingress_max_ongoing_requests(args: AppArgs) -> int:
    """One open socket is one ongoing request, also before its init; the headroom lets HTTP calls and refusals
    through. A serve config leaves it to this (tests/unit/test_serve_configs.py)."""
    return args.max_sessions_per_ingress + args.max_pending_handshakes + INGRESS_REQUEST_HEADROOM


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


class DeadRayAddress(RuntimeError):
    """The Ray cluster this process would join does not answer."""


def ray_address_to_join(address: str | None) -> tuple[str, str] | None:
    """The cluster ``ray.init(address)`` would join and where that address came from, as Ray looks it up:
    ``RAY_ADDRESS``, else an explicit address, else (for None or "auto") the file ``ray start`` leaves in Ray's
    temp dir. None when Ray would start a local instance."""
    from ray._common.utils import get_ray_address_file
    from ray._private.utils import read_ray_address

    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "the RAY_ADDRESS environment variable"
    if address not in (None, "auto"):
        return (None if address == "local" else (address, "--address"))
    found = read_ray_address()
    return (found, f"{get_ray_address_file(None)} (written by `ray start`)") if found else None


def check_ray_address(address: str | None, timeout_s: float = 3.0) -> None:
    """Raise DeadRayAddress when the cluster Ray would join does not accept a connection: Ray itself retries
    "Failed to connect to GCS" for minutes (the address file of a cluster killed without `ray stop` stays)."""
    import socket

    found = ray_address_to_join(address)
    if found is None or found[0].startswith(("ray://", "http://", "https://")):
        return
    target, source = found
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError):
        pass
    advice = ("delete that file (the cluster is gone) or start the cluster again" if "ray start" in source
              else "start that cluster, or unset it to start a local Ray instance")
    raise DeadRayAddress(f"no Ray cluster answers at {target}, the address found in {source}: {advice}")


def app(args: dict[str, Any] | None = None) -> Application:
    """The builder ``serve run serve_app:app`` calls, before it joins Ray: says so when the cluster it would
    join is dead (instead of Ray retrying for minutes), then builds the graph."""
    import ray

    if not ray.is_initialized():
        try:
            check_ray_address(None)
        except DeadRayAddress as exc:
            print(f"voi: cannot start: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
    return build(args)


def build(args: dict[str, Any] | None = None) -> Application:
    """The application graph: validates secrets and config here, so bad config fails before any replica."""
    parsed = AppArgs.model_validate(args or {})
    secrets = load_secrets(dotenv_path=Path(parsed.env_file))
    models_path, agents_path = _absolute(parsed.models), _absolute(parsed.agents)
    models = load_models_config(models_path)
    agents = load_agents_config(agents_path, models)
    hosts = HostOptions(**values_for(HostOptions, parsed))
    if parsed.max_sessions_per_ingress > hosts.capacity:
        raise ValueError(f"max_sessions_per_ingress={parsed.max_sessions_per_ingress} is more than the session hosts "
                         f"hold (sessions_per_host x max_session_hosts = {hosts.capacity})")
    admission = AdmissionLimits(**values_for(AdmissionLimits, parsed),
                                max_pending_per_app=max(1, min(parsed.max_sessions_per_app, parsed.max_pending_handshakes // 2)))
    phone = PhoneOptions(**values_for(PhoneOptions, parsed))
    for number, name in {**phone.numbers, "(any other)": phone.agent}.items():
        if name and name not in agents.agents:
            raise ConfigError(f"{agents_path}: the phone's agent for {number} is {name!r}, not an agent of this file "
                              "(builder arguments phone_numbers / phone_agent)")
    try:
        phone.dtmf_template.format(digits="1")
    except (KeyError, IndexError, ValueError):
        raise ConfigError("builder argument phone_dtmf_template: only '{digits}' may be named in it") from None
    options = IngressOptions(agents_path=agents_path, models_path=models_path, hosts=hosts, phone=phone,
                             policy=SessionPolicy(**values_for(SessionPolicy, parsed)),
                             listening=TurnConfig(**values_for(TurnConfig, parsed)),
                             limits=ClientLimits(**values_for(ClientLimits, parsed)), admission=admission,
                             **values_for(IngressOptions, parsed))
    # Replica resources are not set here: the @serve.deployment defaults, or a serve config (docs/resources.md).
    transcriber = Transcriber.options(user_config=values_for(Batching, parsed))
    local_llm = None
    if uses_local_llm(agents):
        from deployments.local_llm import LocalLLM

        local_llm = LocalLLM.bind(n_threads=parsed.local_llm_threads)
    ingress = Ingress.options(max_ongoing_requests=ingress_max_ongoing_requests(parsed))
    return ingress.bind(transcriber.bind(models_path), Synthesizer.bind(models_path, greeting_renders(agents.agents)), local_llm,
                        secrets, options)


def read_profile(path: str) -> dict[str, Any]:
    """A serve config profile for `python serve_app.py --serve-config`: one application, this one."""
    from common.yaml_files import read_yaml_mapping

    config = read_yaml_mapping(Path(path), "a serve config must be a mapping (applications:, http_options:, ...)")
    apps = config.get("applications") or []
    if len(apps) != 1 or apps[0].get("import_path") != "serve_app:app":
        raise ValueError(f"{path}: applications: --serve-config takes a profile with one application, serve_app:app")
    return config


def deploy_profile(config: dict[str, Any], builder_args: dict[str, Any], http_options: dict[str, Any],
                   timeout_s: float = 900.0) -> None:
    """Deploy a profile as `serve run profile.yaml` does (its deployments' settings, replicas and resources),
    with the command line's builder args and HTTP options winning; block until the application is running."""
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    app = {"runtime_env": {"env_vars": {"PYTHONPATH": str(ROOT)}}, **config["applications"][0]}
    config = {**config, "http_options": {**config.get("http_options", {}), **http_options},
              "applications": [{**app, "name": APP_NAME, "route_prefix": "/", "args": builder_args}]}
    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    client.deploy_apps(schema)
    deadline = time.monotonic() + timeout_s
    while (status := serve.status().applications.get(APP_NAME)) is None or status.status != "RUNNING":
        if (status is not None and status.status == "DEPLOY_FAILED") or time.monotonic() > deadline:
            raise RuntimeError(f"the application did not start: {status.message if status else 'not deployed'}")
        time.sleep(1)


def session_host_ready(url: str, api_key: str) -> bool:
    """Whether the Ingress at ``url`` has a started session host (or needs none)."""
    import httpx

    try:
        view = httpx.get(f"{url}/sessions", headers={"Authorization": f"Bearer {api_key}"}, timeout=10,
                         verify=False).json()  # loopback, possibly a self-signed certificate
    except (httpx.HTTPError, ValueError):
        return False
    return view.get("ready_hosts", 0) >= 1 or view.get("min_hosts") == 0


def wait_for_session_hosts(url: str, api_key: str, timeout_s: float = 180.0) -> None:
    """"Ready" means a caller is answered at once: wait until the Ingress has a started session host."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if session_host_ready(url, api_key):
            return
        time.sleep(0.5)
    log.warning("no session host was ready after %.0f s; the first callers will wait for one", timeout_s)


def playground_url(base_url: str, token_secret_key: str, hours: float = PLAYGROUND_TOKEN_HOURS) -> str:
    """The page with a short-lived token for the local user in its query, like a notebook server's URL."""
    from protocol.tokens import issue_token

    return f"{base_url}/?token={issue_token(token_secret_key, 'playground', days=hours / 24)}"


def main(argv: list[str] | None = None) -> None:
    """Start Ray and Serve with explicit HTTP options (host, port, TLS), deploy the app, and block until SIGTERM or
    SIGINT; then stop cleanly (deployments/shutdown.py) and exit 0."""
    import ray

    parser = argparse.ArgumentParser(description="Run the Voi graph on a local Ray instance.")
    parser.add_argument("--host", default=os.environ.get("VOI_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("VOI_PORT", "8000")))
    parser.add_argument("--ssl-certfile", default=os.environ.get("VOI_SSL_CERTFILE"))
    parser.add_argument("--ssl-keyfile", default=os.environ.get("VOI_SSL_KEYFILE"))
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="join an existing Ray cluster")
    parser.add_argument("--dashboard", action="store_true", help="start the Ray dashboard (slower start-up)")
    parser.add_argument("--watch-agents", action="store_true",
                        help="reload the agents file when it changes (SIGHUP reloads it in any case)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("VOI_METRICS_PORT", "0")) or None,
                        help="Prometheus metrics port of this Ray node (default: Ray picks one)")
    parser.add_argument("--serve-config", default=os.environ.get("VOI_SERVE_CONFIG"),
                        help="a serve config profile (serve_config.gpu.yaml): its deployments' settings and builder args")
    parser.add_argument("builder_args", nargs="*", help="key=value arguments of the application builder")
    ns = parser.parse_args(argv)
    if bool(ns.ssl_certfile) != bool(ns.ssl_keyfile):
        parser.error("TLS needs both --ssl-certfile and --ssl-keyfile")
    builder_args = dict(a.split("=", 1) for a in ns.builder_args)
    started = time.monotonic()
    try:
        if ns.serve_config:  # the profile's args, under those of the command line
            builder_args = {**(read_profile(ns.serve_config)["applications"][0].get("args") or {}), **builder_args}
        application = build(builder_args)  # fails fast on missing secrets or bad config, before Ray starts
        if ns.address:
            check_ray_address(ns.address)
    except (ConfigError, MissingSecretError, ValueError, DeadRayAddress) as exc:
        print(f"voi: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)
    # Provider keys in .env (OPENAI_API_KEY, GEMINI_API_KEY, ...) are read by LiteLLM inside the session actors:
    # put them in this process's environment (never overriding it), which a local Ray passes to its workers.
    from dotenv import load_dotenv

    load_dotenv(Path(builder_args.get("env_file", ROOT / ".env")), override=False)
    init_args: dict[str, Any] = {}
    if ns.metrics_port and not ns.address:
        init_args["_metrics_export_port"] = ns.metrics_port
    ray.init(address=ns.address or "local", include_dashboard=ns.dashboard, namespace="serve",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}}, **init_args)
    stop_on_signals()
    try:
        serve_until_stopped(ns, application, builder_args, started)
    except Stop as stop:
        print(f"voi: {stop} received: stopping", flush=True)
    finally:  # also when the start failed: a local Ray instance must not outlive this process
        shut_down(own_cluster=not ns.address)


def serve_until_stopped(ns: argparse.Namespace, application: Application, builder_args: dict[str, str],
                        started: float) -> None:
    """Start Serve with the HTTP options, deploy the app, say where it is, and wait for ``Stop``."""
    import ray

    http_options: dict[str, Any] = {"host": ns.host, "port": ns.port}
    if ns.ssl_certfile:
        http_options.update(ssl_certfile=_absolute(ns.ssl_certfile), ssl_keyfile=_absolute(ns.ssl_keyfile))
    agents_path = _absolute(AppArgs.model_validate(builder_args).agents)
    reloads = AgentReloads(APP_NAME, agents_path, watch=ns.watch_agents)  # SIGHUP is ours from here on
    if ns.serve_config:
        deploy_profile(read_profile(ns.serve_config), builder_args, http_options)
    else:
        serve.start(http_options=http_options)
        serve.run(application, name=APP_NAME, route_prefix="/")
    scheme = "https" if ns.ssl_certfile else "http"
    local_url = f"{scheme}://{'127.0.0.1' if ns.host in ('0.0.0.0', '::') else ns.host}:{ns.port}"
    secrets = load_secrets(dotenv_path=Path(builder_args.get("env_file", ROOT / ".env")))
    wait_for_session_hosts(local_url, secrets.api_key)
    print(f"Voi is ready on {scheme}://{ns.host}:{ns.port} (websocket {'wss' if ns.ssl_certfile else 'ws'}://"
          f"{ns.host}:{ns.port}/ws) after {time.monotonic() - started:.1f} s; Ray at {ray.get_runtime_context().gcs_address}",
          flush=True)
    print(f"Talk to it: open {playground_url(local_url, secrets.token_secret_key)} (a playground token, valid "
          f"{PLAYGROUND_TOKEN_HOURS:.0f} h)", flush=True)
    reloads.wait()  # until Stop: reloads the agents file on SIGHUP (or a change, with --watch-agents)


if __name__ == "__main__":
    main()
