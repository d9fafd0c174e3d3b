"""Every turn produces a latency timeline that is exported as Ray Serve custom metrics (Prometheus)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets

from tests.integration.helpers import ends_response, start_session

pytestmark = pytest.mark.slow  # starts a graph (pytest.ini: markers)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        label_text = line[len(name):].split(" ")[0]
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def scrape_until(url: str, predicate, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            text = ""
        if predicate(text):
            return text
        await asyncio.sleep(1.0)
    raise AssertionError(f"metrics never matched; last scrape had {len(text)} bytes: "
                         + "\n".join(line for line in text.splitlines() if "voi_" in line)[:2000])


async def test_turn_timeline_is_exported_as_metrics(server, connect):
    before = httpx.get(server.metrics_url, timeout=5).text
    turns_before = metric_value(before, "ray_voi_turns_total", agent="stt_test", mode="chat")
    errors_before = metric_value(before, "ray_voi_errors_total", kind="unknown_type")
    refused_before = metric_value(before, "ray_voi_errors_total", kind="invalid_api_key")
    async with websockets.connect(f"{server.ws_url}/v1/realtime?model=stt_test",
                                  additional_headers={"Authorization": "Bearer not-a-key"}) as refused:
        assert json.loads(await refused.recv())["error"]["code"] == "invalid_api_key"  # an OpenAI Realtime refusal
    client = await connect()
    await start_session(client)
    await client.send({"type": "text", "content": "measure this turn"})
    await client.send({"type": "create_response"})
    await client.until(ends_response, 60)
    await client.until(lambda r: r.type == "audio", 30)
    await client.send({"type": "no_such_type"})  # one error of a known kind
    await client.until(lambda r: r.type == "error", 30)

    text = await scrape_until(server.metrics_url, lambda t: (
        metric_value(t, "ray_voi_turns_total", agent="stt_test", mode="chat") > turns_before
        and metric_value(t, "ray_voi_errors_total", kind="unknown_type") > errors_before
        and metric_value(t, "ray_voi_errors_total", kind="invalid_api_key") > refused_before))
    assert metric_value(text, "ray_voi_voice_to_voice_ms_count", agent="stt_test", mode="chat") >= 1
    assert metric_value(text, "ray_voi_tts_first_audio_ms_count", agent="stt_test") >= 1
    assert metric_value(text, "ray_voi_stt_final_ms_count", agent="stt_test") >= 1
    assert re.search(r"^ray_voi_active_sessions\{", text, re.M)
    # The histogram's sum is a real latency, not a placeholder: positive and below a minute per turn.
    count = metric_value(text, "ray_voi_voice_to_voice_ms_count", agent="stt_test", mode="chat")
    total = metric_value(text, "ray_voi_voice_to_voice_ms_sum", agent="stt_test", mode="chat")
    assert 0 < total / count < 60_000
