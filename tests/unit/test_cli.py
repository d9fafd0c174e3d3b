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
