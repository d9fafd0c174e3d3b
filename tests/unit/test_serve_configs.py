"""Every serve config profile: Ray Serve accepts it, its builder args are valid (and differ from the defaults),
its derived numbers follow their formulas, and what it asks for fits the machine it declares
(``# machine: cpus=N gpus=M``). models.yaml holds no resources (docs/resources.md)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from common.config_errors import ConfigError
from deployments.drain import DRAIN_POLL_S
from deployments.ingress import Ingress
from deployments.local_llm import LocalLLM
from deployments.synthesizer import Synthesizer
from deployments.transcriber import Transcriber
from serve_app import AppArgs, ingress_max_ongoing_requests
from speech.models_config import load_models_config

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted(ROOT.glob("serve_config*.yaml"))
CODE = {d.name: d for d in (Ingress, Transcriber, Synthesizer, LocalLLM)}  # the @serve.deployment defaults
AUTOSCALE_AT = 0.75  # an Ingress replica is added when its open sockets pass this share of max_sessions_per_ingress
EPSILON = 1e-9


def machine(path: Path) -> dict[str, float]:
    found = re.search(r"^# machine: (.*)$", path.read_text(), re.MULTILINE)
    assert found, f"{path.name}: no '# machine: cpus=N gpus=M' line"
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", found.group(1))}


def application(path: Path) -> tuple[dict, AppArgs, dict[str, dict]]:
    config = yaml.safe_load(path.read_text())
    [app] = config["applications"]
    return app, AppArgs.model_validate(app.get("args") or {}), {d["name"]: d for d in app.get("deployments", [])}


def max_replicas(name: str, deployments: dict[str, dict]) -> int:
    entry = deployments.get(name, {})
    if "autoscaling_config" in entry:
        return entry["autoscaling_config"]["max_replicas"]
    return entry.get("num_replicas", CODE[name].num_replicas or 1)


def actor_options(name: str, deployments: dict[str, dict]) -> dict:
    """A config's ray_actor_options replaces the code's as a whole (Ray Serve), else the code's apply."""
    return deployments.get(name, {}).get("ray_actor_options", CODE[name].ray_actor_options or {})


def asked(path: Path) -> dict[str, float]:
    """CPUs and GPUs at max autoscaling: every deployment (the LocalLLM too: the default agents use it) and
    each Ingress replica's session hosts."""
    _, args, deployments = application(path)
    total = {"cpus": 0.0, "gpus": 0.0}
    for name in CODE:
        options = actor_options(name, deployments)
        total["cpus"] += max_replicas(name, deployments) * options.get("num_cpus", 1)
        total["gpus"] += max_replicas(name, deployments) * options.get("num_gpus", 0)
    total["cpus"] += max_replicas("Ingress", deployments) * args.max_session_hosts * args.session_host_num_cpus
    # During a rolling update the Ingress's surge replicas (and their hosts) run beside the old ones.
    ingress = actor_options("Ingress", deployments)
    surge = surge_replicas("Ingress", deployments)
    total["cpus"] += surge * (ingress.get("num_cpus", 1) + args.max_session_hosts * args.session_host_num_cpus)
    total["gpus"] += surge * ingress.get("num_gpus", 0)
    return total


def surge_replicas(name: str, deployments: dict[str, dict]) -> int:
    """Extra replicas a rolling update starts before it stops old ones (Ray Serve rounds up)."""
    percent = deployments.get(name, {}).get("max_surge_percent", CODE[name]._deployment_config.max_surge_percent)
    return math.ceil(max_replicas(name, deployments) * percent / 100)


def test_there_are_profiles():
    assert {p.name for p in PROFILES} >= {"serve_config.yaml", "serve_config.gpu.yaml"}


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_ray_serve_accepts_the_profile(path):
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_the_profile_fits_its_machine(path):
    have, need = machine(path), asked(path)
    assert need["gpus"] <= have.get("gpus", 0) + EPSILON, (path.name, need, have)
    assert need["cpus"] <= have["cpus"] + EPSILON, (path.name, need, have)
    _, _, deployments = application(path)
    for name in CODE:
        assert actor_options(name, deployments).get("num_gpus", 0) <= 1, (path.name, name)


def test_the_gpu_profile_uses_its_gpu():
    path = ROOT / "serve_config.gpu.yaml"
    assert machine(path)["gpus"] == 1
    assert asked(path)["gpus"] == pytest.approx(1.0)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_derived_numbers_follow_their_formulas(path):
    app, args, deployments = application(path)
    ingress = deployments["Ingress"]
    # left to the builder, or equal to what it computes
    assert ingress.get("max_ongoing_requests", ingress_max_ongoing_requests(args)) == ingress_max_ongoing_requests(args)
    target = ingress.get("autoscaling_config", {}).get("target_ongoing_requests")
    if target is not None:
        assert target == AUTOSCALE_AT * args.max_sessions_per_ingress, path.name
    assert args.max_sessions_per_ingress <= args.sessions_per_host * args.max_session_hosts
    assert args.max_sessions_per_ingress >= 1


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_each_setting_has_one_home_in_the_profile(path):
    app, args, deployments = application(path)
    defaults = AppArgs()
    same = [key for key in app.get("args") or {} if getattr(args, key) == getattr(defaults, key)]
    assert not same, f"{path.name}: args equal to their defaults (serve_app.py has them): {same}"
    for name, entry in deployments.items():
        assert name in CODE, f"{path.name}: no deployment {name!r}"
        if name != "Ingress":  # the Ingress's user_config is the agents (docs/deploying.md#updating-agents-live)
            assert "user_config" not in entry, f"{path.name}: {name}: user_config comes from the builder's args"
        options = entry.get("ray_actor_options")
        if options is not None:  # it replaces the code's as a whole: num_cpus must be given, not fall to Ray's 1
            assert "num_cpus" in options, f"{path.name}: {name}: ray_actor_options without num_cpus"


@pytest.mark.parametrize("path", [ROOT / "models.yaml", ROOT / "tests" / "integration" / "models.yaml"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_models_files_load(path):
    assert load_models_config(path).stt.default


@pytest.mark.parametrize("field", ["num_gpus", "num_cpus", "batch_max_size"])
def test_models_yaml_refuses_resources_with_a_pointer(tmp_path, field):
    text = (ROOT / "models.yaml").read_text().replace("      beam_size: 1\n", f"      beam_size: 1\n      {field}: 1\n")
    assert field in text
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{field}.*(serve config|builder arg).*docs/resources.md"):
        load_models_config(path)


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_a_rolling_update_starts_new_ingress_replicas_first_and_lets_the_drain_finish(path):
    """New Ingress replicas come up before the old stop (max_surge_percent), and Serve waits for the drain: the
    clients are told within a poll, their calls get drain_grace_s, then close; only then may Serve kill."""
    _, args, deployments = application(path)
    ingress = deployments["Ingress"]
    assert surge_replicas("Ingress", deployments) >= 1, path.name
    wait_loop = ingress.get("graceful_shutdown_wait_loop_s", 2.0)
    timeout = ingress.get("graceful_shutdown_timeout_s", CODE["Ingress"]._deployment_config.graceful_shutdown_timeout_s)
    assert timeout >= args.drain_grace_s + DRAIN_POLL_S + 2 * wait_loop + 10, (
        path.name, ingress, args.drain_grace_s)


def test_graphs_without_a_serve_config_surge_and_drain_too():
    """``python serve_app.py`` and ``serve run`` use the code's settings: the same rolling update."""
    config = Ingress._deployment_config
    assert config.max_surge_percent == 100
    assert config.graceful_shutdown_timeout_s >= AppArgs().drain_grace_s + DRAIN_POLL_S + 2 * config.graceful_shutdown_wait_loop_s + 10
