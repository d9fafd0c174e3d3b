"""The command-line entry points that need no running server."""

import os
import subprocess
import sys
from pathlib import Path

from protocol.tokens import verify_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-test-secret-key-0123456789-abcdefghijkl"


def run(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TOKEN_SECRET_KEY", "API_KEY")}
    env.update(env_extra)
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_token_generator_prints_a_valid_token(tmp_path):
    done = run([str(ROOT / "scripts" / "token_generator.py"), "my-app", "--expire", "3",
                "--env-file", str(tmp_path / "none.env")], {"TOKEN_SECRET_KEY": SECRET}, tmp_path)
    assert done.returncode == 0, done.stderr
    claims = verify_token(done.stdout.strip(), SECRET)
    assert claims.app == "my-app"


def test_token_generator_without_secret_says_so(tmp_path):
    done = run([str(ROOT / "scripts" / "token_generator.py"), "my-app", "--env-file", str(tmp_path / "none.env")], {}, tmp_path)
    assert done.returncode == 2 and "TOKEN_SECRET_KEY" in done.stderr


def test_server_refuses_to_start_without_secrets(tmp_path):
    done = run([str(ROOT / "serve_app.py"), f"env_file={tmp_path / 'none.env'}"], {}, tmp_path)
    assert done.returncode == 2
    assert "missing TOKEN_SECRET_KEY, API_KEY" in done.stderr and "Traceback" not in done.stderr


def test_server_refuses_bad_config_naming_file_agent_and_field(tmp_path):
    bad = tmp_path / "agents.yaml"
    bad.write_text("agents:\n  broken:\n    llm_model: echo\n    voices: {character: {model: nope}}\n")
    done = run([str(ROOT / "serve_app.py"), f"agents={bad}", f"env_file={tmp_path / 'none.env'}"],
               {"TOKEN_SECRET_KEY": SECRET, "API_KEY": "k"}, tmp_path)
    assert done.returncode == 2
    assert str(bad) in done.stderr and "agent 'broken'" in done.stderr and "voices.character.model" in done.stderr


def test_token_generator_refuses_long_lifetimes_unless_told(tmp_path):
    args = [str(ROOT / "scripts" / "token_generator.py"), "my-app", "--env-file", str(tmp_path / "none.env")]
    refused = run([*args, "--expire", "365"], {"TOKEN_SECRET_KEY": SECRET}, tmp_path)
    assert refused.returncode == 2 and "--allow-long" in refused.stderr and not refused.stdout
    allowed = run([*args, "--expire", "365", "--allow-long"], {"TOKEN_SECRET_KEY": SECRET}, tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert verify_token(allowed.stdout.strip(), SECRET, max_lifetime_s=366 * 86_400).app == "my-app"


def test_token_generator_refuses_control_characters_in_app_names(tmp_path):
    done = run([str(ROOT / "scripts" / "token_generator.py"), "a\nb", "--env-file", str(tmp_path / "none.env")],
               {"TOKEN_SECRET_KEY": SECRET}, tmp_path)
    assert done.returncode == 2 and "control characters" in done.stderr and not done.stdout


def _dead_address() -> str:
    import socket

    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_serve_run_says_when_the_ray_address_file_is_stale(tmp_path):
    """`ray start` leaves its address in Ray's temp dir; a cluster killed without `ray stop` leaves it stale,
    and `serve run` would retry "Failed to connect to GCS" for minutes. Here it says so and stops."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(_dead_address())
    env = {"TOKEN_SECRET_KEY": SECRET, "API_KEY": "k", "RAY_TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([str(Path(sys.executable).parent / "serve"), "run", "serve_app:app"], cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no Ray cluster answers at" in done.stderr and "ray_current_cluster" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_serve_app_says_when_its_ray_address_is_dead(tmp_path):
    done = run([str(ROOT / "serve_app.py"), "--address", _dead_address(), f"env_file={tmp_path / 'none.env'}"],
               {"TOKEN_SECRET_KEY": SECRET, "API_KEY": "k"}, tmp_path)
    assert done.returncode == 2
    assert "no Ray cluster answers at" in done.stderr and "--address" in done.stderr and "Traceback" not in done.stderr


def test_agents_user_config_puts_checked_agents_into_a_serve_config(tmp_path):
    import yaml
    from ray.serve.schema import ServeDeploySchema

    agents = tmp_path / "agents.yaml"
    agents.write_text("agents:\n  guide:\n    llm_model: echo\nprompt_patterns:\n  style: Be brief.\n")
    out = tmp_path / "live.yaml"
    done = run([str(ROOT / "scripts" / "agents_user_config.py"), str(agents), str(ROOT / "serve_config.yaml"), "-o", str(out)],
               {}, tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(config)  # serve deploy takes it
    [ingress] = [d for d in config["applications"][0]["deployments"] if d["name"] == "Ingress"]
    assert ingress["user_config"] == yaml.safe_load(agents.read_text())
    assert ingress["max_surge_percent"] == 100  # the rest of the config is kept

    agents.write_text("agents:\n  guide:\n    llm_model: echo\n    temperature: hot\n")
    done = run([str(ROOT / "scripts" / "agents_user_config.py"), str(agents), str(ROOT / "serve_config.yaml")], {}, tmp_path)
    assert done.returncode == 2
    assert "agent 'guide'" in done.stderr and "temperature" in done.stderr and "Traceback" not in done.stderr
