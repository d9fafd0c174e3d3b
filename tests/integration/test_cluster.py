"""A real two-node Ray cluster on this machine: `ray start --head` plus a worker node with its own custom
resource, `serve deploy` of serve_config.yaml (adapted: loopback port, placement resources), replicas
placed by their resource requests, and a conversation through it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import websockets
import yaml

from harness.server import ROOT, TEST_API_KEY, TEST_SECRET, free_port
from harness.speech import speech_pcm16k, wer
from protocol.client import VoiClient
from protocol.tokens import issue_token
from tests.integration.helpers import ends_response, final_user_text, start_session

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # starts a graph (pytest.ini: markers)

BIN = Path(sys.executable).parent


def cluster_config(http_port: int) -> dict:
    """serve_config.yaml as shipped, with a loopback port and placement resources for this test."""
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"].update(host="127.0.0.1", port=http_port)
    app = config["applications"][0]
    app["args"].update(min_session_hosts=2, free_session_slots=0,  # two hosts: one on each node
                       drain_grace_s=20)  # a drained replica's calls end sooner than in production (60 s)
    for deployment in app["deployments"]:
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = 1
        node = "stt_node" if deployment["name"] == "Transcriber" else "head_node"
        deployment["ray_actor_options"]["resources"] = {node: 0.1}
    return config


def stop_groups(groups: list[int], grace_s: float = 20.0) -> None:
    """A clean stop: SIGTERM to each `ray start` process group (GCS, raylet and workers shut down and remove
    what they own), SIGKILL only for what is still there after ``grace_s``."""
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    for group in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster runs in a Ray temp dir of its own (``--temp-dir``), so its address file
    (``ray_current_cluster``, where `serve run` and a plain `ray.init()` look for a cluster to join), logs and
    sockets never land in the machine's /tmp/ray; the dir is removed after a clean stop."""
    folder = tmp_path_factory.mktemp("cluster")
    ray_temp_dir = tempfile.mkdtemp(prefix="voi-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard, http_port = free_port(), free_port(), free_port()
    env = {**os.environ, "TOKEN_SECRET_KEY": TEST_SECRET, "API_KEY": TEST_API_KEY, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_temp_dir}
    env.pop("RAY_ADDRESS", None)
    groups = []

    def start(*args: str) -> None:
        process = subprocess.Popen([str(BIN / "ray"), "start", *args, "--node-ip-address=127.0.0.1", "--disable-usage-stats"],
                                   env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        groups.append(process.pid)  # Ray's daemons stay in this process group: that is how they are stopped
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0, out.decode(errors="replace")[-3000:]

    try:
        start("--head", f"--temp-dir={ray_temp_dir}/ray", f"--port={gcs}", "--num-cpus=2", '--resources={"head_node": 1}', "--include-dashboard=true",
              "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}")
        start(f"--address=127.0.0.1:{gcs}", "--num-cpus=1", '--resources={"stt_node": 1}')
        config_path = folder / "serve_config.yaml"
        config_path.write_text(yaml.safe_dump(cluster_config(http_port)))
        deploy = subprocess.run([str(BIN / "serve"), "deploy", str(config_path), "--address", f"http://127.0.0.1:{dashboard}"],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        deadline = time.monotonic() + 300
        status = ""
        while time.monotonic() < deadline:  # every deployment healthy, not only the Ingress answering
            done = subprocess.run([str(BIN / "serve"), "status", "--address", f"http://127.0.0.1:{dashboard}"],
                                  env=env, capture_output=True, text=True, timeout=60)
            status = done.stdout + done.stderr
            app = (yaml.safe_load(done.stdout) or {}).get("applications", {}).get("voi", {}) if done.returncode == 0 else {}
            if app.get("status") == "RUNNING":
                break
            time.sleep(2)
        else:
            raise AssertionError(f"the deployed app never became RUNNING:\n{status}")
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=10).json() == {"status": "running"}
        yield {"http_port": http_port, "dashboard": f"http://127.0.0.1:{dashboard}", "env": env, "folder": folder,
               "gcs": f"127.0.0.1:{gcs}", "ray_temp_dir": ray_temp_dir}
    finally:
        stop_groups(groups)
        shutil.rmtree(ray_temp_dir, ignore_errors=True)


def test_the_cluster_keeps_its_address_file_in_its_own_temp_dir(cluster):
    """`serve run` and a plain `ray.init()` on this machine look in the default temp dir for a cluster to join:
    this test's cluster (gone after the module) must not be found there."""
    from ray._common.utils import get_ray_address_file

    port = cluster["gcs"].rpartition(":")[2]  # Ray writes the node's own IP there, not the loopback one
    own = Path(cluster["ray_temp_dir"], "ray", "ray_current_cluster").read_text().strip()
    assert own.endswith(f":{port}"), own
    default = Path(get_ray_address_file(None))  # this process has no RAY_TMPDIR: the machine's /tmp/ray
    assert not default.exists() or default.read_text().strip() != own


def test_replicas_are_placed_by_their_resources(cluster):
    from ray.util.state import list_actors, list_nodes

    nodes = list_nodes(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")])
    assert len(nodes) == 2
    stt_node = next(n.node_id for n in nodes if "stt_node" in n.resources_total)
    head_node = next(n.node_id for n in nodes if "head_node" in n.resources_total)
    actors = list_actors(address=cluster["dashboard"], filters=[("state", "=", "ALIVE")], limit=1000)
    placed = {a.class_name: a.node_id for a in actors if a.class_name.startswith("ServeReplica:voi:")}
    # The LocalLLM (the default agents.yaml has a voi-local agent) is not pinned by the config: any node.
    assert placed.pop("ServeReplica:voi:LocalLLM") in (stt_node, head_node)
    assert placed == {"ServeReplica:voi:Transcriber": stt_node, "ServeReplica:voi:Synthesizer": head_node,
                      "ServeReplica:voi:Ingress": head_node}
    # The Ingress keeps two session hosts started (min_session_hosts=2), spread over the two nodes.
    deadline = time.monotonic() + 300  # a host's first start on a loaded node (imports, LiteLLM warm-up) is slow
    while time.monotonic() < deadline:
        actors = [a for a in list_actors(address=cluster["dashboard"], limit=1000) if a.class_name == "SessionHost"]
        hosts = [a for a in actors if a.state == "ALIVE"]
        if len(hosts) >= 2:
            break
        time.sleep(1)
    assert {h.node_id for h in hosts} == {stt_node, head_node}, [(a.state, a.node_id) for a in actors]


async def test_conversation_through_the_deployed_config(cluster):
    client = await VoiClient.connect(f"ws://127.0.0.1:{cluster['http_port']}", issue_token(TEST_SECRET, "cluster"))
    try:
        await start_session(client)
        sentence = "The library closes early on public holidays."
        await client.send_audio(speech_pcm16k(sentence), realtime=True)
        await client.send({"type": "create_response"})
        items = await client.until(ends_response, 120)
        assert items[-1].is_status("response_done")
        assert wer(sentence, final_user_text(items)) <= 0.15
        audio = await client.until(lambda r: r.type == "audio", 60)
        assert len(audio[-1].payload) > 0
    finally:
        await client.close()


async def test_redeploy_keeps_live_sessions(cluster):
    """A rolling update: the new Ingress replica starts first (max_surge_percent), then the old one drains: its
    live call is told (server_shutdown) and goes on talking, and is closed (1001) after drain_grace_s; a new
    caller reaches the new replica and is told nothing."""
    from ray.util.state import list_actors

    url = f"ws://127.0.0.1:{cluster['http_port']}"
    live = await VoiClient.connect(url, issue_token(TEST_SECRET, "cluster"))
    try:
        await start_session(live)
        old_ingress = {a.actor_id for a in list_actors(address=cluster["dashboard"], filters=[
            ("class_name", "=", "ServeReplica:voi:Ingress"), ("state", "=", "ALIVE")])}
        config = cluster_config(cluster["http_port"])
        config["applications"][0]["args"]["session_host_idle_s"] = 60  # a new version of the application
        path = cluster["folder"] / "serve_config_v2.yaml"
        path.write_text(yaml.safe_dump(config))
        deploy = subprocess.run([str(BIN / "serve"), "deploy", str(path), "--address", cluster["dashboard"]],
                                env=cluster["env"], cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        told = await live.until(lambda r: r.type == "error" or ends_response(r), 300)  # new replica first, then drain
        assert told[-1].type == "error" and told[-1].header["code"] == "server_shutdown", told[-1].header
        assert "reconnect" in told[-1].header["error"]
        told_at = time.monotonic()
        alive = {a.actor_id for a in list_actors(address=cluster["dashboard"], filters=[
            ("class_name", "=", "ServeReplica:voi:Ingress"), ("state", "=", "ALIVE")])}
        assert alive - old_ingress, "the old replica drains but no new Ingress replica is up"
        fresh = await VoiClient.connect(url, issue_token(TEST_SECRET, "cluster"))
        try:
            await start_session(fresh)
            for client in (live, fresh):  # the told call still talks; the new one reached the new replica
                await client.send({"type": "text", "content": "still talking"})
                await client.send({"type": "create_response"})
                items = await client.until(ends_response, 120)
                assert items[-1].is_status("response_done")
                assert not any(i.type == "error" for i in items), [i.header for i in items if i.type == "error"]
        finally:
            await fresh.close()
        try:  # after drain_grace_s (20 s here) the drained replica closes the call as "going away"
            while True:
                await live.recv(60)
        except websockets.ConnectionClosed:
            pass
        assert live.ws.close_code == 1001, live.ws.close_code
        assert time.monotonic() - told_at >= 15, time.monotonic() - told_at  # the call was not cut at once
    finally:
        await live.close()
