"""What scripts/bench_gpu.sh relies on without a GPU: the script parses, and a serve config profile becomes the
config a benchmark deploys (harness/server.py deployable_config) with its machine read from the profile."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from harness.server import deployable_config, profile_machine

ROOT = Path(__file__).resolve().parents[2]
GPU_PROFILE = ROOT / "serve_config.gpu.yaml"


def test_bench_gpu_sh_parses_and_refuses_unknown_flags():
    script = ROOT / "scripts" / "bench_gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    wrong = subprocess.run(["bash", str(script), "--gpu"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "usage" in wrong.stderr


def test_the_gpu_profile_declares_its_machine():
    assert profile_machine(GPU_PROFILE.read_text()) == {"cpus": 16.0, "gpus": 1.0}
    assert profile_machine("proxy_location: EveryNode\n") == {}


def test_a_profile_as_a_benchmark_deploys_it():
    profile = yaml.safe_load(GPU_PROFILE.read_text())
    config = deployable_config(profile, 23456, {"stt_batch_max_size": "1", "max_sessions_per_app": "256"})
    assert config["http_options"]["host"] == "127.0.0.1" and config["http_options"]["port"] == 23456
    args = config["applications"][0]["args"]
    assert args["stt_batch_max_size"] == "1", "the benchmark's builder args win over the profile's"
    assert args["min_session_hosts"] == profile["applications"][0]["args"]["min_session_hosts"]
    assert config["applications"][0]["deployments"] == profile["applications"][0]["deployments"]
    assert profile["http_options"]["host"] == "0.0.0.0", "the profile itself is not changed"


def test_a_shrunk_profile_keeps_its_resources_with_one_replica_each():
    profile = yaml.safe_load(GPU_PROFILE.read_text())
    config = deployable_config(profile, 23456, {}, shrink=True)
    for before, after in zip(profile["applications"][0]["deployments"], config["applications"][0]["deployments"]):
        assert after["num_replicas"] == 1 and "autoscaling_config" not in after
        assert after["ray_actor_options"] == before["ray_actor_options"], "the same resource kinds as on the GPU"
    assert config["applications"][0]["args"]["min_session_hosts"] == 1
