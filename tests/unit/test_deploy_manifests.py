"""The container image, the compose file and the KubeRay manifest match the code they run: the env var names the
code reads, the ports, the serve config profile (import path, deployments, the machine it is sized for), and
what an operator relies on (a non-root user, a HEALTHCHECK, SIGTERM, long enough grace for live calls)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

from common.settings import OPTIONAL, REQUIRED
from harness.server import profile_machine
from serve_app import AppArgs

ROOT = Path(__file__).resolve().parents[2]
GPU_PROFILE = ROOT / "serve_config.gpu.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
RAYSERVICE = ROOT / "deploy" / "kubernetes" / "rayservice.yaml"
CODE = [ROOT / "serve_app.py", *(p for room in ("common", "protocol", "speech", "llm", "agents", "deployments")
                                  for p in (ROOT / room).rglob("*.py"))]


def env_names_read() -> set[str]:
    """Every literal environment variable name the server's code reads (os.environ / os.getenv)."""
    names: set[str] = set(REQUIRED) | set(OPTIONAL)
    pattern = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in CODE:
        names |= set(pattern.findall(path.read_text()))
    return names


def dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=open(ROOT / "Dockerfile", "rb"))
    return parser


def instructions(name: str) -> list[dict]:
    return [i for i in dockerfile().structure if i["instruction"] == name]


def final_stage() -> list[dict]:
    structure = dockerfile().structure
    last_from = max(i for i, item in enumerate(structure) if item["instruction"] == "FROM")
    return structure[last_from:]


def gpu_profile() -> dict:
    return yaml.safe_load(GPU_PROFILE.read_text())


def rayservice() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text())


def pod_specs() -> dict[str, dict]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    pods = {"head": cluster["headGroupSpec"]["template"]["spec"]}
    pods.update({group["groupName"]: group["template"]["spec"] for group in cluster["workerGroupSpecs"]})
    return pods


def test_the_env_scan_finds_what_serve_app_reads():
    assert {"VOI_PORT", "VOI_HOST", "VOI_METRICS_PORT", "VOI_SERVE_CONFIG", "TOKEN_SECRET_KEY"} <= env_names_read()


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_dockerfile_has_a_builder_stage_and_a_variant_build_arg():
    froms = [i["value"] for i in instructions("FROM")]
    assert len(froms) == 2 and froms[0].endswith("AS builder") and froms[1].endswith("AS runtime"), froms
    args = " ".join(i["value"] for i in instructions("ARG"))
    assert "VARIANT=cpu" in args and "SETUP_FLAGS" in args
    builder_runs = " ".join(i["value"] for i in dockerfile().structure[:next(
        n for n, i in enumerate(dockerfile().structure) if i["instruction"] == "FROM" and "runtime" in i["value"])]
        if i["instruction"] == "RUN")
    assert "scripts/setup.sh" in builder_runs, "the builder installs as scripts/setup.sh does (llama.cpp wheel, bundles)"
    assert "cmake" in builder_runs, "llama-cpp-python is built from source in the builder"
    assert "COPY --from=builder" in " ".join(f"{i['instruction']} {i['value']}" for i in final_stage())


def test_dockerfile_runs_serve_app_as_a_non_root_user_with_a_healthcheck():
    stage = final_stage()
    users = [i["value"] for i in stage if i["instruction"] == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    [health] = [i["value"] for i in stage if i["instruction"] == "HEALTHCHECK"]
    assert "--start-period" in health and "CMD" in health
    port = int(next(i["value"] for i in stage if i["instruction"] == "ENV" and "VOI_PORT" in i["value"]).split(
        "VOI_PORT=")[1].split()[0])
    assert f"127.0.0.1:{port}/" in health, "the health check asks the server's own port"
    exposed = {int(p) for i in stage if i["instruction"] == "EXPOSE" for p in i["value"].split()}
    assert port in exposed
    [stop] = [i["value"] for i in stage if i["instruction"] == "STOPSIGNAL"]
    assert stop == "SIGTERM", "serve_app.py stops cleanly on SIGTERM (deployments/shutdown.py)"
    [cmd] = [i["value"] for i in stage if i["instruction"] == "CMD"]
    assert "serve_app.py" in cmd


def test_dockerfile_env_names_are_read_by_the_code():
    env = dockerfile().envs
    ours = {name for name in env if name.startswith("VOI_")}
    assert ours and ours <= env_names_read(), ours - env_names_read()
    assert env["VOI_HOST"] == "0.0.0.0", "in a container the server must listen beyond loopback"


def test_dockerignore_keeps_secrets_and_the_local_venv_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", ".venv", ".git", "bench_results"} <= ignored


# --- compose ------------------------------------------------------------------------------------------------------


def test_compose_runs_the_gpu_profile_on_one_gpu():
    service = yaml.safe_load(COMPOSE.read_text())["services"]["voi"]
    env = {k: str(v) for k, v in service["environment"].items()}
    assert set(env) <= env_names_read(), set(env) - env_names_read()
    profile = ROOT / env["VOI_SERVE_CONFIG"]
    assert profile.is_file() and yaml.safe_load(profile.read_text())["applications"][0]["import_path"] == "serve_app:app"
    [device] = service["deploy"]["resources"]["reservations"]["devices"]
    assert "gpu" in device["capabilities"] and device["count"] == profile_machine(profile.read_text())["gpus"]
    container_ports = {int(str(p).rsplit(":", 1)[1]) for p in service["ports"]}
    assert {int(env["VOI_PORT"]), int(env["VOI_METRICS_PORT"])} <= container_ports
    assert service["build"]["args"]["VARIANT"] == "cuda" and service["init"] is True
    assert service["env_file"], "the secrets come from an env file, never from the compose file"
    assert not set(env) & (set(REQUIRED) | set(OPTIONAL)), "no secret written into the compose file"
    assert int(service["stop_grace_period"].rstrip("s")) >= 30, "serve_app.py needs time to tell clients and stop Ray"


# --- KubeRay RayService -------------------------------------------------------------------------------------------


def test_rayservice_serves_the_gpu_profile_word_for_word():
    service = rayservice()
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == gpu_profile()
    [app] = gpu_profile()["applications"]
    AppArgs.model_validate(app["args"])  # the builder accepts them
    assert app["import_path"] == "serve_app:app"
    ray_version = service["spec"]["rayClusterConfig"]["rayVersion"]
    pinned = re.search(r"^ray\[serve\]==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert ray_version == pinned, "rayVersion is the Ray the image installs"


def test_rayservice_worker_pods_are_the_machine_the_profile_is_sized_for():
    machine = profile_machine(GPU_PROFILE.read_text())
    workers = [spec for name, spec in pod_specs().items() if name != "head"]
    assert workers
    for spec in workers:
        limits = spec["containers"][0]["resources"]["limits"]
        assert float(limits["cpu"]) == machine["cpus"] and float(limits["nvidia.com/gpu"]) == machine["gpus"]
    head = rayservice()["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]
    assert head["num-cpus"] == "0", "nothing of the profile is placed on the head, so its sums are the workers'"


def test_rayservice_pods_get_the_secrets_from_kubernetes_secrets():
    read = env_names_read()
    for name, spec in pod_specs().items():
        container = spec["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert set(REQUIRED) <= set(env), f"{name}: missing {set(REQUIRED) - set(env)}"
        assert set(env) <= read, f"{name}: env vars no code reads: {set(env) - read}"
        for var in set(REQUIRED) | set(OPTIONAL):
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == var and "value" not in env[var], f"{name}: {var} must come from a Secret"
            assert ref.get("optional", False) == (var in OPTIONAL), f"{name}: {var}"
        assert all("secretRef" in source for source in container.get("envFrom", []))


def test_rayservice_gives_live_calls_their_grace():
    ingress = next(d for d in gpu_profile()["applications"][0]["deployments"] if d["name"] == "Ingress")
    grace_s = ingress["graceful_shutdown_timeout_s"]  # a going-away replica's calls are told, then closed by then
    spec = rayservice()["spec"]
    assert spec["rayClusterDeletionDelaySeconds"] >= grace_s, "an upgraded-away cluster keeps its calls"
    assert spec["upgradeStrategy"]["type"] == "NewCluster"
    for name, pod in pod_specs().items():
        assert pod["terminationGracePeriodSeconds"] > grace_s, name
        mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert "/dev/shm" in mounts, f"{name}: Ray's object store needs a real /dev/shm"


def test_rayservice_serve_port_is_the_profiles():
    port = gpu_profile()["http_options"]["port"]
    for name, pod in pod_specs().items():
        ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
        assert ports["serve"] == port, name


def test_the_code_scan_sees_real_code():
    """The scan above reads files that exist and parse (a moved room would silently shrink it)."""
    assert all(path.is_file() for path in CODE) and len(CODE) > 50
    ast.parse((ROOT / "serve_app.py").read_text())
