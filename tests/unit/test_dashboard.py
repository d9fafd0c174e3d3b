"""The Grafana dashboard (deploy/grafana/voi-dashboard.json) cannot drift from the code: it is valid JSON that
Grafana's provisioning takes, every ``ray_voi_*`` metric it queries is one our code defines, every metric our
code defines has a panel, and every metric of Ray's own it queries exists in the installed Ray."""

from __future__ import annotations

import ast
import json
import os
import re
from functools import cache
from pathlib import Path

import ray

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "voi-dashboard.json"
METRIC_KINDS = {"Counter", "Gauge", "Histogram"}
SERIES_SUFFIXES = ("_bucket", "_count", "_sum")  # a Prometheus histogram's series
# Where Ray defines the metrics the dashboard borrows: Serve's replicas and batching, the node's metrics agent.
RAY_SOURCES = ("serve", "dashboard/modules/reporter", "dashboard/consts.py")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queried_metrics(board: dict) -> set[str]:
    """Every metric name in the panels' queries and the template variables, as Prometheus names it."""
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    names = set()
    for expr in exprs:
        for name in re.findall(r"\bray_[a-z0-9_]+", expr):
            for suffix in SERIES_SUFFIXES:
                name = name.removesuffix(suffix)
            names.add(name)
    return names


@cache
def defined_metrics() -> frozenset[str]:
    """The names our code gives Ray metrics: ``metrics.Histogram("voi_...", ...)`` and the like, anywhere in the
    repo (Ray exports them as ``ray_`` + name)."""
    names = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in ("tests", "node_modules", "__pycache__")]
        for path in (Path(folder, f) for f in files if f.endswith(".py")):
            names |= _metric_names(path)
    return frozenset(names)


def _metric_names(path: Path) -> set[str]:
    text = path.read_text()
    if not any(f"{kind}(" in text for kind in METRIC_KINDS):
        return set()
    names = set()
    for node in ast.walk(ast.parse(text, str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in METRIC_KINDS
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def ray_defines(name: str) -> bool:
    package = Path(ray.__file__).parent
    literal = f'"{name}"'
    for source in RAY_SOURCES:
        path = package / source
        for file in [path] if path.is_file() else path.rglob("*.py"):
            if literal in file.read_text(errors="replace"):
                return True
    return False


def test_the_dashboard_is_grafana_json():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(board):
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_voi_metric_queried_is_defined_in_the_code():
    ours = {name.removeprefix("ray_") for name in queried_metrics(dashboard()) if name.startswith("ray_voi_")}
    assert ours, "the dashboard queries none of our metrics"
    missing = ours - defined_metrics()
    assert not missing, f"{DASHBOARD.name} queries metrics no code defines: {sorted(missing)}"


def test_every_metric_the_code_defines_has_a_panel():
    queried = {name.removeprefix("ray_") for name in queried_metrics(dashboard())}
    assert "voi_voice_to_voice_ms" in defined_metrics()  # the scan finds deployments/metrics.py
    unshown = defined_metrics() - queried
    assert not unshown, f"metrics with no panel in {DASHBOARD.name}: {sorted(unshown)}"


def test_every_ray_metric_queried_exists_in_the_installed_ray():
    theirs = {name.removeprefix("ray_") for name in queried_metrics(dashboard()) if not name.startswith("ray_voi_")}
    assert theirs
    missing = sorted(name for name in theirs if not ray_defines(name))
    assert not missing, f"{DASHBOARD.name} queries metrics Ray {ray.__version__} does not define: {missing}"
