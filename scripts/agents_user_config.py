"""Put an agents file into a serve config as the Ingress's ``user_config``, checked first, for ``serve deploy``:

    .venv/bin/python scripts/agents_user_config.py agents.yaml serve_config.yaml -o serve_config.live.yaml
    .venv/bin/serve deploy serve_config.live.yaml

The agents are checked as the Ingress will check them (with the models file the config's ``args`` name, or
models.yaml); a bad one is refused here, naming the file, the agent and the field (exit 2), so a typo never
reaches the cluster. Running replicas take the new agents in place (docs/deploying.md#updating-agents-live).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from _repo_path import ROOT

from agents.config import agents_from_mapping
from agents.live_config import with_agents
from common.config_errors import ConfigError
from common.yaml_files import read_yaml, read_yaml_mapping
from speech.models_config import load_models_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agents", help="the agents file (agents.yaml)")
    parser.add_argument("serve_config", help="the serve config to put them into")
    parser.add_argument("-o", "--output", help="where to write the result (default: print it)")
    parser.add_argument("--app", default="voi", help="the application's name in the serve config (default: voi)")
    args = parser.parse_args(argv)
    try:
        config = read_yaml_mapping(Path(args.serve_config), "a serve config must be a mapping")
        content = read_yaml(Path(args.agents))
        app_args = next((a.get("args") or {} for a in config.get("applications", []) if a.get("name") == args.app), {})
        models = load_models_config(Path(app_args.get("models", ROOT / "models.yaml")))
        agents_from_mapping(content, models, source=args.agents, base_dir=Path(args.agents).resolve().parent)
        text = yaml.safe_dump(with_agents(config, content, args.app), sort_keys=False, allow_unicode=True)
    except ConfigError as exc:
        print(f"agents_user_config: refused: {exc}", file=sys.stderr)
        return 2
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
